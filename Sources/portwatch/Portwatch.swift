import ArgumentParser
import Glibc
import Logging
import PortwatchCapture

/// What this binary is: its version, the commit and time it was built from (stamped by
/// BuildInfoPlugin), and the libbpf it runs with.
enum BuildInfo {
    static let version = "0.2.0"
    static let revision = buildRevision
    static let date = buildDate

    static var versionText: String {
        "portwatch \(version) (revision \(revision), built \(date), libbpf \(KernelCapture.libbpfVersion))"
    }
}

@main
struct Portwatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portwatch",
        abstract: "Knows which processes hold which network ports, from the kernel, and exports it to Prometheus.",
        discussion: """
        Without a subcommand, runs the daemon (`portwatch serve --help` lists its flags). The other \
        subcommands read the ledger the daemon keeps, while it runs or not.
        Exit codes: 0 success, 1 an error (one line says what to do), 64 bad flags or arguments.
        """,
        version: BuildInfo.versionText,
        subcommands: [Serve.self, ListPorts.self, History.self, CheckPolicy.self, SuggestPolicy.self],
        defaultSubcommand: Serve.self
    )

    /// A parent can hand down a blocked signal mask (Foundation's `Process` does): unblocked
    /// here, so SIGTERM and Ctrl-C stop every command, `history --follow` included, and the
    /// daemon gets the signals it routes.
    static func main() {
        var all = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_UNBLOCK, &all, nil)
        main(nil)
    }

    static func level(_ text: String) -> Logger.Level? {
        switch text {
        case "debug": .debug
        case "info": .info
        case "warn", "warning": .warning
        case "error": .error
        default: nil
        }
    }
}

/// `--db.path`, shared by the daemon and the commands that read its ledger.
struct DatabaseOption: ParsableArguments {
    @Option(name: .customLong("db.path"), help: "SQLite database holding the reconciled table, counters and history.")
    var path = "/var/lib/portwatch/portwatch.db"

    func validate() throws {
        guard !path.isEmpty else { throw ValidationError("--db.path must name a file, e.g. /var/lib/portwatch/portwatch.db") }
    }
}

/// `--output table|json` for the reading commands.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}
