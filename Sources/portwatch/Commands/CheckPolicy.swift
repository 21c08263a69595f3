import ArgumentParser
import FoundationEssentials
import Glibc
import PortwatchPolicy
import PortwatchStore

/// `portwatch check-policy FILE`: validate a policy and show what it would flag now.
struct CheckPolicy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-policy",
        abstract: "Validate a policy file and show which current listeners it would flag.",
        discussion: "Exit codes: 0 the file is valid, 1 it is not (the message names the line), 64 bad flags."
    )

    @Argument(help: "The YAML policy file.")
    var file: String

    @OptionGroup var database: DatabaseOption

    func run() throws {
        let policy: Policy
        do { policy = try PolicyFile.load(path: file) } catch { throw LedgerOutput.fail("\(error)") }
        let ignoring = policy.ignore.isEmpty ? "" : ", \(policy.ignore.count) ignore rule\(policy.ignore.count == 1 ? "" : "s")"
        print("\(file): valid, \(policy.rules.count) rule\(policy.rules.count == 1 ? "" : "s")\(ignoring)")
        guard let rows = try? StoreReader(path: database.path).snapshot().rows else {
            print("(no ledger at \(database.path) to check current listeners against)")
            return
        }
        if !policy.ignore.isEmpty {
            let ignored = rows.count - policy.shown(rows).count
            print("\(ignored) of \(rows.count) current listener\(rows.count == 1 ? "" : "s") ignored (left out of the metrics)")
        }
        let flagged = policy.unexpected(policy.shown(rows))
        print("\(flagged.count) of \(rows.count) current listener\(rows.count == 1 ? "" : "s") would be unexpected\(flagged.isEmpty ? "" : ":")")
        print(LedgerOutput.table(["PROTO", "LOCAL", "PID", "COMM", "UID", "NETNS"], flagged.map { r in
            ["\(r.key.transport)", LedgerOutput.hostPort(r.key), "\(r.owner.pid)", r.owner.comm, "\(r.owner.uid)", "\(r.key.netns)"]
        }), terminator: "")
    }
}
