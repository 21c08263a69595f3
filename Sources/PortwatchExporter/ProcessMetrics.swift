import Glibc
import PortwatchCore
import PortwatchSystem

/// The standard `process_*` metrics, read from /proc/self at every scrape. What cannot change
/// while the process runs (its start time, the clock tick) is read once: the start time needs
/// the boot time from /proc/stat, whose reading sums every interrupt's count over every CPU
/// (tens of kilobytes of text on a large node).
public enum ProcessMetrics {
    public static func families() -> [MetricFamily] {
        var out: [MetricFamily] = []
        if let stat = Stat.read() {
            out.append(MetricFamily("process_cpu_seconds", .counter, help: "Total user and system CPU time spent in seconds.",
                                    unit: "seconds", samples: [.init([], Double(stat.cpuTicks) / ticks)]))
            out.append(MetricFamily("process_resident_memory_bytes", .gauge, help: "Resident memory size in bytes.",
                                    unit: "bytes", samples: [.init([], Double(stat.residentPages) * pageSize)]))
            out.append(MetricFamily("process_virtual_memory_bytes", .gauge, help: "Virtual memory size in bytes.",
                                    unit: "bytes", samples: [.init([], Double(stat.virtualBytes))]))
        }
        if let startTime {
            out.append(MetricFamily("process_start_time_seconds", .gauge,
                                    help: "Start time of the process since unix epoch in seconds.",
                                    unit: "seconds", samples: [.init([], startTime)]))
        }
        let fds = openDescriptors()
        out.append(MetricFamily("process_open_fds", .gauge, help: "Number of open file descriptors.", samples: [.init([], Double(fds))]))
        if let files = try? ResourceLimit.openFiles.current() {
            out.append(MetricFamily("process_max_fds", .gauge, help: "Maximum number of open file descriptors.",
                                    samples: [.init([], Double(files.soft))]))
        }
        return out
    }

    /// The fields of /proc/self/stat the metrics give.
    struct Stat: Equatable {
        /// utime + stime, in clock ticks.
        var cpuTicks: UInt64
        /// Since boot, in clock ticks.
        var startTicks: UInt64
        var virtualBytes: UInt64
        var residentPages: UInt64

        static func read() -> Stat? {
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { buffer in
                guard let count = FileDescriptor.read(path: "/proc/self/stat", into: UnsafeMutableRawBufferPointer(buffer)),
                      count > 0 else { return nil }
                return parse(UnsafeBufferPointer(rebasing: buffer[..<count]))
            }
        }

        /// Parses the text of /proc/PID/stat. The process name (field 2) is in parentheses
        /// and may hold blanks and parentheses itself: the fields are counted from its last
        /// ")" (state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24).
        static func parse(_ text: UnsafeBufferPointer<UInt8>) -> Stat? {
            guard let close = text.lastIndex(of: UInt8(ascii: ")")) else { return nil }
            var fields: [UInt64] = []
            fields.reserveCapacity(22)
            var i = close + 1
            // Field 3 (the state) is a letter: counted, not parsed.
            while i < text.count, fields.count < 22 {
                while i < text.count, text[i] == UInt8(ascii: " ") { i += 1 }
                guard i < text.count else { break }
                var value: UInt64 = 0
                while i < text.count, text[i] != UInt8(ascii: " ") {
                    let digit = text[i] &- UInt8(ascii: "0")
                    value = digit < 10 ? value &* 10 &+ UInt64(digit) : value
                    i += 1
                }
                fields.append(value)
            }
            guard fields.count == 22 else { return nil }
            func field(_ n: Int) -> UInt64 { fields[n - 3] }
            return Stat(cpuTicks: field(14) + field(15), startTicks: field(22), virtualBytes: field(23), residentPages: field(24))
        }
    }

    /// The process's open descriptors: the size Linux 6.2 and later give /proc/self/fd (no
    /// entry made per descriptor), else its entries counted, less the one the count opened.
    static func openDescriptors() -> Int {
        var info = stat()
        if stat("/proc/self/fd", &info) == 0, info.st_size > 0 { return Int(info.st_size) }
        return max(0, (FileDescriptor.countEntries(directory: "/proc/self/fd") ?? 1) - 1)
    }

    static let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    static let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))

    /// The process's start, seconds since the epoch: the boot time plus its start in ticks
    /// after boot. Read at the first scrape, then kept.
    static let startTime: Double? = {
        guard let stat = Stat.read(), let boot = bootTime() else { return nil }
        return boot + Double(stat.startTicks) / ticks
    }()

    /// `btime` of /proc/stat: the boot, seconds since the epoch.
    static func bootTime() -> Double? {
        guard let stat = try? FileDescriptor.readText(path: "/proc/stat") else { return nil }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingBlanks)
        }
        return nil
    }
}
