import Logging
import PortwatchCore
import PortwatchExporter
import PortwatchPipeline
import PortwatchStore
import PortwatchSystem
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
        /// `portwatch_port_info` carries the `exe` label.
        public var portInfoExe = false
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
    private let listeners: ListenerHealthMonitor?
    private let logger: Logger
    private let clock: TimeSource
    private let cache = Mutex(Cache())

    /// What the last scrape read, so the next reads only when the ledger changed, and only
    /// the rows that changed.
    private struct Cache {
        var reader: StoreReader?
        /// The reader's `PRAGMA data_version` when the table was read.
        var dataVersion: Int64 = -1
        /// The table as last read, judged by the policy, with listener health; nil when unread.
        var table: LedgerTable?
        var counters: [CounterEntry] = []
        var recent: Recent?
        var recentAt: UInt64 = 0
        var inputs: Inputs?
        var state: ExporterState?
        var generation: UInt64 = 0
    }

    typealias Recent = (top: [TransientSummary], dropped: Int)

    /// Everything a state is made from: while it stays equal, so does the state (and its generation).
    private struct Inputs: Equatable {
        var dataVersion: Int64
        var read: Bool
        var recent: [TransientSummary]?
        var recentDropped: Int
        var health: [UInt64]
        var policyLoaded: Bool
        var policyTime: Double
        var listenerHealth: UInt64
    }

    /// How often the recent-transient series are read again while the ledger does not change
    /// (their hour slides on).
    static let recentRefresh: UInt64 = 10_000_000_000

    public init(settings: Settings, policy: PolicyWatcher?, health: @escaping @Sendable () -> CapturePipeline.Health,
                listeners: ListenerHealthMonitor? = nil, clock: TimeSource = SystemClock(), logger: Logger) {
        self.settings = settings
        self.listeners = listeners
        self.clock = clock
        self.policy = policy
        self.health = health
        self.logger = logger
    }

    /// The state for one scrape. The ledger is read again only when its data version moved
    /// (the daemon committed), and then only the rows changed since; the state keeps its
    /// generation while nothing it is made from changed, so the exporter serves the series it
    /// rendered for it.
    public func state() -> ExporterState {
        let now = clock.wallNanoseconds()
        let health = health()
        let current = policy?.current
        let listenerHealth = listeners?.latest
        return cache.withLock { c in
            do {
                if c.reader == nil {
                    c.reader = try StoreReader(path: settings.databasePath, cacheKiB: StoreReader.daemonCacheKiB)
                    c.dataVersion = -1
                    c.table = nil
                }
                let version = try c.reader!.dataVersion()
                var changed = false
                if version != c.dataVersion || c.table == nil {
                    let read = try c.reader!.read(since: c.table?.position)
                    var table = c.table ?? LedgerTable()
                    table.apply(read)
                    c.table = table
                    c.counters = read.counters
                    c.dataVersion = version
                    changed = true
                }
                if settings.maxTransientSeries > 0, changed || c.recent == nil || now &- c.recentAt >= Self.recentRefresh {
                    c.recent = try c.reader!.recentTransients(since: now &- min(now, settings.transientPeriod), limit: settings.maxTransientSeries)
                    c.recentAt = now
                }
            } catch {
                c.reader = nil
                c.table = nil
                c.recent = nil
                c.dataVersion = -1
                logger.warning("scrape cannot read the database", metadata: ["error": "\(error)"])
            }
            c.table?.judge(policy: current.map { ($0.policy, $0.lastSuccessTime) }, health: listenerHealth)
            let inputs = Inputs(dataVersion: c.dataVersion, read: c.table != nil, recent: c.recent?.top, recentDropped: c.recent?.dropped ?? 0,
                                health: [health.storeErrors, health.resyncs, health.kernel.decodeErrors, health.kernel.mapFull, health.staleEntries,
                                         health.holderChecks, health.kernel.unresolvedListens],
                                policyLoaded: current?.lastSuccess ?? false, policyTime: current?.lastSuccessTime ?? 0,
                                listenerHealth: listenerHealth?.generation ?? 0)
            if inputs == c.inputs, let state = c.state { return state }
            c.generation += 1
            var state = makeState(entries: c.table?.entries, counters: c.table == nil ? [] : c.counters, recent: c.recent, health: health,
                                  policy: current)
            state.listenerHealthRead = listenerHealth != nil
            state.generation = c.generation
            c.inputs = inputs
            c.state = state
            return state
        }
    }

    private func makeState(entries: [LedgerEntry]?, counters: [CounterEntry], recent: Recent?, health: CapturePipeline.Health,
                           policy current: PolicyWatcher.Status?) -> ExporterState {
        var counters = counters
        counters += [
            CounterEntry(name: CounterEntry.storeErrors, label: "", value: health.storeErrors),
            CounterEntry(name: CounterEntry.resyncs, label: "", value: health.resyncs),
            CounterEntry(name: CounterEntry.decodeErrors, label: "", value: health.kernel.decodeErrors),
            CounterEntry(name: CounterEntry.bindingsMapFull, label: "", value: health.kernel.mapFull),
            CounterEntry(name: CounterEntry.bindingsMapStale, label: "", value: health.staleEntries),
            CounterEntry(name: CounterEntry.holderChecks, label: "", value: health.holderChecks),
            CounterEntry(name: CounterEntry.unresolvedListens, label: "", value: health.kernel.unresolvedListens),
        ]
        var state = ExporterState(entries: entries, counters: counters, programs: settings.programs,
                                  version: settings.version, revision: settings.revision, maxPortSeries: settings.maxPortSeries)
        state.kernelFeatures = settings.kernelFeatures
        state.portInfoExe = settings.portInfoExe
        state.recentTransients = recent
        guard let current else { return state }
        state.portInfoOnly = switch current.policy.metrics.portInfo {
        case .all: .all
        case .unexpected: .unexpected
        case .none: .none
        }
        state.portInfoDropLabels = current.policy.metrics.dropLabels
        state.policyApplied = true
        state.policyReload = (current.lastSuccess, current.lastSuccessTime)
        return state
    }
}
