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

    @Test func openDescriptorsFollowTheProcesssOwn() throws {
        let before = try #require(value("process_open_fds"))
        // Other tests open and close descriptors meanwhile: many more than they could.
        var pipes: [Int32] = []
        for _ in 0..<100 {
            var ends: [Int32] = [-1, -1]
            #expect(pipe(&ends) == 0)
            pipes += ends
        }
        defer { pipes.forEach { close($0) } }
        let after = try #require(value("process_open_fds"))
        #expect(abs(after - before - 200) < 20, "\(before) -> \(after) with 200 descriptors more")
        #expect(before >= 3, "stdin, stdout and stderr at least")
    }

    @Test func descriptorsCountedWithoutTheCountersOwn() {
        // /proc/self/fd listed holds the listing's own descriptor; the metric does not count it
        // (from the directory's size on Linux 6.2 and later, by listing it before). Other tests
        // open and close descriptors meanwhile: equal in one of 20 tries at least.
        let tries = (0..<20).map { _ in
            (ProcessMetrics.openDescriptors(), (FileDescriptor.countEntries(directory: "/proc/self/fd") ?? 0) - 1)
        }
        #expect(tries.contains { $0.0 == $0.1 }, "\(tries)")
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
