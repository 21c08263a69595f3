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
        if output == .table { out.write(LedgerOutput.line(Self.header, widths: Self.widths)) }
        var query = HistoryQuery(port: port, since: now &- min(now, since.nanoseconds), kinds: kind.isEmpty ? nil : Set(kind))
        do {
            // What is written after this id is --follow's to print, so nothing shows twice.
            let last = try reader.lastHistoryID()
            query.throughID = last
            try reader.history(query) { out.write(format($0)) }
            out.flush()
            guard follow else { return }
            query.since = 0
            query.throughID = nil
            query.afterID = last
            while true {
                usleep(useconds_t(min(followInterval.nanoseconds / 1000, 60_000_000)))
                try reader.history(query) { entry in
                    out.write(format(entry))
                    query.afterID = entry.id
                }
                out.flush()
            }
        } catch let exit as ExitCode { throw exit } catch { throw LedgerOutput.fail("\(error)") }
    }

    func format(_ e: HistoryEntry) -> String {
        switch output {
        case .table:
            return LedgerOutput.line(
                [LedgerOutput.time(e.time), e.kind.rawValue, "\(e.row.key.transport)", LedgerOutput.hostPort(e.row.key, ports: e.ports), "\(e.row.owner.pid)", e.row.owner.comm,
                 "\(e.row.owner.uid)", LedgerOutput.unit(e.row.owner), LedgerOutput.pod(e.row.owner),
                 e.lifetime.map(LedgerOutput.duration) ?? "-", e.kind == .transient ? "\(e.count)" : "-", e.reason?.rawValue ?? "-"],
                widths: Self.widths)
        case .json:
            let b = e.row, a = b.owner.attribution
            var line = JSONLine()
            line.add("id", e.id)
            line.add("time", LedgerOutput.time(e.time))
            line.add("event", e.kind.rawValue)
            line.add("netns", Int64(b.key.netns))
            line.add("protocol", b.key.transport.description)
            line.add("family", b.key.family.description)
            line.add("address", b.key.address)
            line.add("port", Int64(b.key.port))
            line.add("port_max", Int64(e.portMax))
            line.add("state", b.state.description)
            line.add("pid", Int64(b.owner.pid))
            line.add("comm", b.owner.comm)
            line.add("uid", Int64(b.owner.uid))
            line.add("unit", a.unit)
            line.add("container_id", a.containerID)
            line.add("pod", a.pod)
            line.add("namespace", a.namespace)
            line.add("container", a.container)
            line.add("exposure", b.key.exposure.rawValue)
            line.add("lifetime_seconds", seconds: e.lifetime)
            line.add("count", Int64(e.count))
            line.add("reason", e.reason?.rawValue)
            return line.line
        }
    }
}
