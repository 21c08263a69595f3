import PortwatchCore

/// A per-port family: one sample for each entry that has one, in the entries' order. Rendered
/// two ways that give the same bytes: as `MetricFamily.Sample`s (`samples(_:)`, what
/// `PortwatchMetrics.families` returns) and straight from the entries' cached labels
/// (`render(_:into:)`, what a scrape serves), so a scrape after one changed row renders one row.
enum RowSeries: Sendable, Hashable, CaseIterable {
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
            line(e, value: value, name: name, exe: exe, dropping: dropping, into: &out, rendered: &rendered)
            // A copy: a slice would share `out`'s buffer, and the next append would copy it all.
            if !dropping.isEmpty, !seen.insert(Array(out[start...])).inserted { out.removeSubrange(start...) }
        }
    }

    private func line(_ e: LedgerEntry, value: Double, name: [UInt8], exe: Bool, dropping: Set<String>, into out: inout [UInt8],
                      rendered: inout Int) {
        out.append(contentsOf: name)
        switch self {
        case .queueLength, .queueLimit, .drops: e.labels.appendHealth(e, to: &out, rendered: &rendered)
        default: e.labels.appendPortInfo(e, exe: exe, dropping: dropping, to: &out, rendered: &rendered)
        }
        out.append(UInt8(ascii: " "))
        if value == 1 {
            out.append(UInt8(ascii: "1"))
        } else {
            out.append(contentsOf: ExpositionFormat.format(value).utf8)
        }
        out.append(UInt8(ascii: "\n"))
    }

    /// Whether each entry's line depends on that entry alone (no merged labels): then the lines
    /// can be kept between generations (`segment`; the series cap cuts the assembled lines).
    func spliceable(_ state: ExporterState) -> Bool { dropping(state).isEmpty }

    /// Brings `segment` (this family's lines for an earlier state) to `state`'s entries: the
    /// entries that are the same objects as before (a row that did not change keeps its entry)
    /// keep their lines where they are, the others are rendered and spliced in place. A scrape
    /// after one changed row renders one line per family and moves the lines after it.
    func update(_ segment: inout RowSegment, to state: ExporterState, name: [UInt8], rendered: inout Int) {
        let entries = state.entries ?? [], exe = exe(state)
        if segment.scope != state.portInfoOnly || segment.exe != exe { segment = RowSegment(scope: state.portInfoOnly, exe: exe) }
        let edits = segment.edits(to: entries)
        if edits.count > RowSegment.editsInPlace {
            segment = RowSegment(scope: state.portInfoOnly, exe: exe)
            return update(&segment, to: state, name: name, rendered: &rendered)
        }
        // From the last edit back: the offsets before an edit stay valid while it is applied.
        for (old, new) in edits.reversed() {
            var bytes: [UInt8] = []
            var offsets: [Int] = []
            offsets.reserveCapacity(new.count)
            let start = segment.offsets[old.lowerBound], end = segment.offsets[old.upperBound]
            for e in entries[new] {
                offsets.append(start + bytes.count)
                if let value = value(e, state) { line(e, value: value, name: name, exe: exe, dropping: [], into: &bytes, rendered: &rendered) }
            }
            let delta = bytes.count - (end - start)
            segment.bytes.replaceSubrange(start..<end, with: bytes)
            segment.offsets.replaceSubrange(old, with: offsets)
            if delta != 0 {
                for i in (old.lowerBound + new.count)..<segment.offsets.count { segment.offsets[i] += delta }
            }
        }
        segment.entries = entries
    }
}

/// A per-port family's lines as last assembled, and the entries they came from.
struct RowSegment {
    var entries: [LedgerEntry] = []
    /// Where each entry's line starts in `bytes` (an entry without a sample has an empty one),
    /// and the end.
    var offsets: [Int] = [0]
    var bytes: [UInt8] = []
    var scope: PortInfoScope = .all
    var exe = false

    /// More edits than this are not spliced: the lines are all rendered again.
    static let editsInPlace = 32

    /// Where `entries` differ from the segment's: ranges of its entries to replace by ranges of
    /// the new ones, in order (both are sorted by key; an entry is unchanged when it is the same object).
    func edits(to new: [LedgerEntry]) -> [(old: Range<Int>, new: Range<Int>)] {
        var out: [(old: Range<Int>, new: Range<Int>)] = []
        var i = 0, j = 0
        while i < entries.count || j < new.count {
            if i < entries.count, j < new.count, entries[i] === new[j] {
                i += 1
                j += 1
                continue
            }
            let (i0, j0) = (i, j)
            // Up to the next entry both have, the same object.
            while i < entries.count || j < new.count {
                if i < entries.count, j < new.count, entries[i] === new[j] { break }
                if j == new.count || (i < entries.count && entries[i].row.key < new[j].row.key) {
                    i += 1  // deleted
                } else if i == entries.count || new[j].row.key < entries[i].row.key {
                    j += 1  // inserted
                } else {
                    i += 1  // changed
                    j += 1
                }
            }
            out.append((i0..<i, j0..<j))
            if out.count > Self.editsInPlace { return out }
        }
        return out
    }

    /// The lines of the first `limit` entries that have one.
    func lines(limit: Int) -> ArraySlice<UInt8> {
        guard limit < entries.count else { return bytes[...] }
        var taken = 0
        for i in entries.indices where offsets[i + 1] > offsets[i] {
            taken += 1
            if taken == limit { return bytes[..<offsets[i + 1]] }
        }
        return bytes[...]
    }
}
