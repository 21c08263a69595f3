import PortwatchCore

/// Everything one scrape reports, gathered by the daemon.
public struct ExporterState: Sendable {
    /// The reconciled table with the policy's verdicts, sorted by key; nil when the database
    /// could not be read.
    public var entries: [LedgerEntry]?
    public var counters: [CounterEntry]
    /// BPF program name -> attached.
    public var programs: [String: Bool]
    public var version: String
    public var revision: String
    /// Caps `portwatch_port_info` series; nil means no cap.
    public var maxPortSeries: Int?
    /// `portwatch_port_info` names the holder's executable too (--metrics.port-info-exe).
    public var portInfoExe = false
    /// Which held ports get a `portwatch_port_info` series: every one (nil), only the
    /// unexpected ones, or none (the policy's `metrics.port_info`).
    public var portInfoOnly: PortInfoScope = .all
    /// Labels left out of `portwatch_port_info`; series equal without them are merged.
    public var portInfoDropLabels: Set<String> = []
    /// An expected-listener policy judged the entries (`LedgerEntry.unexpected`).
    public var policyApplied = false
    /// The last policy (re)load: whether it worked, and when (Unix seconds).
    public var policyReload: (success: Bool, time: Double)?
    /// Kernel features that change what portwatch can do -> present.
    public var kernelFeatures: [String: Bool] = [:]
    /// The transient listeners of the last hour by owner, the most first, and how many owners
    /// were left out; nil when --metrics.max-transient-series is 0 (or the ledger could not be read).
    public var recentTransients: (top: [TransientSummary], dropped: Int)?
    /// The accept queues and drops were read (`LedgerEntry.health`); false with
    /// --listen-stats.interval 0: no such series.
    public var listenerHealthRead = false
    /// Equal for two states with the same series: the exporter renders a generation once and
    /// serves the bytes until it changes. Nil: render every scrape.
    public var generation: UInt64?

    public init(entries: [LedgerEntry]?, counters: [CounterEntry], programs: [String: Bool],
                version: String, revision: String, maxPortSeries: Int? = nil) {
        self.entries = entries
        self.counters = counters
        self.programs = programs
        self.version = version
        self.revision = revision
        self.maxPortSeries = maxPortSeries
    }

    /// A state of rows no policy judged.
    public init(rows: [Binding]?, counters: [CounterEntry], programs: [String: Bool],
                version: String, revision: String, maxPortSeries: Int? = nil) {
        self.init(entries: rows?.map { LedgerEntry($0) }, counters: counters, programs: programs, version: version,
                  revision: revision, maxPortSeries: maxPortSeries)
    }

    /// The held ports shown in the per-port series (not ignored), in order; nil when unread.
    public var rows: [Binding]? { entries.map { $0.filter { !$0.ignored }.map(\.row) } }

    /// The value of a stored or in-memory counter (0 when absent).
    func counter(_ name: CounterName, _ label: String = "") -> UInt64 {
        counters.first { $0.name == name && $0.label == label }?.value ?? 0
    }
}

/// Which held ports `portwatch_port_info` has a series for.
public enum PortInfoScope: Sendable, Equatable {
    case all, unexpected, none
}

/// The metric contract: names and labels users build dashboards and alerts on. Each
/// collector (one per file under Collectors/) renders one part of it.
public enum PortwatchMetrics {
    static let collectors: [any Collector.Type] = [
        LedgerTableCollector.self, LedgerCountersCollector.self, RecentTransientsCollector.self, PolicyCollector.self,
        ListenerHealthCollector.self, SelfHealthCollector.self,
    ]

    /// Every family with every sample, in collector order.
    public static func families(_ state: ExporterState) -> [MetricFamily] {
        collectors.flatMap { $0.collect(state) }.map { $0.expanded(state) }
    }

    /// The families sorted by name, the per-port ones without samples (`RowSeries` renders
    /// them from the entries' cached labels).
    static func sortedFamilies(_ state: ExporterState) -> [MetricFamily] {
        collectors.flatMap { $0.collect(state) }.sorted { $0.name < $1.name }
    }
}

/// One part of the metric contract, rendered from the state of one scrape.
protocol Collector {
    static func collect(_ state: ExporterState) -> [MetricFamily]
}
