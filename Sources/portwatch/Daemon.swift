import Dispatch
import Foundation
import Logging
import PortwatchCapture
import PortwatchCore
import PortwatchExporter
import PortwatchPolicy
import PortwatchStore

/// Start-up in the order that makes it race-free: open/migrate the DB, load and attach
/// BPF (events start buffering), start the capture thread (snapshot + resync, then ready),
/// serve HTTP. SIGTERM/SIGINT stop everything and detach the programs.
struct Daemon {
    let options: Serve
    let logger: Logger

    func run() throws {
        // Room for the HTTP connection cap, ring buffer, maps and the snapshot's netlink sockets.
        var files = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files)
        files.rlim_cur = files.rlim_max
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files)

        let store = try Store(path: options.databasePath)
        let policy = try options.policyFile.map { try PolicyWatcher(path: $0, logger: logger) }
        let web = try options.webConfigFile.map { try WebConfigFile.load(path: $0) }
        var captureOptions = KernelCapture.Options()
        captureOptions.ringBufferBytes = options.ringBufferBytes
        let capture = try KernelCapture(options: captureOptions, logger: logger)
        let programs = capture.attached
        let loop = try CaptureLoop(
            capture: capture, store: store,
            settings: .init(window: options.window.nanoseconds, resyncInterval: options.resyncInterval.seconds,
                            historyRetention: options.historyRetention.nanoseconds),
            logger: logger)

        let path = options.databasePath
        let maxSeries = options.maxPortSeries == 0 ? nil : options.maxPortSeries
        let readerLock = NSLock()
        nonisolated(unsafe) var reader: StoreReader?
        let baseState: @Sendable () -> ExporterState = {
                readerLock.lock()
                defer { readerLock.unlock() }
                var rows: [Binding]?
                var counters: [CounterEntry] = []
                do {
                    if reader == nil { reader = try StoreReader(path: path) }
                    let snapshot = try reader!.snapshot()
                    rows = snapshot.rows
                    counters = snapshot.counters
                } catch {
                    reader = nil
                    logger.warning("scrape cannot read the database", metadata: ["error": "\(error)"])
                }
                counters.append(CounterEntry(name: CounterEntry.storeErrors, label: "", value: UInt64(loop.storeErrors.load(ordering: .relaxed))))
                counters.append(CounterEntry(name: CounterEntry.resyncs, label: "", value: UInt64(loop.resyncs.load(ordering: .relaxed))))
                return ExporterState(rows: rows, counters: counters, programs: programs,
                                     version: BuildInfo.version, revision: BuildInfo.revision, maxPortSeries: maxSeries)
            }

        let stateWithPolicy: @Sendable () -> ExporterState = { [policy] in
            let state = baseState()
            guard let policy else { return state }
            let current = policy.current
            return state.withPolicy(unexpected: state.rows.map { current.policy.unexpected($0) },
                                    reload: (current.lastSuccess, current.lastSuccessTime))
        }
        let exporter = Exporter(telemetryPath: options.telemetryPath, state: stateWithPolicy,
                                ready: { loop.ready.load(ordering: .relaxed) },
                                auth: web.flatMap { $0.users.isEmpty ? nil : BasicAuth(users: $0.users) },
                                headers: web?.headers ?? [])

        let addresses = options.listenAddresses.compactMap(ListenAddress.init)
        let server = try HTTPServer(addresses: addresses, tls: web?.tls, logger: logger) { exporter.handle($0) }
        // Everything privileged is open or attached: keep only what resyncs need.
        if let user = options.runAs {
            try KernelChecks.switchUser(user, ownedPaths: ["", "-wal", "-shm"].map { options.databasePath + $0 })
        } else {
            try KernelChecks.dropCapabilitiesAfterAttach()
        }
        loop.start()
        server.start()
        policy?.start()
        logger.info("listening", metadata: ["address": "\(addresses.map(\.description).joined(separator: ","))",
                                            "db": "\(path)", "window": "\(options.window)"])

        waitForTerminationSignal()
        logger.info("stopping")
        server.stop()
        loop.stop()
        logger.info("stopped; BPF programs detached")
    }

    private func waitForTerminationSignal() {
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let done = DispatchSemaphore(value: 0)
        let sources = [SIGTERM, SIGINT].map { sig in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { done.signal() }
            source.resume()
            return source
        }
        done.wait()
        sources.forEach { $0.cancel() }
    }
}
