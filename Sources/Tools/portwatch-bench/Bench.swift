import Foundation
import Glibc

enum Bench {
    static func main() async {
        _ = Progress.start
        let quick = ProcessInfo.processInfo.environment["PORTWATCH_BENCH_QUICK"] == "1"
        // PORTWATCH_BENCH_ONLY=core,history,growth,latency,scrape,change,... runs those benchmarks alone.
        let only = ProcessInfo.processInfo.environment["PORTWATCH_BENCH_ONLY"].map { Set($0.split(separator: ",").map(String.init)) }
        func wanted(_ name: String) -> Bool { only?.contains(name) ?? true }
        let repeats = quick ? 1 : 5
        let report = Report()
        let machine = "Machine: \(ProcessInfo.processInfo.processorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB, kernel \(uname()), \(Date())"
        print(machine)
        do {
            if wanted("core") { try CoreBench.run(report: report, repeats: repeats) }
            if wanted("userpath") { UserPathBench.run(report: report, repeats: quick ? 2 : 6) }
            if wanted("history") { try HistoryBench.run(report: report, rows: quick ? 100_000 : 1_000_000, repeats: repeats) }
            if wanted("growth") { try LedgerGrowthBench.run(report: report, repeats: repeats, minutes: quick ? 5 : 30) }
            guard geteuid() == 0 else {
                print("\nThe kernel benchmarks need root to load BPF; skipped.")
                try report.write(to: "results", machine: machine)
                return
            }
            if wanted("overhead") { try KernelBench.overhead(report: report, repeats: quick ? 2 : 6) }
            if wanted("programs") { try ProgramBench.run(report: report, repeats: quick ? 2 : 6) }
            if wanted("parts") { try ProgramPartsBench.run(report: report, repeats: quick ? 2 : 6) }
            if wanted("memory") { try MemoryBench.run(report: report, runs: quick ? 2 : 6) }
            let capacity = wanted("capacity") ? try KernelBench.capacity(report: report, repeats: quick ? 1 : 5) : nil
            if wanted("ring") { try KernelBench.ringSizes(report: report, repeats: quick ? 1 : 5) }
            if wanted("latency") { try KernelBench.latency(report: report, samples: quick ? 50 : 300, runs: repeats) }
            let footprint = wanted("scrape") ? try KernelBench.scrape(report: report, counts: [100, 1_000, 10_000], scrapes: quick ? 20 : 100, runs: repeats) : nil
            if wanted("scrapecost") { try ScrapeCostBench.run(report: report, runs: quick ? 2 : 6, scrapes: quick ? 200 : 2_000) }
            if wanted("change") { try ScrapeChangeBench.run(report: report, ports: 10_000, scrapes: quick ? 20 : 60, runs: quick ? 2 : 3) }
            if wanted("detection") { try KernelBench.detection(report: report, listeners: quick ? 40 : 200, runs: repeats) }
            if wanted("series") { try SeriesChurnBench.run(report: report, seconds: quick ? 20 : 60) }
            if wanted("health") { try ListenerHealthBench.run(report: report, runs: repeats) }
            if wanted("owners") { try OwnerChurnBench.run(report: report, runs: quick ? 1 : 3, seconds: quick ? 20 : 60) }
            if let footprint, let capacity {
                report.add("Footprint of the daemon", [
                    Figure(name: "RSS at idle (fresh daemons, 1 s after ready)", unit: "MiB", runs: footprint.idle.rss.map { $0 / 1_048_576 }),
                    Figure(name: "RSS with 10,000 held ports (after each scrape run)", unit: "MiB", runs: footprint.big.rss.map { $0 / 1_048_576 }),
                    Figure(name: "RSS after \(Int(capacity.eventsPerRun)) events", unit: "MiB", runs: capacity.rssAfter.map { $0 / 1_048_576 }),
                    Figure(name: "kernel memory of the BPF maps at idle (fdinfo memlock, ring buffer included)", unit: "MiB",
                           runs: footprint.idle.mapMemory.map { $0 / 1_048_576 }),
                    Figure(name: "kernel memory of the BPF maps with 10,000 held ports", unit: "MiB", runs: footprint.big.mapMemory.map { $0 / 1_048_576 }),
                    Figure(name: "wakeups per second at idle (voluntary context switches of every thread, 5 s)", unit: "/s",
                           runs: footprint.idle.wakeups),
                    Figure(name: "CPU at idle, per second", unit: "ms", runs: footprint.idle.cpu),
                    Figure(name: "open fds at idle", unit: "fds", runs: footprint.idle.fds),
                    Figure(name: "open fds with 10,000 held ports", unit: "fds", runs: footprint.big.fds),
                    Figure(name: "open fds after the flood", unit: "fds", runs: capacity.fdsAfter),
                ])
            }
            try report.write(to: "results", machine: machine)
            print("\nReport: results/report.md, results/report.json")
        } catch {
            print("bench failed: \(error)")
            exit(1)
        }
    }

    static func uname() -> String {
        var u = utsname()
        Glibc.uname(&u)
        return withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
