import Foundation
import Glibc

/// The daemon's resident memory, against the build named by `PORTWATCH_BENCH_BASELINE` in the
/// same run (alternating, each daemon fresh): idle (16 s after ready, scraped), holding 10,000
/// listeners once a scrape has shown them all, and once they are gone again and a scrape has
/// shown that; from the idle reading on, every scrape asks for gzip, as Prometheus does. RSS is split into
/// the pages of files (the binary and its libraries, the ring buffer) and anonymous
/// memory (heap, stacks). Each daemon starts with its binary out of the page cache (see
/// `evictFromPageCache`).
enum MemoryBench {
    struct Sample { var rss = 0.0, file = 0.0, anon = 0.0 }

    static func run(report: Report, runs: Int) throws {
        let ports = 10_000
        Sockets.raiseFileLimit(ports + 1_000)
        let baseline = ProcessInfo.processInfo.environment["PORTWATCH_BENCH_BASELINE"].flatMap { $0.isEmpty ? nil : $0 }
        var idle: [String: [Sample]] = [:], held: [String: [Sample]] = [:], gone: [String: [Sample]] = [:]
        let builds = [("this build", BenchDaemon.builtBinary)] + (baseline.map { [("baseline", $0)] } ?? [])
        for run in 0..<runs {
            Progress.step("memory", run: run, of: runs)
            for (name, binary) in run % 2 == 0 ? builds : builds.reversed() {
                try evictFromPageCache(binary)
                // The heap is checked every 2 s instead of 30, so that a run does not wait for it.
                let daemon = try BenchDaemon(environment: ["PORTWATCH_HEAP_CHECK_SECONDS": "2"], binary: binary)
                defer { daemon.stop() }
                // Idle as a scraped daemon is: after the first heap check that follows ready
                // (which gives back the start-up code's pages, once), scrapes in both encodings,
                // a listener-health round (every 15 s) and a scrape again, which read back the
                // code they run.
                usleep(3_000_000)
                _ = daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"])
                _ = daemon.get("/metrics")
                usleep(13_000_000)
                _ = daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"])
                usleep(500_000)
                idle[name, default: []].append(sample(daemon.pid))
                // The host's own ports, held before the benchmark's and after them.
                let hostPorts = daemon.value("portwatch_ports_held", gzip: true)
                var fds: [Int32] = []
                defer { fds.forEach { close($0) } }
                while fds.count < ports { fds.append(Sockets.open().fd) }
                let deadline = Measure.now() + 60
                while daemon.value("portwatch_ports_held", gzip: true) < hostPorts + Double(ports), Measure.now() < deadline { usleep(100_000) }
                guard daemon.value("portwatch_ports_held", gzip: true) >= hostPorts + Double(ports) else { throw BenchError("memory: \(name) never showed \(ports) ports") }
                _ = daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"])
                held[name, default: []].append(sample(daemon.pid))
                // And once they are gone again: what the burst leaves behind.
                fds.forEach { close($0) }
                fds = []
                let goneBy = Measure.now() + 60
                while daemon.value("portwatch_ports_held", gzip: true) > hostPorts, Measure.now() < goneBy { usleep(100_000) }
                guard daemon.value("portwatch_ports_held", gzip: true) <= hostPorts else { throw BenchError("memory: \(name) still showed the \(ports) ports after 60 s") }
                _ = daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"])
                usleep(5_000_000)
                gone[name, default: []].append(sample(daemon.pid))
            }
        }
        var figures: [Figure] = []
        var notes: [String] = []
        for (name, _) in builds {
            let i = idle[name]!, h = held[name]!, g = gone[name]!
            figures += [Figure(name: "\(name): RSS idle (16 s after ready, scraped)", unit: "MiB", runs: i.map(\.rss)),
                        Figure(name: "\(name): of it file pages (binary, libraries, ring buffer)", unit: "MiB", runs: i.map(\.file)),
                        Figure(name: "\(name): of it anonymous", unit: "MiB", runs: i.map(\.anon)),
                        Figure(name: "\(name): RSS with \(ports.formatted()) held ports, after a scrape", unit: "MiB", runs: h.map(\.rss)),
                        Figure(name: "\(name): of it anonymous", unit: "MiB", runs: h.map(\.anon)),
                        Figure(name: "\(name): RSS once the \(ports.formatted()) ports are gone (5 s after a scrape shows it; heap checked every 2 s)", unit: "MiB", runs: g.map(\.rss)),
                        Figure(name: "\(name): of it anonymous", unit: "MiB", runs: g.map(\.anon))]
        }
        if baseline != nil {
            func ratio(_ a: [Sample], _ b: [Sample]) -> String {
                Report.format(Measure.percentile(a.map(\.rss), 0.5) / Measure.percentile(b.map(\.rss), 0.5))
            }
            notes.append("this build / baseline: idle \(ratio(idle["this build"]!, idle["baseline"]!)), with \(ports.formatted()) ports \(ratio(held["this build"]!, held["baseline"]!)), once they are gone \(ratio(gone["this build"]!, gone["baseline"]!))")
        }
        report.add("Resident memory (\(runs) runs, fresh daemons, alternating builds)", figures, notes: notes)
    }

    /// Drops the binary's pages from the kernel's page cache, so that each daemon starts as after
    /// a boot, reading its binary as it runs. The file pages a daemon has resident depend on what
    /// the cache holds: the kernel maps the cached pages around each one touched (64 KiB at a
    /// time), so a binary just written, all of it cached, measured about 0.8 MiB more idle than
    /// the same bytes read on demand, which favoured whichever build was older.
    /// The pages of a binary just written are dirty, and stay cached until written back: they are
    /// written first.
    static func evictFromPageCache(_ binary: String) throws {
        let fd = open(binary, O_RDONLY)
        guard fd >= 0 else { throw BenchError("memory: cannot open \(binary)") }
        defer { close(fd) }
        guard fsync(fd) == 0, posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0 else { throw BenchError("memory: cannot drop \(binary) from the page cache") }
    }

    static func sample(_ pid: Int32) -> Sample {
        let mib = 1_048_576.0
        return Sample(rss: Measure.statusField(pid: pid, "VmRSS:") / mib, file: Measure.statusField(pid: pid, "RssFile:") / mib,
                      anon: Measure.statusField(pid: pid, "RssAnon:") / mib)
    }
}
