import Foundation
import Glibc

/// What a scrape costs the node it runs on, where most nodes are: a few hundred ports, nothing
/// changed since the last scrape (the cached body). The daemon's CPU time per scrape, all its
/// threads (the HTTP thread renders the per-scrape series: process_*, the maps' memory, the
/// scrape's own duration, and compresses them), and the wall time a client waits, for this
/// build and, with `PORTWATCH_BENCH_BASELINE`, for that build in alternation, fresh daemons.
enum ScrapeCostBench {
    static func run(report: Report, runs: Int, scrapes: Int) throws {
        let ports = 200
        let baseline = ProcessInfo.processInfo.environment["PORTWATCH_BENCH_BASELINE"].flatMap { $0.isEmpty ? nil : $0 }
        let builds = [("this build", BenchDaemon.builtBinary)] + (baseline.map { [("baseline", $0)] } ?? [])
        var cpu: [String: [Double]] = [:], wall: [String: [Double]] = [:]
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        while fds.count < ports { fds.append(Sockets.open().fd) }
        for run in 0..<runs {
            Progress.step("scrape cost", run: run, of: runs)
            for (name, binary) in run % 2 == 0 ? builds : builds.reversed() {
                let daemon = try BenchDaemon(binary: binary)
                defer { daemon.stop() }
                let deadline = Measure.now() + 30
                while daemon.value("portwatch_ports_held", gzip: true) < Double(ports), Measure.now() < deadline { usleep(50_000) }
                guard daemon.value("portwatch_ports_held", gzip: true) >= Double(ports) else {
                    throw BenchError("scrape cost: \(name) never showed \(ports) ports")
                }
                // Warm: the cached body made, the code of a scrape run once.
                for _ in 0..<20 { _ = daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"]) }
                var waits: [Double] = []
                let before = Measure.cpuSeconds(pid: daemon.pid)
                for _ in 0..<scrapes {
                    waits.append(Measure.time { _ = daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"]) } * 1e6)
                }
                cpu[name, default: []].append((Measure.cpuSeconds(pid: daemon.pid) - before) * 1e6 / Double(scrapes))
                wall[name, default: []].append(Measure.percentile(waits, 0.5))
            }
        }
        var figures: [Figure] = []
        for (name, _) in builds {
            figures += [Figure(name: "\(name): daemon CPU per scrape (\(ports) held ports, gzip, nothing changed)", unit: "µs", runs: cpu[name]!),
                        Figure(name: "\(name): scrape wall time p50, as the client waits", unit: "µs", runs: wall[name]!)]
        }
        var notes: [String] = []
        if baseline != nil {
            func ratio(_ values: [String: [Double]]) -> String {
                Report.format(Measure.percentile(values["this build"]!, 0.5) / Measure.percentile(values["baseline"]!, 0.5))
            }
            notes.append("this build / baseline: CPU per scrape \(ratio(cpu)), wall p50 \(ratio(wall))")
        }
        report.add("What a scrape costs the node (\(runs) runs of \(scrapes) scrapes, fresh daemons, alternating builds)", figures, notes: notes)
    }
}
