import ArgumentParser
import FoundationEssentials
import Glibc
import PortwatchCore
import PortwatchPolicy
import PortwatchStore
import PortwatchSystem

/// `portwatch suggest-policy`: a policy learnt from the ledger, allowing what was held steadily.
struct SuggestPolicy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "suggest-policy",
        abstract: "Write a policy (YAML, on stdout) that allows the listeners held steadily during a period.",
        discussion: """
            A listener is steady when it was held for at least --min-lifetime in one stretch during the period \
            (the ledger's table and the closes in its history). One rule per process name, unit, container or pod \
            and port (adjacent ports become a range), with the exposures it was held on; pids, uids and addresses \
            are left out because they change on restart. Transient listeners are never suggested. Review the \
            output before using it: whatever ran during the period, wanted or not, is allowed. A summary goes to \
            stderr. Exit codes: 0 written, 1 the ledger cannot be read, 64 bad flags.
            """
    )

    @OptionGroup var database: DatabaseOption

    @Option(help: "The period to learn from, e.g. 24h, 7d (bounded by --db.history-retention for closed listeners).")
    var since = PrometheusDuration(argument: "7d")!

    @Option(name: .customLong("min-lifetime"), help: "How long a listener must have been held in one stretch to be allowed.")
    var minLifetime = PrometheusDuration(argument: "1h")!

    @Option(help: ArgumentHelp("Learn as of this time (seconds since the epoch), for reproducible output.", visibility: .hidden))
    var now: UInt64?

    func run() throws {
        let now = self.now.map { $0 * 1_000_000_000 } ?? SystemClock().wallNanoseconds()
        let start = now &- min(now, since.nanoseconds)
        let reader = try LedgerOutput.reader(database.path)
        var holds: [PolicySuggestion.Hold] = []
        do {
            for row in try reader.snapshot().rows where row.firstSeen <= now {
                holds.append(.init(binding: row, from: row.firstSeen, until: nil))
            }
            try reader.history(HistoryQuery(since: start, kinds: [.close])) { e in
                if e.time <= now { holds.append(.init(binding: e.row, from: e.opened, until: e.time)) }
            }
        } catch { throw LedgerOutput.fail("\(error)") }
        let suggestions = PolicySuggestion.suggest(holds, start: start, now: now, minLifetime: minLifetime.nanoseconds)
        print(PolicySuggestion.yaml(suggestions, header: [
            "Expected listeners, suggested by `portwatch suggest-policy --since \(since) --min-lifetime \(minLifetime)`",
            "from \(database.path) at \(LedgerOutput.time(now)): every listener held for at least \(minLifetime)",
            "in one stretch between \(LedgerOutput.time(start)) and then. Review before use: whatever ran",
            "in that period, wanted or not, is allowed. Check it with `portwatch check-policy FILE`.",
        ]), terminator: "")
        let steady = suggestions.reduce(0) { $0 + $1.seen }
        FileDescriptor.writeStandardError("""
            portwatch: \(suggestions.count) rule\(suggestions.count == 1 ? "" : "s") from \(holds.count) listener\(holds.count == 1 ? "" : "s") \
            held during the last \(since); \(holds.count - steady) on ports never held \(minLifetime) in one stretch left out\n
            """)
    }
}
