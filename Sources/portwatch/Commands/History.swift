import ArgumentParser
import Foundation
import PortwatchCore
import PortwatchStore

/// `portwatch history`: opens and closes recorded in the ledger.
struct History: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show when ports were opened and closed, by which process, and for how long.",
        discussion: "Kept for --db.history-retention (default 7d). Exit codes: 0 shown, 1 the ledger cannot be read, 64 bad flags."
    )

    @OptionGroup var database: DatabaseOption

    @Option(help: "Only this port.")
    var port: UInt16?

    @Option(help: "How far back to look, e.g. 1h, 24h, 7d.")
    var since = PrometheusDuration(argument: "24h")!

    @Option(help: "table or json.")
    var output: OutputFormat = .table

    func run() throws {
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        let entries: [HistoryEntry]
        do {
            entries = try LedgerOutput.reader(database.path).history(port: port, since: now &- min(now, since.nanoseconds))
        } catch let exit as ExitCode { throw exit } catch { throw LedgerOutput.fail("\(error)") }
        func lifetime(_ e: HistoryEntry) -> UInt64? { e.action == .delete ? e.time &- e.opened : nil }
        switch output {
        case .json:
            print(LedgerOutput.json(entries.map { e in
                var object = LedgerOutput.fields(e.row)
                object["time"] = LedgerOutput.time(e.time)
                object["event"] = LedgerOutput.event(e.action)
                object["lifetime_seconds"] = lifetime(e).map { Double($0) / 1e9 }
                object["reason"] = e.reason?.rawValue
                object.removeValue(forKey: "holders")
                return object
            }), terminator: "")
        case .table:
            print(LedgerOutput.table(
                ["TIME", "EVENT", "PROTO", "LOCAL", "PID", "COMM", "UID", "UNIT", "POD", "LIFETIME", "REASON"],
                entries.map { e in
                    [LedgerOutput.time(e.time), LedgerOutput.event(e.action), "\(e.row.key.transport)",
                     LedgerOutput.hostPort(e.row.key), "\(e.row.owner.pid)", e.row.owner.comm, "\(e.row.owner.uid)",
                     LedgerOutput.unit(e.row.owner), LedgerOutput.pod(e.row.owner),
                     lifetime(e).map(LedgerOutput.duration) ?? "-", e.reason?.rawValue ?? "-"]
                }), terminator: "")
        }
    }
}
