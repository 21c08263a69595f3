import Logging
import PortwatchCore
import PortwatchExporter
import PortwatchStore
import Synchronization

/// What one scrape reports: the ledger read through its own read-only connection (owned
/// here, opened on first use and again after an error), the policy's verdict on it, and
/// the pipeline's health. Called from the HTTP thread.
public final class ScrapeSource: Sendable {
    public struct Settings: Sendable {
        public var databasePath: String
        public var programs: [String: Bool]
        public var version: String
        public var revision: String
        /// Caps `portwatch_port_info` series; nil means no cap.
        public var maxPortSeries: Int?
        public var kernelFeatures: [String: Bool]
        /// Owners in the recent-transients series; 0 leaves those series out.
        public var maxTransientSeries: Int
        /// How far back the recent-transients series look.
        public var transientPeriod: UInt64 = 3_600_000_000_000

        public init(databasePath: String, programs: [String: Bool], version: String, revision: String, maxPortSeries: Int?,
                    kernelFeatures: [String: Bool] = [:], maxTransientSeries: Int = 20) {
            self.maxTransientSeries = maxTransientSeries
            self.kernelFeatures = kernelFeatures
            self.databasePath = databasePath
            self.programs = programs
            self.version = version
            self.revision = revision
            self.maxPortSeries = maxPortSeries
        }
    }

    private let settings: Settings
    private let policy: PolicyWatcher?
    private let health: @Sendable () -> CapturePipeline.Health
    private let logger: Logger
    private let reader = Mutex<StoreReader?>(nil)
    private let clock = SystemClock()

    public init(settings: Settings, policy: PolicyWatcher?, health: @escaping @Sendable () -> CapturePipeline.Health, logger: Logger) {
        self.settings = settings
        self.policy = policy
        self.health = health
        self.logger = logger
    }

    public func state() -> ExporterState {
        let now = clock.wallNanoseconds()
        let (snapshot, recent) = reader.withLock { reader -> (StoreSnapshot?, (top: [TransientSummary], dropped: Int)?) in
            do {
                if reader == nil { reader = try StoreReader(path: settings.databasePath) }
                let snapshot = try reader!.snapshot()
                guard settings.maxTransientSeries > 0 else { return (snapshot, nil) }
                return (snapshot, try reader!.recentTransients(since: now &- min(now, settings.transientPeriod), limit: settings.maxTransientSeries))
            } catch {
                reader = nil
                logger.warning("scrape cannot read the database", metadata: ["error": "\(error)"])
                return (nil, nil)
            }
        }
        var counters = snapshot?.counters ?? []
        let health = health()
        counters += [
            CounterEntry(name: CounterEntry.storeErrors, label: "", value: health.storeErrors),
            CounterEntry(name: CounterEntry.resyncs, label: "", value: health.resyncs),
            CounterEntry(name: CounterEntry.decodeErrors, label: "", value: health.kernel.decodeErrors),
            CounterEntry(name: CounterEntry.bindingsMapFull, label: "", value: health.kernel.mapFull),
        ]
        var state = ExporterState(rows: snapshot?.rows, counters: counters, programs: settings.programs,
                                  version: settings.version, revision: settings.revision, maxPortSeries: settings.maxPortSeries)
        state.kernelFeatures = settings.kernelFeatures
        state.recentTransients = recent
        guard let policy else { return state }
        let current = policy.current
        return state.withPolicy(unexpected: state.rows.map { current.policy.unexpected($0) },
                                reload: (current.lastSuccess, current.lastSuccessTime))
    }
}
