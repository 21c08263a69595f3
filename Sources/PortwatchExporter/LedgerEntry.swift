import PortwatchCore

/// One held port as a scrape shows it: the ledger's row, the policy's verdict on it and its
/// listener health as last read. The scrape source makes a new entry only for a row that changed
/// (or got a new verdict or reading: then sharing the row's RowLabels), so a scrape after one
/// change renders the labels of one row.
public final class LedgerEntry: Sendable {
    public let row: Binding
    /// An `ignore:` rule matches: left out of every per-port series.
    public let ignored: Bool
    /// No `expected:` rule allows it (false when no policy is set).
    public let unexpected: Bool
    /// Accept queue and drops, as last read (nil: not read, or the port had no socket then).
    public let health: Health?
    let labels: RowLabels
    /// What every render looks at, kept apart from the row (reading the row would copy it).
    let exeDeleted: Bool
    let transport: TransportProtocol
    let listening: Bool
    var queue: UInt32? { health?.queue }
    var queueLimit: UInt32? { health?.queueLimit }
    var drops: UInt64? { health?.drops }

    /// A reading's values, which are what its lines show: the reading's key and socket are the
    /// row's (kept once per entry, 72 bytes less of 10,000 entries' 2.8 MB).
    public struct Health: Sendable, Equatable {
        public var queue: UInt32?, queueLimit: UInt32?, drops: UInt64?

        public init(_ reading: SocketHealth) { (queue, queueLimit, drops) = (reading.queue, reading.queueLimit, reading.drops) }
    }
    /// Its protocol and family as one index (`portwatch_ports_held`'s series).
    let heldSlot: Int
    /// A piece of the gzip body starts at this entry (about one in `RenderCache.chunkEntries`,
    /// by its key: an insertion or deletion moves no other piece's edges).
    let chunkStart: Bool

    public convenience init(_ row: Binding, ignored: Bool = false, unexpected: Bool = false, health: SocketHealth? = nil) {
        self.init(row, ignored: ignored, unexpected: unexpected, health: health.map(Health.init), labels: RowLabels())
    }

    private init(_ row: Binding, ignored: Bool, unexpected: Bool, health: Health?, labels: RowLabels) {
        self.row = row
        self.ignored = ignored
        self.unexpected = unexpected
        self.health = health
        self.labels = labels
        exeDeleted = row.owner.exeDeleted
        transport = row.key.transport
        listening = row.state == .listen
        heldSlot = Self.heldSlot(row.key.transport, row.key.family)
        chunkStart = row.key.hashValue & (RenderCache.chunkEntries - 1) == 0
    }

    static func heldSlot(_ t: TransportProtocol, _ f: AddressFamily) -> Int {
        TransportProtocol.allCases.firstIndex(of: t)! * AddressFamily.allCases.count + AddressFamily.allCases.firstIndex(of: f)!
    }

    /// The same row with another verdict or health: its rendered labels are kept; the same
    /// entry when neither changed what its lines show.
    public func with(ignored: Bool, unexpected: Bool, health reading: SocketHealth?) -> LedgerEntry {
        with(ignored: ignored, unexpected: unexpected, health: reading.map(Health.init))
    }

    public func with(ignored: Bool, unexpected: Bool, health: Health?) -> LedgerEntry {
        if ignored == self.ignored && unexpected == self.unexpected && health == self.health { return self }
        return LedgerEntry(row, ignored: ignored, unexpected: unexpected, health: health, labels: labels)
    }
}

/// A row's label sets (`{name="value",...}`, escaped; the same bytes in both exposition
/// formats). One object per row: an entry made again for the same row (another verdict or
/// health reading) shares it, which tells a family's lines that the labels are the same and can
/// be copied from its previous line instead of rendered. Only the labels with some dropped
/// (`drop_labels`, whose lines are not kept between scrapes) are kept here. Unchecked: used only
/// by the exporter's renderer, under its lock.
final class RowLabels: @unchecked Sendable {
    /// `portwatch_port_info`'s labels without the dropped ones, for that set of dropped labels.
    private var dropped: (labels: Set<String>, exe: Bool, bytes: [UInt8])?

    /// Appends the port's identity and holder labels, with `exe` or without. `rendered` counts
    /// the label sets rendered.
    func appendPortInfo(_ entry: LedgerEntry, exe: Bool, to out: inout [UInt8], rendered: inout Int) {
        rendered += 1
        Self.render(PortInfoLabels.labels(entry.row, exe: exe)[...], into: &out)
        out.append(UInt8(ascii: "}"))
    }

    func appendPortInfo(_ entry: LedgerEntry, exe: Bool, dropping: Set<String>, to out: inout [UInt8], rendered: inout Int) {
        guard !dropping.isEmpty else { return appendPortInfo(entry, exe: exe, to: &out, rendered: &rendered) }
        if dropped?.labels != dropping || dropped?.exe != exe {
            let row = entry.row
            rendered += 1
            var bytes: [UInt8] = []
            Self.render(PortInfoLabels.labels(row, exe: exe).filter { !dropping.contains($0.0) }[...], into: &bytes)
            dropped = (dropping, exe, bytes)
        }
        out.append(contentsOf: dropped!.bytes)
        out.append(UInt8(ascii: "}"))
    }

    func appendHealth(_ entry: LedgerEntry, to out: inout [UInt8], rendered: inout Int) {
        rendered += 1
        Self.render(PortInfoLabels.health(entry.row)[...], into: &out)
        out.append(UInt8(ascii: "}"))
    }

    /// `{a="x",b="y"` (no closing brace), or `,a="x"` when not `first`.
    private static func render(_ labels: ArraySlice<(String, String)>, into out: inout [UInt8], first: Bool = true) {
        for (i, (name, value)) in labels.enumerated() {
            out.append(i == 0 && first ? UInt8(ascii: "{") : UInt8(ascii: ","))
            out.append(contentsOf: name.utf8)
            out.append(contentsOf: "=\"".utf8)
            ExpositionFormat.escapeLabelValue(value, into: &out)
            out.append(UInt8(ascii: "\""))
        }
    }
}

/// The labels of the per-port series, shared by both renderings (the families' samples and
/// the entries' cached bytes).
enum PortInfoLabels {
    /// The labels of one held port (shared with the policy's unexpected ports), with the
    /// holder's executable last when `exe`.
    static func labels(_ row: Binding, exe: Bool) -> [(String, String)] {
        let k = row.key, a = row.owner.attribution
        var labels = [("netns", String(k.netns)), ("protocol", "\(k.transport)"), ("family", "\(k.family)"),
                      ("address", k.address), ("port", String(k.port)), ("state", "\(row.state)"),
                      ("pid", String(row.owner.pid)), ("comm", row.owner.comm),
                      ("unit", a.unit), ("container_id", a.containerID), ("pod", a.pod), ("namespace", a.namespace),
                      ("container", a.container), ("exposure", "\(k.exposure)")]
        if exe { labels.append(("exe", row.owner.exe)) }
        return labels
    }

    /// The port's identity and its holder's, without the pid (listener health).
    static func health(_ row: Binding) -> [(String, String)] {
        let k = row.key, a = row.owner.attribution
        return [("netns", String(k.netns)), ("protocol", "\(k.transport)"), ("family", "\(k.family)"), ("address", k.address),
                ("port", String(k.port)), ("comm", row.owner.comm), ("unit", a.unit), ("container", a.container),
                ("pod", a.pod), ("namespace", a.namespace)]
    }
}
