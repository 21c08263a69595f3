import ArgumentParser
import FoundationEssentials
import Glibc
import PortwatchSystem
import Logging
import PortwatchCapture
import PortwatchCore
import PortwatchExporter
import PortwatchStore

/// The daemon: watch the kernel, keep the ledger, serve metrics.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon (the default command): watch ports in the kernel, keep the ledger, serve metrics.",
        discussion: """
        Watches bind, listen and close with eBPF, keeps the reconciled table in SQLite and serves \
        Prometheus/OpenMetrics metrics. Needs root (or CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH).
        Exit codes: 0 stopped by SIGTERM or SIGINT, 1 a start-up error (the message says what to do), 64 bad flags.
        SIGHUP reloads --policy.file.
        """
    )

    @Option(name: .customLong("web.listen-address"),
            help: ArgumentHelp("Address to serve metrics on: host:port, [v6]:port or :port. Repeat for several.", valueName: "address"))
    var listenAddresses: [String] = [":9976"]

    @Option(name: .customLong("web.config.file"),
            help: "exporter-toolkit style YAML with basic_auth_users (bcrypt) and http_server_config.headers.")
    var webConfigFile: String?

    @Option(name: .customLong("web.telemetry-path"), help: "Path under which to expose metrics.")
    var telemetryPath = "/metrics"

    @OptionGroup var database: DatabaseOption
    var databasePath: String { database.path }

    @Option(name: .customLong("policy.file"),
            help: "YAML file listing the expected listeners; others are exported as unexpected. Reloaded on SIGHUP and on change.")
    var policyFile: String?

    @Option(name: .customLong("db.history-retention"), help: "How long opens and closes stay in the history table (e.g. 7d, 12h).")
    var historyRetention = PrometheusDuration(argument: "7d")!

    @Option(name: .customLong("history.transient-records-per-minute"),
            help: "At most this many transient-listener records written to history per minute (0: none); what is left out is counted in portwatch_transient_records_dropped_total.")
    var transientRecordsPerMinute = 120

    @Option(name: .customLong("reconcile.window"),
            help: "A socket released sooner than this after it took a port is transient: counted and recorded in history, never in the table (e.g. 200ms, 0).")
    var window = PrometheusDuration(argument: "200ms")!

    @Option(name: .customLong("resync.interval"), help: "How often to compare the table with the kernel's sockets and repair drift.")
    var resyncInterval = PrometheusDuration(argument: "5m")!

    @Option(name: .customLong("listen-stats.interval"),
            help: "How often to read each held port's accept queue, its limit and its drops (one sock_diag dump per namespace); 0: never.")
    var listenStatsInterval = PrometheusDuration(argument: "15s")!

    @Option(name: .customLong("bpf.ring-buffer-size"), help: "Kernel ring buffer size in bytes (a power of two; e.g. 4194304 for a host whose floods lose events).")
    var ringBufferBytes = 1 << 20

    @Option(name: .customLong("metrics.max-port-series"), help: "At most this many portwatch_port_info series (0: no limit).")
    var maxPortSeries = 10_000

    @Flag(name: .customLong("metrics.port-info-exe"),
          help: "Add the holder's executable (exe label) to portwatch_port_info; portwatch_unexpected_port_info always has it.")
    var portInfoExe = false

    @Option(name: .customLong("metrics.max-transient-series"),
            help: "At most this many owners in the recent transient-listener series, those with the most in the last hour (0: none of those series).")
    var maxTransientSeries = 20

    @Option(name: .customLong("run-as"),
            help: ArgumentHelp("After start-up, switch to this user (name or uid), keeping only the capabilities resyncs need. The ledger file is handed to it.", valueName: "user"))
    var runAs: String?

    @Option(name: .customLong("path.rootfs"),
            help: "Prefix for the host paths read to name containers and pods (container runtimes' state), e.g. /host in a DaemonSet.")
    var rootfs = "/"

    @Option(name: .customLong("log.level"), help: "Only log messages with this severity or above: debug, info, warn, error.")
    var logLevel = "info"

    func validate() throws {
        for address in listenAddresses where ListenAddress(address) == nil {
            throw ValidationError("--web.listen-address '\(address)' is not host:port, [ipv6]:port or :port (e.g. :9976 or 127.0.0.1:9976)")
        }
        guard telemetryPath.hasPrefix("/"), telemetryPath != "/", !["/-/healthy", "/-/ready"].contains(telemetryPath) else {
            throw ValidationError("--web.telemetry-path must start with / and not be /, /-/healthy or /-/ready (e.g. /metrics)")
        }
        guard window.nanoseconds <= 60_000_000_000 else {
            throw ValidationError("--reconcile.window \(window) is longer than 1m; ports would appear that late. Use e.g. 200ms")
        }
        guard resyncInterval.nanoseconds >= 1_000_000_000 else { throw ValidationError("--resync.interval must be at least 1s") }
        guard listenStatsInterval.nanoseconds == 0 || listenStatsInterval.nanoseconds >= 1_000_000_000 else {
            throw ValidationError("--listen-stats.interval must be 0 (off) or at least 1s")
        }
        guard ringBufferBytes >= 4096, ringBufferBytes <= 1 << 30, ringBufferBytes & (ringBufferBytes - 1) == 0 else {
            throw ValidationError("--bpf.ring-buffer-size must be a power of two between 4096 and 1073741824 bytes")
        }
        guard transientRecordsPerMinute >= 0 else { throw ValidationError("--history.transient-records-per-minute must be 0 or more") }
        guard maxPortSeries >= 0 else { throw ValidationError("--metrics.max-port-series must be 0 or more") }
        guard maxTransientSeries >= 0 else { throw ValidationError("--metrics.max-transient-series must be 0 or more") }
        guard Portwatch.level(logLevel) != nil else { throw ValidationError("--log.level must be debug, info, warn or error") }
    }

    func run() throws {
        let level = Portwatch.level(logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "portwatch")
        do {
            try Daemon(options: self, logger: logger).run()
        } catch {
            // One line saying what is wrong and what to do; never a crash dump.
            FileDescriptor.writeStandardError("portwatch: \(error)\n")
            throw ExitCode(1)
        }
    }
}
