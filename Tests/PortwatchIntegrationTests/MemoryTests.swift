import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// What a burst of listeners takes, the daemon gives back once they are gone: a node that
/// once held thousands of ports does not keep their memory until a restart.
extension KernelSuite {
    @Suite struct MemoryTests {
        /// The daemon's anonymous resident memory (heap, stacks), in KiB.
        static func anonymousKiB(_ pid: Int32) -> Int {
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("RssAnon:") } ?? ""
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        }

        /// Once ready, at its first heap check, the daemon gives back the code only start-up ran:
        /// its executable's resident code falls to less than half of what it was. (The binary's
        /// pages are written to disk first: a binary just linked has dirty pages, which reclaim
        /// leaves to writeback; an installed daemon's are clean.)
        @Test func theCodeOnlyStartUpRanLeavesTheResidentMemory() throws {
            let exe = URL(fileURLWithPath: DaemonHarness.binary).resolvingSymlinksInPath().path
            let fd = open(exe, O_RDONLY)
            try #require(fd >= 0)
            #expect(fsync(fd) == 0)
            close(fd)
            let d = try DaemonHarness(environment: ["PORTWATCH_HEAP_CHECK_SECONDS": "2"])
            let pid = d.process.processIdentifier
            // From the start: the check comes at least 2 s after it, and only once ready.
            var most = 0, now = 0
            let fell = TestHTTP.waitUntil(30) {
                guard let kib = ProcessMemory.executableCodeKiB(String(pid)) else { return false }
                now = kib
                most = max(most, kib)
                return kib < most / 2
            }
            #expect(fell, "the daemon's code stayed resident: \(now) KiB, at most \(most) KiB")
            #expect(d.waitReady())
            #expect(d.scrape().sum("portwatch_ports_held") > 0)
        }

        /// glibc's heaps of threads of their own in `pid`: anonymous read-write mappings at a
        /// 64 MiB boundary whose reserved rest follows them (`---p`), 64 MiB in all.
        static func threadArenas(_ pid: Int32) -> Int {
            let maps = (try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)) ?? ""
            let regions = maps.split(separator: "\n").compactMap { line -> (start: UInt64, end: UInt64, perms: Substring, file: Bool)? in
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                let range = fields.first?.split(separator: "-").compactMap { UInt64($0, radix: 16) } ?? []
                guard fields.count >= 5, range.count == 2 else { return nil }
                return (range[0], range[1], fields[1], fields.count > 5)
            }
            let heap: UInt64 = 64 << 20
            return zip(regions, regions.dropFirst()).filter { a, b in
                a.perms == "rw-p" && !a.file && a.start % heap == 0 && b.perms == "---p" && !b.file && b.start == a.end && b.end - a.start == heap
            }.count
        }

        /// The daemon's threads allocate from one heap (each its own glibc arena kept the free
        /// blocks of what it had built: 0.7 MiB more at 10,000 ports). Its HTTP, capture and
        /// listener-health threads have all allocated once it served a scrape after a reading.
        @Test func theDaemonsThreadsShareOneHeap() throws {
            let d = try DaemonHarness(arguments: ["--listen-stats.interval", "1s"])
            guard d.waitReady() else { return }
            let pid = d.process.processIdentifier
            #expect(TestHTTP.waitUntil(20) { d.scrape().sum("portwatch_listen_queue_limit") > 0 }, "no listener-health reading")
            _ = try d.daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"])
            #expect(Self.threadArenas(pid) == 0, "\(Self.threadArenas(pid)) heaps of threads of their own")
        }

        /// 5,000 TCP listeners come, are shown and scraped (as Prometheus asks, gzip), and go:
        /// within seconds of the table being empty again, the daemon's anonymous memory is back
        /// to within a third of what the burst added (before, it kept about two thirds of it:
        /// the table's and the lines' room, and the freed heap the arenas kept).
        @Test func aBurstsMemoryIsGivenBackOnceItIsGone() throws {
            let d = try DaemonHarness(environment: ["PORTWATCH_HEAP_CHECK_SECONDS": "1"])
            guard d.waitReady() else { return }
            let pid = d.process.processIdentifier
            _ = try d.daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"])
            let held = { d.scrape().sum("portwatch_ports_held") }
            let before = held()
            let idle = Self.anonymousKiB(pid)
            let burst = try ChildProcess("""
            import resource
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            held = [tcp() for _ in range(min(5000, hard - 100))]
            say(len(held))
            wait()
            for s in held:
                s.close()
            say("closed")
            wait()
            """)
            defer { burst.send("") }
            // 5,000 unless the open-file limit allows fewer.
            let count = try #require(burst.line().flatMap { Double($0) })
            try #require(count >= 2000, "only \(count) listeners allowed by the open-file limit")
            #expect(TestHTTP.waitUntil(30) { held() >= before + count }, "the \(count) listeners never showed")
            let withBurst = held()
            _ = try d.daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"])
            let peak = Self.anonymousKiB(pid)
            #expect(Double(peak - idle) > count, "the burst took \(peak - idle) KiB")
            burst.send("")
            #expect(burst.line() == "closed")
            // Other processes on the host may take or free a port meanwhile.
            #expect(TestHTTP.waitUntil(30) { held() <= withBurst - count + 100 }, "the \(count) listeners never went")
            _ = try d.daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"])
            var now = peak
            let givenBack = TestHTTP.waitUntil(20) {
                now = Self.anonymousKiB(pid)
                return now - idle < (peak - idle) / 3
            }
            #expect(givenBack, "idle \(idle) KiB, with the burst \(peak) KiB, after it \(now) KiB")
        }
    }
}
