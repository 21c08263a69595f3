import Dispatch
import FoundationEssentials
import Glibc
import Logging
import PortwatchAttribution
import PortwatchCapture
import PortwatchCore
import PortwatchExporter
import PortwatchPipeline
import PortwatchScrape
import PortwatchStore
import PortwatchSystem
import Synchronization

/// Start-up in the order that makes it race-free: open/migrate the DB, load and attach
/// BPF (events start buffering), start the capture pipeline (snapshot + resync, then ready),
/// serve HTTP. SIGTERM/SIGINT stop everything and detach the programs; SIGHUP reloads the
/// policy (and is harmless without one).
struct Daemon {
    let options: Serve
    let logger: Logger

    func run() throws {
        // Signals are routed by dispatch sources; none may take its default action (exit).
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { signal(sig, SIG_IGN) }
        raiseFileLimit()
        // Large buffers (a rendered scrape, a burst's batch) are returned to the kernel when freed.
        Allocator.mapBlocks(from: 256 << 10)
        // One heap for all threads: 0.8 MiB less at 10,000 ports (docs/benchmarks.md, fourth memory round).
        Allocator.shareOneArena()

        let store = try Store(path: options.databasePath, exclusive: true, cacheKiB: Store.daemonCacheKiB)
        let policy = try options.policyFile.map { try PolicyWatcher(path: $0, logger: logger) }
        let web = try options.webConfigFile.map { try WebConfigFile.load(path: $0) }
        let schedule = Schedule(window: options.window.nanoseconds, resyncInterval: options.resyncInterval.seconds)
        var captureOptions = KernelCapture.Options()
        captureOptions.ringBufferBytes = options.ringBufferBytes
        if !schedule.gathersWakeups { captureOptions.wakeupBytes = 0 }
        // Diagnostics (README, Supported kernels): 0 loads the programs as for Linux 5.10 on a
        // newer kernel; 1 skips the kernel probe, so a kernel that refuses them shows the fallback.
        switch ProcessInfo.processInfo.environment["PORTWATCH_BPF_TASK_BTF"] {
        case "0": captureOptions.taskBTF = .never
        case "1": captureOptions.taskBTF = .always
        default: break
        }
        // Tests: the small map of bound sockets sized this small, so that a few sockets spill over.
        if let entries = ProcessInfo.processInfo.environment["PORTWATCH_BPF_BINDINGS_ENTRIES"].flatMap({ UInt32($0) }), entries > 0 {
            captureOptions.nearEntries = entries
        }
        // Before the programs attach: the lister's probe socket is portwatch's, not a transient to report.
        let lister = KernelSocketLister()
        let capture = try KernelCapture(options: captureOptions, logger: logger)
        if !lister.dumpsBoundTCP {
            logger.warning("this kernel's sock_diag cannot list TCP sockets that are bound but not listening (Linux < 6.7): resyncs leave such rows to the kernel's events",
                           metadata: ["feature": "sock_diag_bound_tcp"])
        }
        if !capture.readsTaskBTF {
            logger.info("socket programs read the owner with checked kernel reads (no BTF task pointer for them before Linux 6.1, a kernel that refused them, or PORTWATCH_BPF_TASK_BTF=0)",
                        metadata: ["feature": "bpf_task_btf"])
        }
        let attributor = AttributionResolver(cgroupMount: try KernelChecks.cgroup2Root(), rootfs: options.rootfs)
        let allowed: (@Sendable (Binding) -> Bool)? = policy.map { watcher in { @Sendable binding in watcher.current.policy.allows(binding) } }
        let pipeline = try CapturePipeline(
            kernel: capture, lister: lister, ledger: store, attributor: attributor, processes: ProcFS(),
            schedule: schedule,
            historyRetention: options.historyRetention.nanoseconds,
            transients: TransientLog.Limits(recordsPerMinute: options.transientRecordsPerMinute),
            allowed: allowed,
            logger: logger)
        let listeners = options.listenStatsInterval.nanoseconds == 0 ? nil : ListenerHealthMonitor(
            interval: options.listenStatsInterval.seconds, databasePath: options.databasePath,
            handles: { pipeline.namespaceHandles }, take: { ListenerHealthDump.take($0).sockets },
            ready: { pipeline.phase == .ready }, logger: logger)
        var settings = ScrapeSource.Settings(
            databasePath: options.databasePath, programs: capture.attached, version: BuildInfo.version,
            revision: BuildInfo.revision, maxPortSeries: options.maxPortSeries == 0 ? nil : options.maxPortSeries,
            kernelFeatures: lister.features.merging(capture.features) { $1 }, maxTransientSeries: options.maxTransientSeries)
        settings.portInfoExe = options.portInfoExe
        let scrapes = ScrapeSource(
            settings: settings,
            policy: policy, health: { pipeline.health }, listeners: listeners, logger: logger)
        var exporter = Exporter(telemetryPath: options.telemetryPath, state: { scrapes.state() },
                                ready: { pipeline.phase == .ready },
                                auth: web.flatMap { $0.users.isEmpty ? nil : BasicAuth(users: $0.users) },
                                headers: web?.headers ?? [])
        exporter.mapMemory = { [maps = capture.mapMemory] in maps.read() }
        let served = exporter

        let addresses = options.listenAddresses.compactMap(ListenAddress.init)
        let server = try HTTPServer(addresses: addresses, tls: web?.tls, logger: logger) { served.handle($0) }
        // Everything privileged is open or attached: keep only what resyncs need.
        if let user = options.runAs {
            try KernelChecks.switchUser(user, ownedPaths: ["", "-wal", "-shm"].map { options.databasePath + $0 })
        } else {
            try KernelChecks.dropCapabilitiesAfterAttach()
        }
        pipeline.start()
        server.start()
        policy?.start()
        listeners?.start()
        logger.info("listening", metadata: ["address": "\(addresses.map(\.description).joined(separator: ","))",
                                            "ports": "\(server.boundPorts.map(String.init).joined(separator: ","))",
                                            "db": "\(options.databasePath)", "window": "\(options.window)"])

        let heap = keepMemorySmall(ready: { pipeline.phase == .ready })
        waitForTermination(onHangup: {
            if let policy { policy.reload() } else { logger.info("SIGHUP: no --policy.file, nothing to reload") }
        })
        heap.cancel()
        logger.info("stopping")
        server.stop()
        listeners?.stop()
        pipeline.stop()
        logger.info("stopped; BPF programs detached")
    }

    /// Room for the HTTP connection cap, ring buffer, maps and the snapshot's netlink sockets.
    private func raiseFileLimit() {
        do { try ResourceLimit.openFiles.raiseToHardLimit() } catch {
            logger.warning("cannot raise the open-file limit to its hard limit", metadata: ["error": "\(error)"])
        }
    }

    /// Every `heapCheckSeconds`, gives the heap's free pages back to the kernel when more than
    /// `heapSlack` bytes are free: the memory a burst took (10,000 listeners that came and went:
    /// their rows, entries and lines freed, 5 MiB of it left inside the arenas) leaves the RSS
    /// once the burst is over, not only at a restart. At the first check after the pipeline is
    /// ready (start-up done: programs attached, snapshot taken, table resynced), once, gives
    /// back the code pages start-up used and drops the executable's unmapped pages from the page
    /// cache (`CodePages`: 1.5 MiB of an idle, scraped daemon's 18; 3 MiB more of its code on Debian's kernels).
    /// `PORTWATCH_HEAP_CHECK_SECONDS` sets the interval for tests.
    private func keepMemorySmall(ready: @escaping @Sendable () -> Bool) -> DispatchSourceTimer {
        let interval = ProcessInfo.processInfo.environment["PORTWATCH_HEAP_CHECK_SECONDS"].flatMap { Int($0) }.map { max(1, $0) }
            ?? Self.heapCheckSeconds
        let timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        timer.schedule(deadline: .now() + .seconds(interval), repeating: .seconds(interval), leeway: .seconds(1))
        let startUpCode = Atomic<Bool>(true)
        timer.setEventHandler {
            Allocator.giveBackFreePages(above: Self.heapSlack)
            if ready(), startUpCode.exchange(false, ordering: .relaxed) { CodePages.giveBack() }
        }
        timer.resume()
        return timer
    }

    static let heapCheckSeconds = 30
    /// With one arena for all threads, a burst's freed blocks are holes between blocks that
    /// stay: 2 MiB of slack kept half of what 5,000 listeners had taken after they were gone.
    static let heapSlack = 512 << 10

    /// Blocks until SIGTERM or SIGINT; SIGHUP runs `onHangup` and keeps waiting.
    private func waitForTermination(onHangup: @escaping @Sendable () -> Void) {
        let done = DispatchSemaphore(value: 0)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hangup.setEventHandler(handler: onHangup)
        hangup.resume()
        let stops = [SIGTERM, SIGINT].map { sig in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { done.signal() }
            source.resume()
            return source
        }
        done.wait()
        (stops + [hangup]).forEach { $0.cancel() }
    }
}
