import Foundation
import Glibc
import PortwatchStore

/// Benchmarks against the real kernel and the real daemon (root).
enum KernelBench {
    /// 1. Cost on the monitored system, without and with portwatch in ABBA order (so neither
    /// side always runs first): a bind+listen+close loop, and TCP connection churn on loopback.
    static func overhead(report: Report, repeats: Int) throws {
        // Runs of 1-2 s: runs of a few tenths of a second varied by as much as the effect measured.
        let threads = 2, iterations = 160_000, connections = 60_000
        var loopWithout: [Double] = [], loopWith: [Double] = [], churnWithout: [Double] = [], churnWith: [Double] = []
        var soloWithout: [Double] = [], soloWith: [Double] = []
        // CPU time per loop of the loop's own threads (µs): what the kernel does in their system
        // calls, portwatch's programs included, without the waits for a core that make the
        // wall-clock figures vary by more than the effect on this machine.
        var cpuWithout: [Double] = [], cpuWith: [Double] = []
        func measure(with daemon: Bool) throws {
            let running = daemon ? try BenchDaemon() : nil
            let loops = Double(threads * iterations) / Sockets.churn(threads: threads, iterations: iterations)
            // One thread: a core is left to the daemon, so this is mostly the kernel programs' cost.
            let (soloWall, soloCPU) = Sockets.timedChurn(threads: 1, iterations: iterations)
            let solo = Double(iterations) / soloWall
            let conns = Double(threads * connections) / (try Sockets.connectionChurn(threads: threads, iterations: connections))
            running?.stop()
            if daemon {
                loopWith.append(loops); soloWith.append(solo); churnWith.append(conns); cpuWith.append(soloCPU / Double(iterations) * 1e6)
            } else {
                loopWithout.append(loops); soloWithout.append(solo); churnWithout.append(conns); cpuWithout.append(soloCPU / Double(iterations) * 1e6)
            }
        }
        for run in 0..<repeats {
            Progress.step("overhead", run: run, of: repeats)
            let order = run % 2 == 0 ? [false, true] : [true, false]
            for daemon in order { try measure(with: daemon) }
        }
        let figures = [
            Figure(name: "bind+listen+close loop without portwatch", unit: "loops/s", runs: loopWithout),
            Figure(name: "bind+listen+close loop with portwatch attached", unit: "loops/s", runs: loopWith),
            Figure(name: "TCP connect+accept+close on loopback without portwatch", unit: "connections/s", runs: churnWithout),
            Figure(name: "TCP connect+accept+close on loopback with portwatch attached", unit: "connections/s", runs: churnWith),
            Figure(name: "bind+listen+close loop on 1 thread without portwatch", unit: "loops/s", runs: soloWithout),
            Figure(name: "bind+listen+close loop on 1 thread with portwatch attached (a core left to the daemon)", unit: "loops/s", runs: soloWith),
            Figure(name: "the same 1-thread loop: the thread's CPU time per loop without portwatch", unit: "µs", runs: cpuWithout),
            Figure(name: "the same 1-thread loop: the thread's CPU time per loop with portwatch attached", unit: "µs", runs: cpuWith),
        ]
        report.add("Overhead on the monitored system (\(threads) threads unless said, runs in ABBA order)", figures, notes: [
            "bind+listen+close, time per loop with / without: \(Report.format(figures[0].median / figures[1].median)) (goal <= 1.05)",
            "connection churn, time per connection with / without: \(Report.format(figures[2].median / figures[3].median)) (goal <= 1.02)",
            "bind+listen+close on 1 thread, time per loop with / without: \(Report.format(figures[4].median / figures[5].median))",
            "bind+listen+close on 1 thread, the thread's CPU time per loop with / without: \(Report.format(figures[7].median / figures[6].median))",
        ])
    }

    /// 2. Capacity: the highest rate this machine generates; per run, events generated vs received
    /// vs lost, and daemon CPU per million events. Fails if the accounting does not add up in time.
    static func capacity(report: Report, repeats: Int) throws -> (eventsPerRun: Double, dbGrowthPerMillion: Double, rssAfter: [Double], fdsAfter: [Double]) {
        var rate: [Double] = [], received: [Double] = [], lostShare: [Double] = [], cpuPerMillion: [Double] = [], growth: [Double] = []
        var rss: [Double] = [], fds: [Double] = [], eventsPerRun = 0.0
        var notes: [String] = []
        // PORTWATCH_BENCH_BASELINE=/path/to/an/older/portwatch: its flood runs alternate with
        // this build's (each first in every other run), so the two CPU figures share the machine's state.
        let baseline = ProcessInfo.processInfo.environment["PORTWATCH_BENCH_BASELINE"].flatMap { $0.isEmpty ? nil : $0 }
        if let baseline, !FileManager.default.isExecutableFile(atPath: baseline) {
            throw BenchError("PORTWATCH_BENCH_BASELINE=\(baseline) is not an executable portwatch binary")
        }
        var baselineCPU: [Double] = []
        func baselineRun(_ run: Int) throws {
            guard let baseline else { return }
            let daemon = try BenchDaemon(arguments: floodArguments, binary: baseline)
            defer { daemon.stop() }
            let cpuBefore = Measure.cpuSeconds(pid: daemon.pid)
            let (_, _, got, _) = try flood(daemon, what: "capacity run \(run + 1) of the baseline build")
            baselineCPU.append((Measure.cpuSeconds(pid: daemon.pid) - cpuBefore) / got * 1e6)
        }
        for run in 0..<repeats {
            Progress.step("capacity", run: run, of: repeats)
            if run % 2 == 1 { try baselineRun(run) }
            let daemon = try BenchDaemon(arguments: floodArguments)
            let cpuBefore = Measure.cpuSeconds(pid: daemon.pid)
            let (seconds, generated, got, lost) = try flood(daemon, what: "capacity run \(run + 1)")
            notes.append("run \(run + 1): generated \(Int(generated)), received \(Int(got)), lost \(Int(lost))")
            rate.append(generated / seconds)
            received.append(got)
            lostShare.append(lost / generated)
            cpuPerMillion.append((Measure.cpuSeconds(pid: daemon.pid) - cpuBefore) / got * 1e6)
            rss.append(Measure.rss(pid: daemon.pid))
            fds.append(Double(Measure.openFDs(pid: daemon.pid)))
            eventsPerRun = generated
            daemon.stop()
            if run % 2 == 0 { try baselineRun(run) }

            // Ledger growth: with --reconcile.window=0 every binding is written with its history.
            let writer = try BenchDaemon(arguments: ["--reconcile.window", "0"])
            let loops = 50_000
            let baseline = writer.value("portwatch_events_total"), lostBaseline = writer.value("portwatch_events_lost_total")
            _ = Sockets.churn(threads: 1, iterations: loops)
            let written = Double(3 * loops)
            func accounted() -> (received: Double, lost: Double) {
                (writer.value("portwatch_events_total") - baseline, writer.value("portwatch_events_lost_total") - lostBaseline)
            }
            let writeDeadline = Measure.now() + 60
            while accounted().received + accounted().lost < written, Measure.now() < writeDeadline { usleep(50_000) }
            let (events, lostWriting) = accounted()
            guard events + lostWriting >= written else {
                throw BenchError("ledger growth: \(Int(written)) events generated, \(Int(events)) received + \(Int(lostWriting)) lost after 60 s")
            }
            notes.append("run \(run + 1), window 0: generated \(Int(written)), received \(Int(events)), lost \(Int(lostWriting)) (each row and its history written)")
            writer.stop() // checkpoints the WAL into the database file
            growth.append(writer.databaseBytes / events * 1e6)
        }
        var figures = [
            Figure(name: "events generated per second", unit: "events/s", runs: rate),
            Figure(name: "events received by the daemon per run", unit: "events", runs: received),
            Figure(name: "share lost (ring buffer full)", unit: "fraction", runs: lostShare),
            Figure(name: "daemon CPU per million events received", unit: "s", runs: cpuPerMillion),
            Figure(name: "database size per million events written (window 0, history on)", unit: "MiB", runs: growth.map { $0 / 1_048_576 }),
        ]
        if let baseline {
            let before = Figure(name: "daemon CPU per million events received, baseline build \(baseline) (alternating runs)", unit: "s", runs: baselineCPU)
            figures.append(before)
            notes.append("daemon CPU, this build / the baseline build: \(Report.format(figures[3].median / before.median))")
        }
        report.add("Capacity (2 threads, UDP socket+bind+close as fast as possible)", figures, notes: notes)
        return (eventsPerRun, Measure.percentile(growth, 0.5), rss, fds)
    }

    /// What every daemon that `flood` measures runs with: a resync at most 10 s after the flood
    /// accounts for a release the kernel did not report (see `flood`).
    static let floodArguments = ["--resync.interval", "10s"]

    /// 2 threads bind and close UDP sockets as fast as they go (600,000 events); waits until the
    /// daemon has accounted for every one as received or lost (else throws after 60 s).
    /// Returns the seconds the load took, events generated, received and lost.
    static func flood(_ daemon: BenchDaemon, what: String) throws -> (seconds: Double, generated: Double, received: Double, lost: Double) {
        // One scrape per look, every 50 ms: the daemon's CPU per event is measured over this.
        // A bound socket the kernel's map refused (portwatch_bindings_map_full) reports no
        // close: each refusal is one event fewer generated. So does one whose release the kernel
        // did not report (about one in ten million): the daemon's next resync (every 10 s here)
        // removes its entry and counts it (portwatch_bindings_map_stale).
        func accounted() -> (received: Double, lost: Double, refused: Double) {
            let v = daemon.values(["portwatch_events_total", "portwatch_events_lost_total", "portwatch_bindings_map_full",
                                   "portwatch_bindings_map_stale"])
            return (v[0], v[1], v[2] + v[3])
        }
        let (eventsBefore, lostBefore, refusedBefore) = accounted()
        let threads = 2, iterations = 150_000
        let seconds = Sockets.churn(threads: threads, iterations: iterations, udp: true)
        // Each loop is a bind (open) and a close; anything else on the host adds to received.
        let generated = Double(2 * threads * iterations)
        var got = 0.0, lost = 0.0, refused = 0.0
        let deadline = Measure.now() + 60
        repeat {
            let now = accounted()
            got = now.received - eventsBefore
            lost = now.lost - lostBefore
            refused = now.refused - refusedBefore
            if got + lost + refused >= generated { break }
            usleep(50_000)
        } while Measure.now() < deadline
        guard got + lost + refused >= generated else {
            throw BenchError("\(what): \(Int(generated)) events generated, only \(Int(got)) received + \(Int(lost)) lost + \(Int(refused)) closes not reported (map full, or release unreported) after 60 s")
        }
        return (seconds, generated, got, lost)
    }

    /// 2b. The ring buffer's size against what a flood needs: per size, the share of events lost
    /// when 2 threads bind and close UDP sockets as fast as they can (window 200 ms, and window 0
    /// where every event is also a write), and the daemon's RSS at idle (the buffer's pages count in it).
    /// Sizes below the default show the margin it keeps.
    static func ringSizes(report: Report, repeats: Int) throws {
        var figures: [Figure] = []
        for size in [256 << 10, 512 << 10, 1 << 20, 2 << 20] {
            let name = size >= 1 << 20 ? "\(size >> 20) MiB" : "\(size >> 10) KiB"
            var lost: [Double] = [], lostWindow0: [Double] = [], rss: [Double] = []
            for run in 0..<repeats {
                Progress.step("ring buffer \(name)", run: run, of: repeats)
                for window in ["200ms", "0"] {
                    let daemon = try BenchDaemon(arguments: floodArguments + ["--bpf.ring-buffer-size", "\(size)", "--reconcile.window", window])
                    if window == "200ms" {
                        usleep(1_000_000)
                        rss.append(Measure.rss(pid: daemon.pid) / 1_048_576)
                    }
                    let (_, generated, _, missing) = try flood(daemon, what: "ring buffer \(size) bytes")
                    if window == "200ms" { lost.append(missing / generated) } else { lostWindow0.append(missing / generated) }
                    daemon.stop()
                }
            }
            figures += [
                Figure(name: "\(name): share lost, window 200ms", unit: "fraction", runs: lost),
                Figure(name: "\(name): share lost, window 0", unit: "fraction", runs: lostWindow0),
                Figure(name: "\(name): RSS at idle", unit: "MiB", runs: rss),
            ]
        }
        report.add("Ring buffer size (600,000-event UDP flood from 2 threads, as fast as they go)", figures)
    }

    /// 3. Latency from listen() returning to the port showing in /metrics.
    static func latency(report: Report, samples: Int, runs: Int) throws {
        var figures: [Figure] = []
        for window in ["200ms", "0"] {
            var p50: [Double] = [], p99: [Double] = [], worst: [Double] = []
            for run in 0..<runs {
                Progress.step("latency, window \(window)", run: run, of: runs)
                let daemon = try BenchDaemon(arguments: ["--reconcile.window", window])
                var latencies: [Double] = []
                for _ in 0..<samples {
                    // Start at a random phase of the daemon's loop, not in step with it.
                    usleep(UInt32.random(in: 0..<50_000))
                    let start = Measure.now()
                    let (fd, port) = Sockets.open()
                    let needle = "port=\"\(port)\""
                    while !daemon.metrics().contains(needle), Measure.now() - start < 5 { usleep(1_000) }
                    latencies.append((Measure.now() - start) * 1000)
                    close(fd)
                }
                daemon.stop()
                p50.append(Measure.percentile(latencies, 0.5))
                p99.append(Measure.percentile(latencies, 0.99))
                worst.append(latencies.max() ?? .nan)
            }
            figures.append(Figure(name: "p50, window \(window)", unit: "ms", runs: p50))
            figures.append(Figure(name: "p99, window \(window)", unit: "ms", runs: p99))
            figures.append(Figure(name: "max, window \(window)", unit: "ms", runs: worst))
        }
        report.add("Latency: listen() to /metrics (\(runs) runs of \(samples) samples, each run a fresh daemon; samples start at random phases; scrapes every 1 ms)", figures)
    }

    /// 4. Scrape cost with N held ports, interleaved with `ss -Htlnup` (names the processes, as
    /// portwatch does), `ss -Htln` (no process names: the kernel's socket dump alone) and a
    /// /proc/net + /proc/*/fd poller, so load on the machine hits all four alike.
    static func scrape(report: Report, counts: [Int], scrapes: Int, runs: Int) throws -> (idle: Footprint, big: Footprint) {
        Sockets.raiseFileLimit(20_000)
        // Idle footprint: fresh daemons, each given a second to settle.
        var idle = Footprint()
        for run in 0..<runs {
            Progress.step("idle footprint", run: run, of: runs)
            let fresh = try BenchDaemon()
            usleep(1_000_000)
            idle.add(pid: fresh.pid)
            idle.addIdle(pid: fresh.pid, seconds: 5)
            fresh.stop()
        }
        let daemon = try BenchDaemon()
        var held: [Int32] = []
        var figures: [Figure] = []
        var notes: [String] = []
        var big = Footprint()
        for count in counts {
            while held.count < count { held.append(Sockets.open().fd) }
            let target = Double(held.count)
            let deadline = Measure.now() + 30
            while daemon.value("portwatch_ports_held") < target, Measure.now() < deadline { usleep(50_000) }
            guard daemon.value("portwatch_ports_held") >= target else { throw BenchError("scrape: \(count) ports never all shown") }
            var p50: [Double] = [], p99: [Double] = [], gzip50: [Double] = [], gzip99: [Double] = []
            var ssNames: [Double] = [], ssPlain: [Double] = [], proc: [Double] = [], bytes: [Double] = []
            for run in 0..<runs {
                Progress.step("scrape, \(count) ports", run: run, of: runs)
                var ours: [Double] = [], gzipped: [Double] = [], names: [Double] = [], plain: [Double] = [], poller: [Double] = []
                for i in 0..<scrapes {
                    var body: [UInt8] = []
                    ours.append(Measure.time { body = daemon.get("/metrics")?.body ?? [] } * 1000)
                    if i == 0 { bytes.append(Double(body.count)) }
                    // As Prometheus asks: gzip accepted.
                    gzipped.append(Measure.time { _ = daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"]) } * 1000)
                    // The others cost 10-100x more: one in ten rounds, in the same loop.
                    if i % 10 == 0 {
                        names.append(Measure.time { runSS(["-Htlnup"]) } * 1000)
                        plain.append(Measure.time { runSS(["-Htln"]) } * 1000)
                        poller.append(Measure.time { _ = ProcNetPoller.inventory() } * 1000)
                    }
                }
                p50.append(Measure.percentile(ours, 0.5))
                p99.append(Measure.percentile(ours, 0.99))
                gzip50.append(Measure.percentile(gzipped, 0.5))
                gzip99.append(Measure.percentile(gzipped, 0.99))
                ssNames.append(Measure.percentile(names, 0.5))
                ssPlain.append(Measure.percentile(plain, 0.5))
                proc.append(Measure.percentile(poller, 0.5))
                if count == counts.last { big.add(pid: daemon.pid) }
            }
            let a = Figure(name: "\(count) ports: portwatch scrape p50", unit: "ms", runs: p50)
            let names = Figure(name: "\(count) ports: ss -Htlnup", unit: "ms", runs: ssNames)
            let plain = Figure(name: "\(count) ports: ss -Htln (no process names)", unit: "ms", runs: ssPlain)
            let poller = Figure(name: "\(count) ports: /proc/net + /proc/*/fd poller", unit: "ms", runs: proc)
            figures += [a,
                        Figure(name: "\(count) ports: portwatch scrape p99", unit: "ms", runs: p99),
                        Figure(name: "\(count) ports: portwatch scrape with gzip p50", unit: "ms", runs: gzip50),
                        Figure(name: "\(count) ports: portwatch scrape with gzip p99", unit: "ms", runs: gzip99),
                        Figure(name: "\(count) ports: body size", unit: "bytes", runs: bytes),
                        names, plain, poller]
            // Ratios per run (the same run's scrapes against its own ss and poller calls), then their median.
            func ratio(_ other: [Double]) -> String {
                Report.format(Measure.percentile(zip(p50, other).map { $0 / $1 }, 0.5))
            }
            notes.append("\(count) ports: scrape / ss -Htlnup = \(ratio(ssNames)), scrape / ss -Htln = \(ratio(ssPlain)), scrape / poller = \(ratio(proc))")
        }
        held.forEach { close($0) }
        daemon.stop()
        report.add("Scrape with held ports (\(runs) runs of \(scrapes) scrapes each, interleaved with ss and the poller; each run's p50 and p99)", figures, notes: notes + [
            "ss -Htlnup walks every process's fds to name owners; ss -Htln is the socket dump alone, the floor for any tool asking the kernel now",
        ])
        return (idle, big)
    }

    static func runSS(_ arguments: [String]) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ss")
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        try? p.run()
        p.waitUntilExit()
    }

    /// 5. Detection of short-lived listeners, scored per listener: portwatch detects one when its
    /// ledger records that port for this process (table, open/close history, or a transient record
    /// listing the port exactly; a folded record's range, for ports it did not keep, is scored apart), read after the
    /// daemon stopped and wrote its last folds. The poller detects one when it saw its port.
    static func detection(report: Report, listeners: Int, runs: Int) throws {
        var exactShare: [Double] = [], rangeShare: [Double] = [], pollerShare: [Double] = []
        var g = SystemRandomNumberGenerator()
        for run in 0..<runs {
            Progress.step("detection, \(listeners) listeners", run: run, of: runs)
            let daemon = try BenchDaemon()
            let seenByPoller = PollerThread(interval: 1.0)
            seenByPoller.start()
            var ports: [UInt16] = []
            for _ in 0..<listeners {
                // Lifetimes log-uniform between 1 ms and 1 s.
                let lifetime = pow(10, Double.random(in: -3...0, using: &g))
                let (fd, port) = Sockets.open()
                ports.append(port)
                usleep(UInt32(lifetime * 1e6))
                close(fd)
            }
            usleep(1_200_000)
            seenByPoller.stop()
            daemon.stop()
            let recorded = try Ledger.ports(daemon.dbPath, pid: getpid())
            let exact = ports.filter { recorded.exact.contains($0) }.count
            let inRange = ports.filter { port in !recorded.exact.contains(port) && recorded.ranges.contains { $0.contains(port) } }.count
            exactShare.append(Double(exact) / Double(listeners))
            rangeShare.append(Double(inRange) / Double(listeners))
            pollerShare.append(Double(ports.filter { seenByPoller.seen.contains($0) }.count) / Double(listeners))
        }
        report.add("Detection of short-lived listeners (\(runs) runs of \(listeners), lifetimes 1 ms to 1 s, log-uniform), per listener", [
            Figure(name: "recorded by portwatch with its exact port", unit: "fraction", runs: exactShare),
            Figure(name: "recorded by portwatch in a folded record's port range only", unit: "fraction", runs: rangeShare),
            Figure(name: "recorded by portwatch, exact or in range", unit: "fraction", runs: zip(exactShare, rangeShare).map { $0 + $1 }),
            Figure(name: "seen by a 1 s /proc/net poller", unit: "fraction", runs: pollerShare),
        ], notes: ["one process opens them all, so its transients after the first in a minute are folded into one record (count, up to 64 exact ports, the range of the rest)"])
    }
}

/// What the daemon's ledger recorded, read after the daemon stopped.
enum Ledger {
    /// The ports recorded for `pid`: exactly (the table, opens and closes, a transient record's
    /// listed ports), and the ranges of folded records whose other ports were not kept.
    static func ports(_ path: String, pid: Int32) throws -> (exact: Set<UInt16>, ranges: [ClosedRange<UInt16>]) {
        let reader = try StoreReader(path: path)
        var exact = Set<UInt16>(), ranges: [ClosedRange<UInt16>] = []
        for row in try reader.snapshot().rows where row.owner.pid == pid { exact.insert(row.key.port) }
        for entry in try reader.history() where entry.row.owner.pid == pid {
            let held = entry.heldPorts
            exact.formUnion(held.ports)
            if !held.isExact { ranges.append(held.low...held.high) }
        }
        return (exact, ranges)
    }
}

/// A poller like a textfile-collector script: every `interval`, the listening ports from /proc/net.
final class PollerThread: @unchecked Sendable {
    let interval: Double
    private(set) var seen = Set<UInt16>()
    private var running = true
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)

    init(interval: Double) { self.interval = interval }

    func start() {
        Thread { [self] in
            while lock.withLock({ running }) {
                let ports = ProcNetPoller.listeningPorts()
                lock.withLock { seen.formUnion(ports) }
                usleep(UInt32(interval * 1e6))
            }
            done.signal()
        }.start()
    }

    func stop() {
        lock.withLock { running = false }
        done.wait()
    }
}

/// What a script builds today: sockets from /proc/net/{tcp,tcp6,udp,udp6}, owners from /proc/*/fd.
enum ProcNetPoller {
    static func rows() -> [(port: UInt16, inode: UInt64, listening: Bool)] {
        var out: [(UInt16, UInt64, Bool)] = []
        for file in ["tcp", "tcp6", "udp", "udp6"] {
            guard let text = try? String(contentsOfFile: "/proc/net/\(file)", encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count > 9, let colon = f[1].lastIndex(of: ":"), let port = UInt16(f[1][f[1].index(after: colon)...], radix: 16),
                      let inode = UInt64(f[9]) else { continue }
                out.append((port, inode, f[3] == "0A" || file.hasPrefix("udp")))
            }
        }
        return out
    }

    static func listeningPorts() -> Set<UInt16> { Set(rows().filter(\.listening).map(\.port)) }

    /// Ports with their owning pid, as an exporter script would publish them.
    static func inventory() -> [UInt16: Int32] {
        let sockets = rows().filter(\.listening)
        var owner: [UInt64: Int32] = [:]
        let fm = FileManager.default
        for pid in ((try? fm.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap({ Int32($0) }) {
            for fd in (try? fm.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? [] {
                guard let target = try? fm.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"), target.hasPrefix("socket:["),
                      let inode = UInt64(target.dropFirst(8).dropLast()) else { continue }
                owner[inode] = pid
            }
        }
        var out: [UInt16: Int32] = [:]
        for s in sockets { out[s.port] = owner[s.inode] ?? 0 }
        return out
    }
}
