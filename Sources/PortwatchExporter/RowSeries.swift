import PortwatchCore

/// A per-port family: one sample for each entry that has one, in the entries' order. Rendered
/// two ways that give the same bytes: as `MetricFamily.Sample`s (`samples(_:)`, what
/// `PortwatchMetrics.families` returns) and as lines kept between scrapes (`update`, what a
/// scrape serves; `render(_:into:)` where dropped labels merge lines), so a scrape after one
/// changed row renders one row.
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

    /// The sample lines, `name` before each (labels with some dropped are kept by the entry's
    /// RowLabels); `rendered` counts the label sets rendered.
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

    /// The lines of `entries` (a run of the state's, within the series cap), their labels
    /// rendered anew: a compressed chunk made again where no lines are kept.
    func render(_ entries: ArraySlice<LedgerEntry>, state: ExporterState, name: [UInt8], into out: inout [UInt8], rendered: inout Int) {
        let exe = exe(state)
        for e in entries {
            guard let value = value(e, state) else { continue }
            line(e, value: value, name: name, exe: exe, dropping: [], into: &out, rendered: &rendered)
        }
    }

    /// `labels`: the entry's label set as an earlier line of this family has it (copied, not
    /// rendered), or nil.
    private func line(_ e: LedgerEntry, value: Double, name: [UInt8], exe: Bool, dropping: Set<String>,
                      labels: ArraySlice<UInt8>? = nil, into out: inout [UInt8], rendered: inout Int) {
        out.append(contentsOf: name)
        if let labels {
            out.append(contentsOf: labels)
        } else {
            switch self {
            case .queueLength, .queueLimit, .drops: e.labels.appendHealth(e, to: &out, rendered: &rendered)
            default: e.labels.appendPortInfo(e, exe: exe, dropping: dropping, to: &out, rendered: &rendered)
            }
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
    /// keep their lines where they are, the others get new lines spliced in place. A scrape
    /// after one changed row renders one line per family and moves the lines after it. An entry
    /// made again for the same row (a new health reading, another verdict) copies its labels
    /// from its old line; only a new row's labels are rendered.
    func update(_ segment: inout RowSegment, to state: ExporterState, name: [UInt8], rendered: inout Int) {
        let entries = state.entries ?? [], exe = exe(state)
        if segment.scope != state.portInfoOnly || segment.exe != exe { segment = RowSegment(scope: state.portInfoOnly, exe: exe) }
        var edits = segment.edits(to: entries)
        // Many edits: one that replaces every line (splicing each would move the lines after it each time).
        if edits.count > RowSegment.editsInPlace { edits = [(0..<segment.entries.count, 0..<entries.count)] }
        // From the last edit back: the offsets before an edit stay valid while it is applied.
        for (old, new) in edits.reversed() {
            // The old lines of this edit by row, read before they are replaced.
            var oldLines: [ObjectIdentifier: Int] = [:]
            oldLines.reserveCapacity(old.count)
            for i in old where segment.offsets[i + 1] > segment.offsets[i] { oldLines[ObjectIdentifier(segment.entries[i].labels)] = i }
            var bytes: [UInt8] = []
            var offsets: [Int] = []
            offsets.reserveCapacity(new.count)
            let start = segment.offsets[old.lowerBound], end = segment.offsets[old.upperBound]
            for e in entries[new] {
                offsets.append(start + bytes.count)
                guard let value = value(e, state) else { continue }
                let labels = oldLines[ObjectIdentifier(e.labels)].map { segment.labels(of: $0, name: name) }
                line(e, value: value, name: name, exe: exe, dropping: [], labels: labels, into: &bytes, rendered: &rendered)
            }
            let delta = bytes.count - (end - start)
            segment.bytes.replaceSubrange(start..<end, with: bytes)
            segment.offsets.replaceSubrange(old, with: offsets)
            if delta != 0 {
                for i in (old.lowerBound + new.count)..<segment.offsets.count { segment.offsets[i] += delta }
            }
        }
        segment.entries = entries
        // A family that shrank (a burst of listeners gone) gives back its lines' room.
        segment.bytes.giveBackRoom(keeping: 64 << 10)
        segment.offsets.giveBackRoom(keeping: 1024)
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

    /// The label set in entry `i`'s line (`name{...} value`): between the name and the space
    /// before the value (label values may hold spaces; the value holds none).
    func labels(of i: Int, name: [UInt8]) -> ArraySlice<UInt8> {
        let line = bytes[offsets[i]..<offsets[i + 1]]
        let space = line.lastIndex(of: UInt8(ascii: " "))!
        return bytes[(line.startIndex + name.count)..<space]
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
