import PortwatchCore

/// A per-port family: one sample for each entry that has one, in the entries' order. Rendered
/// two ways that give the same bytes: as `MetricFamily.Sample`s (`samples(_:)`, what
/// `PortwatchMetrics.families` returns) and straight from the entries' cached labels
/// (`render(_:into:)`, what a scrape serves), so a scrape after one changed row renders one row.
enum RowSeries: Sendable, Equatable {
    /// `portwatch_port_info`: the ports in the policy's scope, without its dropped labels.
    case portInfo
    /// `portwatch_deleted_executable_port_info`.
    case deletedExecutable
    /// `portwatch_unexpected_port_info`.
    case unexpected
    /// Listener health: the accept queue, its limit, the drops.
    case queueLength, queueLimit, drops

    /// The entry's value in this family, nil when it has no sample.
    func value(_ e: LedgerEntry, _ state: ExporterState) -> Double? {
        guard !e.ignored else { return nil }
        switch self {
        case .portInfo:
            switch state.portInfoOnly {
            case .all: return 1
            case .unexpected: return e.unexpected ? 1 : nil
            case .none: return nil
            }
        case .deletedExecutable: return e.exeDeleted ? 1 : nil
        case .unexpected: return e.unexpected ? 1 : nil
        case .queueLength, .queueLimit:
            guard e.transport == .tcp, e.listening, let q = e.queue, let l = e.queueLimit else { return nil }
            return Double(self == .queueLength ? q : l)
        case .drops:
            guard let d = e.drops, e.transport == .udp || e.listening else { return nil }
            return Double(d)
        }
    }

    /// At most --metrics.max-port-series samples (the health families are not capped).
    func limit(_ state: ExporterState) -> Int {
        switch self {
        case .portInfo, .deletedExecutable, .unexpected: state.maxPortSeries ?? Int.max
        case .queueLength, .queueLimit, .drops: Int.max
        }
    }

    /// Labels dropped (and the samples then alike merged into one).
    func dropping(_ state: ExporterState) -> Set<String> { self == .portInfo ? state.portInfoDropLabels : [] }

    func exe(_ state: ExporterState) -> Bool { self == .portInfo ? state.portInfoExe : true }

    /// The samples, as `MetricFamily` holds them.
    func samples(_ state: ExporterState) -> [MetricFamily.Sample] {
        var out: [MetricFamily.Sample] = []
        var seen = Set<[String]>()
        let dropping = dropping(state), exe = exe(state), limit = limit(state)
        var taken = 0
        for e in state.entries ?? [] {
            guard taken < limit, let value = value(e, state) else { continue }
            taken += 1
            var labels: [(String, String)]
            switch self {
            case .queueLength, .queueLimit, .drops: labels = PortInfoLabels.health(e.row)
            default: labels = PortInfoLabels.labels(e.row, exe: exe)
            }
            if !dropping.isEmpty {
                labels = labels.filter { !dropping.contains($0.0) }
                guard seen.insert(labels.flatMap { [$0.0, $0.1] }).inserted else { continue }
            }
            out.append(.init(labels, value))
        }
        return out
    }

    /// The sample lines, `name` before each, from the entries' cached labels; `rendered` counts
    /// the label sets that were not cached yet.
    func render(_ state: ExporterState, name: [UInt8], into out: inout [UInt8], rendered: inout Int) {
        let dropping = dropping(state), exe = exe(state), limit = limit(state)
        var seen = Set<[UInt8]>()
        var taken = 0
        for e in state.entries ?? [] {
            guard taken < limit, let value = value(e, state) else { continue }
            taken += 1
            let start = out.count
            out.append(contentsOf: name)
            switch self {
            case .queueLength, .queueLimit, .drops: e.labels.appendHealth(e, to: &out, rendered: &rendered)
            default: e.labels.appendPortInfo(e, exe: exe, dropping: dropping, to: &out, rendered: &rendered)
            }
            // A copy: a slice would share `out`'s buffer, and the next append would copy it all.
            if !dropping.isEmpty, !seen.insert(Array(out[start...])).inserted {
                out.removeSubrange(start...)
                continue
            }
            out.append(UInt8(ascii: " "))
            if value == 1 {
                out.append(UInt8(ascii: "1"))
            } else {
                out.append(contentsOf: ExpositionFormat.format(value).utf8)
            }
            out.append(UInt8(ascii: "\n"))
        }
    }
}
