import Foundation
import Testing
@testable import PortwatchExporter
import PortwatchSystem

/// The `process_*` series read from the test process itself, checked against what the kernel
/// says of it by other routes.
@Suite struct ProcessMetricsTests {
    func value(_ name: String) -> Double? {
        ProcessMetrics.families().first { $0.name == name }?.samples.first?.value
    }

    /// The process's descriptors by another route than the metric's: listed, less the listing's own.
    func listed() -> Int { (FileDescriptor.countEntries(directory: "/proc/self/fd") ?? 0) - 1 }

    /// Other suites in this process open and close descriptors meanwhile (one opens a thousand
    /// connections, some only for a moment): a try counts when the listings before and after it
    /// moved by `moved` (what the try itself left open), and `attempt` must hold on one such try
    /// among the first 20. Broken, it holds on none (a descriptor opened and closed by another
    /// suite between two reads can make one try come out either way).
    func holdsOnAQuietTry(moved: Int = 0, _ attempt: (_ listedBefore: Int) -> (holds: Bool, said: String, cleanUp: () -> Void)) {
        var quiet: [String] = []
        for _ in 0..<2_000 where quiet.count < 20 {
            let before = listed()
            let result = attempt(before)
            let after = listed()
            result.cleanUp()
            guard after - before == moved else { continue }
            if result.holds { return }
            quiet.append(result.said)
        }
        Issue.record(quiet.count < 20 ? "the descriptor table never stood still" : "held on none of 20 quiet tries: \(quiet.prefix(3))")
    }

    @Test func openDescriptorsFollowTheProcesssOwn() {
        holdsOnAQuietTry(moved: 200) { listedBefore in
            let before = ProcessMetrics.openDescriptors()
            var pipes: [Int32] = []
            for _ in 0..<100 {
                var ends: [Int32] = [-1, -1]
                if pipe(&ends) == 0 { pipes += ends }
            }
            let after = Int(value("process_open_fds") ?? -1)
            return (after - before == 200 && before == listedBefore && before >= 3,
                    "\(before) -> \(after) with 200 descriptors more, listed \(listedBefore) before",
                    { pipes.forEach { close($0) } })
        }
    }

    @Test func descriptorsCountedWithoutTheCountersOwn() {
        // /proc/self/fd listed holds the listing's own descriptor; the metric does not count it
        // (from the directory's size on Linux 6.2 and later, by listing it before).
        holdsOnAQuietTry { listedBefore in
            let metric = ProcessMetrics.openDescriptors()
            return (metric == listedBefore, "the metric \(metric), listed \(listedBefore)", {})
        }
    }

    @Test func entriesAreCountedWithoutTheDots() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("portwatch-count-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(FileDescriptor.countEntries(directory: directory.path) == 0)
        for name in ["a", ".hidden", "..x", "d"] {
            try Data().write(to: directory.appendingPathComponent(name))
        }
        #expect(FileDescriptor.countEntries(directory: directory.path) == 4)
        #expect(FileDescriptor.countEntries(directory: directory.appendingPathComponent("missing").path) == nil)
    }

    @Test func startTimeIsWhenThisProcessStarted() throws {
        let start = try #require(value("process_start_time_seconds"))
        // By another route: now minus the process's age, from /proc/uptime and its start in ticks.
        let uptime = try #require(Double(String(contentsOfFile: "/proc/uptime", encoding: .utf8).split(separator: " ")[0]))
        let stat = try String(contentsOfFile: "/proc/self/stat", encoding: .utf8)
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        let startTicks = try #require(Double(fields[22 - 3]))
        let age = uptime - startTicks / Double(sysconf(Int32(_SC_CLK_TCK)))
        let expected = Date().timeIntervalSince1970 - age
        #expect(abs(start - expected) < 2, "start \(start), expected \(expected) (age \(age) s)")
        #expect(value("process_start_time_seconds") == start, "the same at every scrape")
    }

    @Test func residentMemoryAndCPUAreTheProcesss() throws {
        let rss = try #require(value("process_resident_memory_bytes"))
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        let kib = try #require(Double(line.split(separator: " ")[1]))
        // Both are read a moment apart from a process whose other tests allocate meanwhile.
        let statusBytes = kib * 1024
        let tolerance = max(16 * 1_048_576, statusBytes / 4)
        #expect(abs(rss - statusBytes) < tolerance, "rss \(rss) bytes, VmRSS \(kib) KiB")
        let virtual = try #require(value("process_virtual_memory_bytes"))
        #expect(virtual > rss)

        let cpu = try #require(value("process_cpu_seconds"))
        var spent = rusage()
        getrusage(RUSAGE_SELF.rawValue, &spent)
        let seconds = Double(spent.ru_utime.tv_sec + spent.ru_stime.tv_sec)
        let used: Double = seconds + Double(spent.ru_utime.tv_usec + spent.ru_stime.tv_usec) / 1e6
        // Clock ticks (10 ms) against microseconds, and the time spent between the two reads.
        #expect(cpu <= used + 0.05 && cpu >= used - 1, "process_cpu_seconds \(cpu), getrusage \(used)")
    }

    @Test func statTextWithBlanksAndParenthesesInTheName() throws {
        var fields = ["S"] + (4...24).map { String($0 * 10) }
        fields[14 - 3] = "7"
        fields[15 - 3] = "5"
        let text = "4242 (a (b) c) " + fields.joined(separator: " ") + " 250 0 0\n"
        let stat = try #require(Array(text.utf8).withUnsafeBufferPointer { ProcessMetrics.Stat.parse($0) })
        #expect(stat == ProcessMetrics.Stat(cpuTicks: 12, startTicks: 220, virtualBytes: 230, residentPages: 240))
        #expect(Array("4242 (cut) S 1 2".utf8).withUnsafeBufferPointer { ProcessMetrics.Stat.parse($0) } == nil)
    }
}
