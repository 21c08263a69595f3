import Foundation
import Glibc

/// Benchmarks against the real kernel and the real daemon (root).
enum KernelBench {
    /// 1. Cost on the monitored system: a bind+listen+close loop without and with portwatch.
    static func overhead(report: Report, repeats: Int) throws {
        let threads = 2, iterations = 40_000
        var without: [Double] = [], with: [Double] = []
        for _ in 0..<repeats {
            without.append(Double(threads * iterations) / Sockets.churn(threads: threads, iterations: iterations))
            let daemon = try BenchDaemon()
            with.append(Double(threads * iterations) / Sockets.churn(threads: threads, iterations: iterations))
            daemon.stop()
        }
        let a = Figure(name: "without portwatch", unit: "loops/s", runs: without)
        let b = Figure(name: "with portwatch attached", unit: "loops/s", runs: with)
        report.add("Overhead on the monitored system (\(threads) threads, socket+bind+listen+close)", [a, b],
                   notes: ["time per loop, with / without: \(Report.format(a.median / b.median)) (goal <= 1.05); runs alternate"])
    }

    /// 2. Capacity: the highest rate this machine generates, received vs lost, daemon CPU per 1M events.
    static func capacity(report: Report, repeats: Int) throws -> (eventsPerRun: Double, dbGrowthPerMillion: Double, rssAfter: Double, fdsAfter: Double) {
        var rate: [Double] = [], lostShare: [Double] = [], cpuPerMillion: [Double] = [], growth: [Double] = []
        var rss = 0.0, fds = 0.0, eventsPerRun = 0.0
        for _ in 0..<repeats {
            let daemon = try BenchDaemon()
            let before = daemon.value("portwatch_events_total") + daemon.value("portwatch_events_lost_total")
            let cpuBefore = Measure.cpuSeconds(pid: daemon.pid)
            let threads = 2, iterations = 150_000
            let seconds = Sockets.churn(threads: threads, iterations: iterations, udp: true)
            let generated = Double(2 * threads * iterations)
            var accounted = 0.0
            let deadline = Measure.now() + 30
            while Measure.now() < deadline {
                accounted = daemon.value("portwatch_events_total") + daemon.value("portwatch_events_lost_total") - before
                if accounted >= generated { break }
                usleep(50_000)
            }
            let lost = daemon.value("portwatch_events_lost_total")
            rate.append(generated / seconds)
            lostShare.append(lost / generated)
            cpuPerMillion.append((Measure.cpuSeconds(pid: daemon.pid) - cpuBefore) / generated * 1e6)
            rss = Measure.rss(pid: daemon.pid)
            fds = Double(Measure.openFDs(pid: daemon.pid))
            eventsPerRun = generated
            daemon.stop()

            // Ledger growth: with --reconcile.window=0 every binding is written with its history.
            let writer = try BenchDaemon(arguments: ["--reconcile.window", "0"])
            let loops = 50_000
            let baseline = writer.value("portwatch_events_total")
            _ = Sockets.churn(threads: 1, iterations: loops)
            let written = Double(3 * loops)
            while writer.value("portwatch_events_total") - baseline < written, Measure.now() < deadline + 30 { usleep(50_000) }
            let events = writer.value("portwatch_events_total") - baseline
            writer.stop() // checkpoints the WAL into the database file
            growth.append(writer.databaseBytes / events * 1e6)
        }
        report.add("Capacity (2 threads, UDP socket+bind+close as fast as possible)", [
            Figure(name: "events generated per second", unit: "events/s", runs: rate),
            Figure(name: "share lost (ring buffer full)", unit: "fraction", runs: lostShare),
            Figure(name: "daemon CPU per million events", unit: "s", runs: cpuPerMillion),
            Figure(name: "database size per million events written (window 0, history on)", unit: "MiB", runs: growth.map { $0 / 1_048_576 }),
        ])
        return (eventsPerRun, growth.sorted()[growth.count / 2], rss, fds)
    }

    /// 3. Latency from listen() returning to the port showing in /metrics.
    static func latency(report: Report, samples: Int) throws {
        var figures: [Figure] = []
        for window in ["200ms", "0"] {
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
            figures.append(Figure(name: "p50, window \(window)", unit: "ms", runs: [Measure.percentile(latencies, 0.5)]))
            figures.append(Figure(name: "p99, window \(window)", unit: "ms", runs: [Measure.percentile(latencies, 0.99)]))
            figures.append(Figure(name: "max, window \(window)", unit: "ms", runs: [latencies.max() ?? .nan]))
        }
        report.add("Latency: listen() to /metrics (\(samples) samples each, started at random phases; scrapes every 1 ms)", figures)
    }

    /// 4. Scrape cost with N held ports, against `ss -Htlnup` and a /proc/net poller.
    static func scrape(report: Report, counts: [Int], scrapes: Int) throws -> (idleRSS: Double, idleFDs: Double, bigRSS: Double, bigFDs: Double) {
        Sockets.raiseFileLimit(20_000)
        let daemon = try BenchDaemon()
        let idleRSS = Measure.rss(pid: daemon.pid), idleFDs = Double(Measure.openFDs(pid: daemon.pid))
        var held: [Int32] = []
        var figures: [Figure] = []
        var notes: [String] = []
        for count in counts {
            while held.count < count { held.append(Sockets.open().fd) }
            let target = Double(held.count)
            let deadline = Measure.now() + 30
            while daemon.value("portwatch_ports_held") < target, Measure.now() < deadline { usleep(50_000) }
            var ours: [Double] = [], bytes = 0.0
            for _ in 0..<scrapes {
                var body: [UInt8] = []
                ours.append(Measure.time { body = daemon.get("/metrics")?.body ?? [] } * 1000)
                bytes = Double(body.count)
            }
            let ss = (0..<max(3, scrapes / 10)).map { _ in Measure.time { runSS() } * 1000 }
            let proc = (0..<max(3, scrapes / 10)).map { _ in Measure.time { _ = ProcNetPoller.inventory() } * 1000 }
            let a = Figure(name: "\(count) ports: portwatch scrape p50", unit: "ms", runs: [Measure.percentile(ours, 0.5)])
            figures += [a,
                        Figure(name: "\(count) ports: portwatch scrape p99", unit: "ms", runs: [Measure.percentile(ours, 0.99)]),
                        Figure(name: "\(count) ports: body size", unit: "bytes", runs: [bytes]),
                        Figure(name: "\(count) ports: ss -Htlnup", unit: "ms", runs: ss),
                        Figure(name: "\(count) ports: /proc/net + /proc/*/fd poller", unit: "ms", runs: proc)]
            notes.append("\(count) ports: scrape / ss = \(Report.format(a.median / Measure.percentile(ss, 0.5))), scrape / poller = \(Report.format(a.median / Measure.percentile(proc, 0.5)))")
        }
        let bigRSS = Measure.rss(pid: daemon.pid), bigFDs = Double(Measure.openFDs(pid: daemon.pid))
        held.forEach { close($0) }
        daemon.stop()
        report.add("Scrape with held ports (\(scrapes) scrapes each)", figures, notes: notes + ["goal: a scrape costs less than a tenth of ss"])
        return (idleRSS, idleFDs, bigRSS, bigFDs)
    }

    static func runSS() {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ss", "-Htlnup"]
        p.standardOutput = FileHandle.nullDevice
        try? p.run()
        p.waitUntilExit()
    }

    /// 5. Detection of short-lived listeners: portwatch vs polling /proc/net every second.
    static func detection(report: Report, listeners: Int) throws {
        let daemon = try BenchDaemon()
        let before = daemon.value("portwatch_events_total{kind=\"open\"}")
        let seenByPoller = PollerThread(interval: 1.0)
        seenByPoller.start()
        var ports = Set<UInt16>()
        var g = SystemRandomNumberGenerator()
        for _ in 0..<listeners {
            // Lifetimes log-uniform between 1 ms and 1 s.
            let lifetime = pow(10, Double.random(in: -3...0, using: &g))
            let (fd, port) = Sockets.open()
            ports.insert(port)
            usleep(UInt32(lifetime * 1e6))
            close(fd)
        }
        usleep(1_200_000)
        seenByPoller.stop()
        var opens = 0.0
        let deadline = Measure.now() + 10
        repeat {
            opens = daemon.value("portwatch_events_total{kind=\"open\"}") - before
            if opens >= Double(2 * listeners) { break }
            usleep(50_000)
        } while Measure.now() < deadline
        // Each listener is a bind and a listen: two opens.
        let portwatchShare = min(1, opens / Double(2 * listeners))
        let pollerShare = Double(ports.intersection(seenByPoller.seen).count) / Double(listeners)
        daemon.stop()
        report.add("Detection of \(listeners) short-lived listeners (lifetimes 1 ms to 1 s)", [
            Figure(name: "share seen by portwatch", unit: "fraction", runs: [portwatchShare]),
            Figure(name: "share seen by a 1 s /proc/net poller", unit: "fraction", runs: [pollerShare]),
        ])
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
