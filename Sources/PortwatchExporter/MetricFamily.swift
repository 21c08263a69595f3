/// A metric family as both exposition formats need it.
public struct MetricFamily: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case gauge, counter
    }

    /// Base name; counters get `_total` on their samples.
    public var name: String
    public var help: String
    public var kind: Kind
    /// OpenMetrics unit (the name must end with it), e.g. "seconds", "bytes".
    public var unit: String?
    public var samples: [Sample]
    /// A per-port family: its samples come from the state's entries, after `samples` (none).
    var rows: RowSeries?

    public init(_ name: String, _ kind: Kind, help: String, unit: String? = nil, samples: [Sample]) {
        self.name = name
        self.help = help
        self.kind = kind
        self.unit = unit
        self.samples = samples
    }

    /// A per-port family, rendered from the entries.
    init(_ name: String, _ kind: Kind, help: String, rows: RowSeries) {
        self.init(name, kind, help: help, samples: [])
        self.rows = rows
    }

    /// The family with the samples of its entries.
    func expanded(_ state: ExporterState) -> MetricFamily {
        guard let rows else { return self }
        var copy = self
        copy.samples = rows.samples(state)
        copy.rows = nil
        return copy
    }

    public struct Sample: Sendable, Equatable {
        public var labels: [(String, String)]
        public var value: Double

        public init(_ labels: [(String, String)] = [], _ value: Double) {
            self.labels = labels
            self.value = value
        }

        public static func == (a: Sample, b: Sample) -> Bool {
            a.value == b.value && a.labels.elementsEqual(b.labels) { $0 == $1 }
        }
    }

    /// The name samples carry.
    var sampleName: String { kind == .counter ? name + "_total" : name }
}
