import Foundation
import Glibc
import Testing
import PortwatchTestSupport

extension KernelSuite {
    /// Faults a node meets: a full disk under the ledger, a daemon killed mid-flood.
    @Suite struct FaultTests {
        static func counter(_ metrics: String, _ name: String) -> Double { Scrape(metrics).value(name) ?? 0 }

        @Test func fullDiskKeepsServingAndRecovers() throws {
            let mount = FileManager.default.temporaryDirectory.appendingPathComponent("pw-full-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
            try #require(TestProcess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mount]).status == 0, "cannot mount a tmpfs")
            defer { _ = TestProcess.run(["umount", "-l", mount]) }
            let d = try DaemonHarness(dbPath: mount + "/pw.db")
            guard d.waitReady() else { return }

            // Fill the disk.
            _ = TestProcess.run(["dd", "if=/dev/zero", "of=\(mount)/filler", "bs=64k"])
            let (fd, port) = TestSockets.bound("127.0.0.1")
            defer { close(fd) }
            #expect(TestHTTP.waitUntil(10) { Self.counter(d.metrics(), "portwatch_store_errors_total") > 0 },
                    "no store error counted with a full disk")
            let metrics = d.metrics()
            #expect(metrics.contains("portwatch_ports_held"), "still serving")
            #expect(d.process.isRunning)

            // Space again: the kept changes are written and the listener shows.
            try FileManager.default.removeItem(atPath: mount + "/filler")
            #expect(TestHTTP.waitUntil(10) { d.portInfo(port: port, transport: "tcp") != nil }, "did not recover after the disk freed")
        }

        /// `make run` beside the installed service, an upgrade racing the old process, a surged
        /// pod on the same hostPath: the second daemon on a ledger refuses, naming the first.
        @Test func aSecondDaemonOnOneLedgerRefusesAndNamesTheFirst() throws {
            let first = try DaemonHarness()
            guard first.waitReady() else { return }
            let (fd, port) = TestSockets.bound("127.0.0.1")
            #expect(first.waitShown(port, "tcp") != nil)
            let second = TestProcess.run(["timeout", "20", DaemonHarness.binary, "--db.path", first.dbPath, "--web.listen-address", "127.0.0.1:0"])
            #expect(second.status == 1)
            #expect(second.output.split(separator: "\n").count == 1, "one line: \(second.output)")
            #expect(second.output.contains("pid \(first.process.processIdentifier)"), "\(second.output)")
            // Readers need no lock, and the first daemon goes on recording.
            let listed = try TestBinaries.run("portwatch", ["ls", "--db.path", first.dbPath])
            #expect(listed.status == 0 && listed.stdout.contains(":\(port)"), "\(listed)")
            close(fd)
            #expect(first.waitGone(port, "tcp"))
            #expect(Self.counter(first.metrics(), "portwatch_events_total{kind=\"open\"}") >= 1)
            #expect(first.stop() == 0)
            // Once it stopped, the ledger is free again.
            let next = try DaemonHarness(dbPath: first.dbPath)
            #expect(next.waitReady())
            #expect(next.stop() == 0)
        }

        @Test func killedMidFloodThenRestartedMatchesTheKernel() throws {
            let db = FileManager.default.temporaryDirectory.appendingPathComponent("pw-kill-\(UUID().uuidString)").path + "/pw.db"
            let held = try ChildProcess("""
            socks = [tcp() for _ in range(20)]
            say(" ".join(str(s.getsockname()[1]) for s in socks))
            wait()
            """)
            let ports = (held.line() ?? "").split(separator: " ").compactMap { UInt16($0) }
            try #require(ports.count == 20)
            do {
                let d = try DaemonHarness(dbPath: db)
                guard d.waitReady() else { return }
                let flood = try ChildProcess("""
                import time
                end = time.monotonic() + 1.5
                while time.monotonic() < end:
                    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); s.close()
                say("done")
                """)
                usleep(500_000)
                d.expectedSignals.insert(SIGKILL)
                kill(d.process.processIdentifier, SIGKILL)
                d.process.waitUntilExit()
                _ = flood.line()
            }
            // The held ports go away while portwatch is down.
            held.send("close")
            let d = try DaemonHarness(dbPath: db)
            guard d.waitReady() else { return }
            held.kill()
            #expect(TestHTTP.waitUntil(10) { ports.allSatisfy { d.portInfo(port: $0, transport: "tcp") == nil } },
                    "ports of a killed process remain after restart")
            let netns = String(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net").dropFirst(5).dropLast())
            var ours = Set<String>(), kernel = Set<String>()
            let same = TestHTTP.waitUntil(10) {
                kernel = FloodTests.kernelListeners()
                ours = FloodTests.portwatchListeners(d.metrics(), netns: netns)
                return ours == kernel
            }
            #expect(same, "portwatch only: \(ours.subtracting(kernel)); kernel only: \(kernel.subtracting(ours))")
        }
    }
}
