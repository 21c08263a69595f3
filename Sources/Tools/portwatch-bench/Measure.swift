import Foundation
import Glibc

/// Timing and statistics shared by the benchmarks.
enum Measure {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func time(_ body: () throws -> Void) rethrows -> Double {
        let start = now()
        try body()
        return now() - start
    }

    /// CPU seconds the calling thread spends in `body` (CLOCK_THREAD_CPUTIME_ID): what other
    /// processes do on the machine meanwhile does not count, as it does in wall-clock time.
    static func cpuTime(_ body: () throws -> Void) rethrows -> Double {
        func read() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }
        let start = read()
        try body()
        return read() - start
    }

    /// The value at rank p (0...1), interpolated between the two nearest runs: the median of an
    /// even number of runs is the mean of the two middle ones.
    static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let rank = Double(sorted.count - 1) * p
        let low = Int(rank.rounded(.down)), high = Swift.min(sorted.count - 1, low + 1)
        return sorted[low] + (sorted[high] - sorted[low]) * (rank - Double(low))
    }

    /// CPU seconds a process has used: the scheduler's exact run time of each of its threads
    /// (/proc/PID/task/*/schedstat, in ns), where /proc/PID/stat counts 10 ms ticks (a 600,000-
    /// event flood costs the daemon about 10 of them, so one tick more or less was 10%).
    /// Falls back to the ticks when schedstat is not there.
    static func cpuSeconds(pid: Int32) -> Double {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var nanoseconds = 0.0, read = 0
        for task in tasks {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/schedstat", encoding: .utf8),
                  let first = text.split(separator: " ").first, let ns = Double(first) else { continue }
            nanoseconds += ns
            read += 1
        }
        if read > 0 { return nanoseconds / 1e9 }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return 0 }
        // After "(comm)": index 0 is field 3 (state); utime is field 14, stime field 15.
        let f = stat[stat.index(after: close)...].split(separator: " ")
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ((Double(f[11]) ?? 0) + (Double(f[12]) ?? 0)) / ticks
    }

    /// Times the process's threads went to sleep of their own accord (each a wakeup later):
    /// the sum of voluntary_ctxt_switches over /proc/PID/task/*/status.
    static func voluntarySwitches(pid: Int32) -> Double {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.reduce(0) { total, task in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8) else { return total }
            let line = status.split(separator: "\n").first { $0.hasPrefix("voluntary_ctxt_switches:") }
            return total + (line.flatMap { Double($0.split(separator: "\t").last?.trimmingCharacters(in: .whitespaces) ?? "") } ?? 0)
        }
    }

    /// Resident set size in bytes.
    static func rss(pid: Int32) -> Double { statusField(pid: pid, "VmRSS:") }

    /// A size from /proc/PID/status (VmRSS:, VmHWM:, ...) in bytes; 0 when the process is gone.
    static func statusField(pid: Int32, _ field: String) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(field) {
            return (Double(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0) * 1024
        }
        return 0
    }

    /// Kernel memory of the BPF maps a process holds, in bytes: the `memlock:` of each map
    /// descriptor in /proc/PID/fdinfo (what the kernel charges to the process's memory cgroup
    /// for the map, the ring buffer's pages included).
    static func bpfMapMemory(pid: Int32) -> Double {
        let dir = "/proc/\(pid)/fdinfo"
        var total = 0.0
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            guard let info = try? String(contentsOfFile: "\(dir)/\(fd)", encoding: .utf8), info.contains("map_type:") else { continue }
            for line in info.split(separator: "\n") where line.hasPrefix("memlock:") {
                total += Double(line.dropFirst("memlock:".count).trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        return total
    }

    static func openFDs(pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
    }
}

/// A daemon's footprint, one sample per `add`.
struct Footprint {
    var rss: [Double] = [], fds: [Double] = [], mapMemory: [Double] = []
    /// Of an idle daemon: wakeups per second and CPU milliseconds per second.
    var wakeups: [Double] = [], cpu: [Double] = []

    /// Watches an idle daemon for `seconds`.
    mutating func addIdle(pid: Int32, seconds: Double) {
        let switches = Measure.voluntarySwitches(pid: pid), cpuBefore = Measure.cpuSeconds(pid: pid)
        usleep(UInt32(seconds * 1e6))
        wakeups.append((Measure.voluntarySwitches(pid: pid) - switches) / seconds)
        cpu.append((Measure.cpuSeconds(pid: pid) - cpuBefore) * 1000 / seconds)
    }

    mutating func add(pid: Int32) {
        rss.append(Measure.rss(pid: pid))
        fds.append(Double(Measure.openFDs(pid: pid)))
        mapMemory.append(Measure.bpfMapMemory(pid: pid))
    }
}

/// Where `make bench` is, on stderr (the summary goes to stdout): which benchmark, which run, time so far.
enum Progress {
    static let start = Measure.now()

    static func step(_ benchmark: String, run: Int, of runs: Int) {
        FileHandle.standardError.write(Data(String(format: "[bench %6.1fs] %@: run %d of %d\n", Measure.now() - start, benchmark, run + 1, runs).utf8))
    }
}

/// A figure: the median of several runs, with min and max.
struct Figure {
    var name: String
    var unit: String
    var runs: [Double]

    var median: Double { Measure.percentile(runs, 0.5) }
    var min: Double { runs.min() ?? .nan }
    var max: Double { runs.max() ?? .nan }

    func json() -> [String: Any] { ["name": name, "unit": unit, "median": median, "min": min, "max": max, "runs": runs] }
}

/// Collects figures and comparisons, then writes them as Markdown and JSON.
final class Report {
    var sections: [(title: String, figures: [Figure], notes: [String])] = []

    func add(_ title: String, _ figures: [Figure], notes: [String] = []) {
        sections.append((title, figures, notes))
        print("\n== \(title)")
        for f in figures { print("  \(f.name): \(Report.format(f.median)) \(f.unit) (min \(Report.format(f.min)), max \(Report.format(f.max)), n=\(f.runs.count))") }
        for n in notes { print("  \(n)") }
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "n/a" }
        if abs(v) >= 1000 { return String(format: "%.0f", v) }
        if abs(v) >= 10 { return String(format: "%.1f", v) }
        return String(format: "%.3f", v)
    }

    func write(to dir: String, machine: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var md = "# portwatch benchmarks\n\n\(machine)\n\nEach figure is the median of its runs, with min and max.\n"
        for s in sections {
            md += "\n## \(s.title)\n\n| figure | median | min | max | unit | runs |\n|---|---|---|---|---|---|\n"
            for f in s.figures {
                md += "| \(f.name) | \(Self.format(f.median)) | \(Self.format(f.min)) | \(Self.format(f.max)) | \(f.unit) | \(f.runs.count) |\n"
            }
            for n in s.notes { md += "\n\(n)\n" }
        }
        try md.write(toFile: dir + "/report.md", atomically: true, encoding: .utf8)
        let json: [[String: Any]] = sections.map { ["title": $0.title, "figures": $0.figures.map { $0.json() }, "notes": $0.notes] }
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: dir + "/report.json"))
    }
}
