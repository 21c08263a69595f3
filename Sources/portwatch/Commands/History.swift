import ArgumentParser
import Foundation
import PortwatchCore
import PortwatchStore

extension HistoryEntry.Kind: ExpressibleByArgument {}

/// `portwatch history`: opens, closes, holder changes and transient listeners recorded in the
/// ledger, streamed as they are read; `--follow` keeps printing new entries.
struct History: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show when ports were opened and closed, by which process, and for how long; also short-lived (transient) listeners.",
        discussion: """
            Kept for --db.history-retention (default 7d). A transient entry can stand for several short-lived \
            listeners of one process (COUNT, and a port range when their ports differed). --output json prints one \
            JSON object per line. Exit codes: 0 shown, 1 the ledger cannot be read, 64 bad flags.
            """
    )

    @OptionGroup var database: DatabaseOption

    @Option(help: "Only this port.")
    var port: UInt16?

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

    func run() throws {
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        let reader = try LedgerOutput.reader(database.path)
        var out = StreamWriter()
        if output == .table {
            for (i, title) in Self.header.enumerated() {
                if i < Self.widths.count { out.cell(title, width: Self.widths[i]) } else { out.append(title) }
            }
            out.endLine()
        }
        var query = HistoryQuery(port: port, since: now &- min(now, since.nanoseconds), kinds: kind.isEmpty ? nil : Set(kind))
        do {
            // What is written after this id is --follow's to print, so nothing shows twice.
            let last = try reader.lastHistoryID()
            query.throughID = last
            var printed = 0
            try reader.history(query) {
                write($0, to: &out)
                printed += 1
                // The first entry goes out at once; the rest in 64 KiB writes.
                if printed == 1 { out.flush() }
            }
            out.flush()
            guard follow else { return }
            query.since = 0
            query.throughID = nil
            query.afterID = last
            while true {
                usleep(useconds_t(min(followInterval.nanoseconds / 1000, 60_000_000)))
                try reader.history(query) { entry in
                    write(entry, to: &out)
                    query.afterID = entry.id
                }
                out.flush()
            }
        } catch let exit as ExitCode { throw exit } catch { throw LedgerOutput.fail("\(error)") }
    }

    /// One entry as a table line or a JSON object, written straight into `out`.
    func write(_ e: HistoryEntry, to out: inout StreamWriter) {
        let b = e.row
        switch output {
        case .table:
            let widths = Self.widths
            var start = out.position
            out.append(time: e.time)
            out.endCell(at: start, width: widths[0])
            out.cell(e.kind.rawValue, width: widths[1])
            out.cell(b.key.transport.description, width: widths[2])
            start = out.position
            if b.key.family == .ipv6 { out.append(byte: UInt8(ascii: "[")) }
            out.append(b.key.address)
            if b.key.family == .ipv6 { out.append(byte: UInt8(ascii: "]")) }
            out.append(byte: UInt8(ascii: ":"))
            out.append(Int64(b.key.port))
            if e.portMax > b.key.port {
                out.append(byte: UInt8(ascii: "-"))
                out.append(Int64(e.portMax))
            }
            out.endCell(at: start, width: widths[3])
            start = out.position
            out.append(Int64(b.owner.pid))
            out.endCell(at: start, width: widths[4])
            out.cell(b.owner.comm, width: widths[5])
            start = out.position
            out.append(Int64(b.owner.uid))
            out.endCell(at: start, width: widths[6])
            out.cell(LedgerOutput.unit(b.owner), width: widths[7])
            out.cell(LedgerOutput.pod(b.owner), width: widths[8])
            out.cell(e.lifetime.map(LedgerOutput.duration) ?? "-", width: widths[9])
            start = out.position
            if e.kind == .transient { out.append(Int64(e.count)) } else { out.append(byte: UInt8(ascii: "-")) }
            out.endCell(at: start, width: widths[10])
            out.append(e.reason?.rawValue ?? "-")
            out.endLine()
        case .json:
            let a = b.owner.attribution
            out.beginObject()
            out.field("id", e.id)
            out.field("time")
            out.append(byte: UInt8(ascii: "\""))
            out.append(time: e.time)
            out.append(byte: UInt8(ascii: "\""))
            out.field("event", e.kind.rawValue)
            out.field("netns", Int64(b.key.netns))
            out.field("protocol", b.key.transport.description)
            out.field("family", b.key.family.description)
            out.field("address", b.key.address)
            out.field("port", Int64(b.key.port))
            out.field("port_max", Int64(e.portMax))
            out.field("state", b.state.description)
            out.field("pid", Int64(b.owner.pid))
            out.field("comm", b.owner.comm)
            out.field("uid", Int64(b.owner.uid))
            out.field("unit", a.unit)
            out.field("container_id", a.containerID)
            out.field("pod", a.pod)
            out.field("namespace", a.namespace)
            out.field("container", a.container)
            out.field("exposure", b.key.exposure.rawValue)
            out.field("lifetime_seconds", seconds: e.lifetime)
            out.field("count", Int64(e.count))
            out.field("reason", e.reason?.rawValue)
            out.endObject()
        }
    }
}
