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

        public init(databasePath: String, programs: [String: Bool], version: String, revision: String, maxPortSeries: Int?,
                    kernelFeatures: [String: Bool] = [:]) {
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

    public init(settings: Settings, policy: PolicyWatcher?, health: @escaping @Sendable () -> CapturePipeline.Health, logger: Logger) {
        self.settings = settings
        self.policy = policy
        self.health = health
        self.logger = logger
    }

    public func state() -> ExporterState {
        let snapshot: StoreSnapshot? = reader.withLock { reader in
            do {
                if reader == nil { reader = try StoreReader(path: settings.databasePath) }
                return try reader!.snapshot()
            } catch {
                reader = nil
                logger.warning("scrape cannot read the database", metadata: ["error": "\(error)"])
                return nil
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
        guard let policy else { return state }
        let current = policy.current
        return state.withPolicy(unexpected: state.rows.map { current.policy.unexpected($0) },
                                reload: (current.lastSuccess, current.lastSuccessTime))
    }
}
