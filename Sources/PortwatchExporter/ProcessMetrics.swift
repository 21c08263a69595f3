import FoundationEssentials
import Glibc
import PortwatchSystem

/// The standard `process_*` metrics, read from /proc/self.
public enum ProcessMetrics {
    public static func families() -> [MetricFamily] {
        var out: [MetricFamily] = []
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            // Fields after "(comm)": state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24.
            let f = stat[stat.index(after: close)...].split(separator: " ").map(String.init)
            func field(_ n: Int) -> Double { Double(f[n - 3]) ?? 0 }
            if f.count > 21 {
                out.append(MetricFamily("process_cpu_seconds", .counter, help: "Total user and system CPU time spent in seconds.",
                                        unit: "seconds", samples: [.init([], (field(14) + field(15)) / ticks)]))
                out.append(MetricFamily("process_resident_memory_bytes", .gauge, help: "Resident memory size in bytes.",
                                        unit: "bytes", samples: [.init([], field(24) * page)]))
                out.append(MetricFamily("process_virtual_memory_bytes", .gauge, help: "Virtual memory size in bytes.",
                                        unit: "bytes", samples: [.init([], field(23))]))
                out.append(MetricFamily("process_start_time_seconds", .gauge,
                                        help: "Start time of the process since unix epoch in seconds.",
                                        unit: "seconds", samples: [.init([], bootTime() + field(22) / ticks)]))
            }
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        out.append(MetricFamily("process_open_fds", .gauge, help: "Number of open file descriptors.", samples: [.init([], Double(fds))]))
        if let files = try? ResourceLimit.openFiles.current() {
            out.append(MetricFamily("process_max_fds", .gauge, help: "Maximum number of open file descriptors.",
                                    samples: [.init([], Double(files.soft))]))
        }
        return out
    }

    private static func bootTime() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return 0 }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingBlanks) ?? 0
        }
        return 0
    }
}
