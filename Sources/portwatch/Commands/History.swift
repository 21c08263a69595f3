import ArgumentParser
import FoundationEssentials
import Glibc
import PortwatchCore
import PortwatchStore
import PortwatchSystem

extension HistoryEntry.Kind: ExpressibleByArgument {}

/// `portwatch history`: opens, closes, holder changes and transient listeners recorded in the
/// ledger, streamed as they are read; `--follow` keeps printing new entries.
struct History: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show when ports were opened and closed, by which process, and for how long; also short-lived (transient) listeners.",
        discussion: """
            Kept for --db.history-retention (default 7d). A transient entry can stand for several short-lived \
            listeners of one process (COUNT, and their ports when they differed: up to 64 kept exactly, the rest \
            as a range). --port finds an entry that held one of its ports; MATCH says whether the port was held \
            exactly or lies in the range of the ports not kept. --output json prints one JSON object per line. \
            Exit codes: 0 shown, 1 the ledger cannot be read, 64 bad flags.
            """
    )

    @OptionGroup var database: DatabaseOption

    @Option(help: "Only this port or range of ports, e.g. 4444 or 8000-8999.")
    var port: PortsArgument?

    @Option(help: "How far back to look, e.g. 1h, 24h, 7d.")
    var since = PrometheusDuration(argument: "24h")!

    @Option(help: "Only entries of this kind: open, close, holder or transient (repeat for several).")
    var kind: [HistoryEntry.Kind] = []

    @Flag(name: [.short, .long], help: "Keep printing new entries as the daemon writes them (Ctrl-C to stop).")
    var follow = false

    @Option(name: .customLong("follow.interval"), help: "How often --follow looks for new entries.")
    var followInterval = PrometheusDuration(argument: "500ms")!

    @Option(help: "table or json (one object per line).")
    var output: OutputFormat = .table

    static let header = ["TIME", "EVENT", "PROTO", "LOCAL", "PID", "COMM", "UID", "UNIT", "POD", "LIFETIME", "COUNT", "REASON"]
    static let widths = [20, 9, 5, 21, 7, 15, 5, 16, 20, 8, 5]
    /// With --port: REASON gets a width and MATCH follows it.
    static let reasonWidth = 9

    func run() throws {
        let now = SystemClock().wallNanoseconds()
        let reader = try LedgerOutput.reader(database.path)
        var out = StreamWriter()
        if output == .table {
            for (i, title) in Self.header.enumerated() {
                if i < Self.widths.count { out.cell(title, width: Self.widths[i]) } else if port == nil { out.append(title) } else {
                    out.cell(title, width: Self.reasonWidth)
                    out.append("MATCH")
                }
            }
            out.endLine()
        }
        var query = HistoryQuery(ports: port?.range, since: now &- min(now, since.nanoseconds), kinds: kind.isEmpty ? nil : Set(kind))
        let format = HistoryFormat(output: output, ports: port?.range)
        do {
            // What is written after this id is --follow's to print, so nothing shows twice.
            let last = try reader.lastHistoryID()
            query.throughID = last
            try HistoryReaders(path: database.path, query: query, format: format).print(to: &out)
            out.flush()
            guard follow else { return }
            query.since = 0
            query.throughID = nil
            query.afterID = last
            while true {
                usleep(useconds_t(min(followInterval.nanoseconds / 1000, 60_000_000)))
                try reader.historyRows(query) { row in
                    if format.write(row, to: &out) { query.afterID = row.int(.id) }
                }
                out.flush()
            }
        } catch let exit as ExitCode { throw exit } catch { throw LedgerOutput.fail("\(error)") }
    }
}

/// One history row as a table line or a JSON object, written straight from the row's bytes.
struct HistoryFormat: Sendable {
    let output: OutputFormat
    /// The ports asked for: each line says how the entry matched them.
    var ports: ClosedRange<UInt16>? = nil

    /// What a line is made of beyond the row's own columns, worked out once per row.
    private struct Line {
        let kind: HistoryEntry.Kind
        let port: Int64
        /// The ports of a transient group that used several.
        let held: HeldPorts?
        /// How the entry met --port (nil without it).
        let match: PortMatch?
        let time: UInt64
        let lifetime: UInt64?
        let ipv6: Bool
    }

    /// Writes the row's line; false (nothing written) for an entry this version cannot read.
    func write(_ r: HistoryRow, to out: inout StreamWriter) -> Bool {
        guard let kind = r.kind else { return false }
        let port = r.int(.port)
        let held = kind == .transient ? r.held : nil
        let time = r.uint(.time)
        let lifetime: UInt64? = switch kind {
        case .close: time &- r.uint(.opened)
        case .transient: r.uint(.lifetime)
        case .open, .holder: nil
        }
        let family = r.bytes(.family)
        let line = Line(kind: kind, port: port, held: held,
                        match: ports.map { HistoryQuery(ports: $0).match(held, port: UInt16(truncatingIfNeeded: port)) ?? .exact },
                        time: time, lifetime: lifetime, ipv6: family.count == 4 && family[3] == UInt8(ascii: "6"))  // "ipv6"; "ipv4" otherwise
        switch output {
        case .table: writeTable(r, line, to: &out)
        case .json: writeJSON(r, line, to: &out)
        }
        return true
    }

    private func writeTable(_ r: HistoryRow, _ line: Line, to out: inout StreamWriter) {
        let (kind, port, held, match, time, lifetime, ipv6) = (line.kind, line.port, line.held, line.match, line.time, line.lifetime, line.ipv6)
        let widths = History.widths
        var start = out.position
        out.append(time: time)
        out.endASCIICell(at: start, width: widths[0])
        start = out.position
        out.append(kind.rawValue)
        out.endASCIICell(at: start, width: widths[1])
        out.cell(r.bytes(.transport), width: widths[2])
        start = out.position
        if ipv6 { out.append(byte: UInt8(ascii: "[")) }
        out.append(r.bytes(.address))
        if ipv6 { out.append(byte: UInt8(ascii: "]")) }
        out.append(byte: UInt8(ascii: ":"))
        if let held { out.append(held.text) } else { out.append(port) }
        out.endCell(at: start, width: widths[3])
        start = out.position
        out.append(r.int(.pid))
        out.endASCIICell(at: start, width: widths[4])
        out.cell(r.bytes(.comm), width: widths[5])
        start = out.position
        out.append(r.int(.uid))
        out.endASCIICell(at: start, width: widths[6])
        out.cell(r.bytes(.unit), width: widths[7])
        start = out.position
        writePod(r, to: &out)
        out.endCell(at: start, width: widths[8])
        start = out.position
        if let lifetime { out.append(duration: lifetime) } else { out.append(byte: UInt8(ascii: "-")) }
        out.endASCIICell(at: start, width: widths[9])
        start = out.position
        if kind == .transient { out.append(max(1, r.int(.count))) } else { out.append(byte: UInt8(ascii: "-")) }
        out.endASCIICell(at: start, width: widths[10])
        let reason = r.bytes(.reason)
        start = out.position
        if reason.isEmpty { out.append(byte: UInt8(ascii: "-")) } else { out.append(reason) }
        if let match {
            out.endASCIICell(at: start, width: History.reasonWidth)
            out.append(match.rawValue)
        }
        out.endLine()
    }

    private func writeJSON(_ r: HistoryRow, _ line: Line, to out: inout StreamWriter) {
        let (kind, port, held, match, time, lifetime, ipv6) = (line.kind, line.port, line.held, line.match, line.time, line.lifetime, line.ipv6)
        out.beginObject()
        out.field("id", r.int(.id))
        out.field("time")
        out.append(byte: UInt8(ascii: "\""))
        out.append(time: time)
        out.append(byte: UInt8(ascii: "\""))
        out.field("event", kind.rawValue)
        out.field("netns", r.int(.netns))
        out.field("protocol", bytes: r.bytes(.transport))
        out.field("family", bytes: r.bytes(.family))
        let address = r.bytes(.address)
        out.field("address", bytes: address)
        out.field("port", port)
        out.field("port_max", Int64(held?.high ?? UInt16(truncatingIfNeeded: port)))
        if kind == .transient {
            let held = held ?? HeldPorts(UInt16(truncatingIfNeeded: port), count: UInt64(max(1, r.int(.count))))
            out.field("ports", numbers: held.ports.map(Int64.init))
            out.field("ports_unlisted", Int64(bitPattern: held.unlisted))
        }
        if let match { out.field("match", match.rawValue) }
        out.field("state", bytes: r.bytes(.state))
        out.field("pid", r.int(.pid))
        out.field("comm", bytes: r.bytes(.comm))
        out.field("uid", r.int(.uid))
        out.field("unit", bytes: r.bytes(.unit))
        out.field("container_id", bytes: r.bytes(.containerID))
        out.field("pod", bytes: r.bytes(.pod))
        out.field("namespace", bytes: r.bytes(.namespace))
        out.field("container", bytes: r.bytes(.container))
        out.field("exe", bytes: r.bytes(.exe))
        let exposure = Exposure(address: String(decoding: address, as: UTF8.self), family: ipv6 ? .ipv6 : .ipv4)
        out.field("exposure", exposure.rawValue)
        out.field("lifetime_seconds", seconds: lifetime)
        out.field("count", max(1, r.int(.count)))
        let reason = r.bytes(.reason)
        out.field("reason", bytes: reason.isEmpty ? nil : reason)
        out.endObject()
    }

    /// The POD column, by `LedgerOutput.podCell`'s rule.
    private func writePod(_ r: HistoryRow, to out: inout StreamWriter) {
        guard let cell = LedgerOutput.podCell(pod: r.bytes(.pod), namespace: r.bytes(.namespace), container: r.bytes(.container),
                                              containerID: r.bytes(.containerID)) else { return out.append(byte: UInt8(ascii: "-")) }
        if let namespace = cell.namespace {
            out.append(namespace)
            out.append(byte: UInt8(ascii: "/"))
        }
        out.append(UnsafeBufferPointer(rebasing: cell.name))
    }
}
