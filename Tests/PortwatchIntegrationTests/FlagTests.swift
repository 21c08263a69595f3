import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// What each flag promises, on the real daemon.
extension KernelSuite {
    @Suite struct FlagTests {
        @Test func telemetryPathAndSeveralListenAddresses() throws {
            let second = TestHTTP.freePort()
            let d = try DaemonHarness(arguments: ["--web.telemetry-path", "/portwatch", "--web.listen-address", "[::1]:\(second)"])
            guard d.waitReady() else { return }
            let served = try TestHTTP.get(port: d.port, path: "/portwatch")
            #expect(served.status == 200 && served.text.contains("portwatch_up 1"))
            #expect(try TestHTTP.get(port: d.port, path: "/metrics").status == 404)
            #expect(try TestHTTP.get(port: second, path: "/portwatch", host: "::1").status == 200, "every --web.listen-address serves")
        }

        @Test(arguments: ["1000", "3", "2147483648"])
        func aBadRingBufferSizeIsRefused(size: String) throws {
            let (status, _, err) = try TestBinaries.run("portwatch", ["--bpf.ring-buffer-size", size, "--db.path", "/tmp/pw-flags-\(getpid()).db"])
            #expect(status == 64)
            #expect(err.contains("--bpf.ring-buffer-size must be a power of two"), "\(err)")
        }

        /// Start-up fails after the listener is open: one line, exit 1, no crash.
        @Test func anUnknownRunAsUserIsOneClearLine() throws {
            let (status, _, err) = try TestBinaries.run("portwatch", ["--run-as", "no-such-user-pw", "--db.path", "/tmp/pw-runas-\(getpid()).db",
                                                                      "--web.listen-address", "127.0.0.1:0"])
            #expect(status == 1)
            #expect(err == "portwatch: --run-as no-such-user-pw: no such user (see /etc/passwd)\n", "\(err)")
        }

        @Test func maxPortSeriesCapsTheSeries() throws {
            let held = (0..<3).map { _ in TestSockets.bound("127.0.0.1") }
            defer { held.forEach { close($0.fd) } }
            let d = try DaemonHarness(arguments: ["--metrics.max-port-series", "1"])
            guard d.waitReady() else { return }
            let scrape = d.scrape()
            #expect(scrape.samples("portwatch_port_info").count == 1)
            #expect((scrape.value("portwatch_port_info_series_dropped") ?? 0) >= 3, "what the cap left out is counted")
            let unlimited = try DaemonHarness(arguments: ["--metrics.max-port-series", "0"])
            guard unlimited.waitReady() else { return }
            #expect(unlimited.scrape().samples("portwatch_port_info").count >= 4, "0 means no cap")
            #expect(unlimited.sample("portwatch_port_info_series_dropped") == 0)
        }

        @Test func historyOlderThanTheRetentionIsPruned() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-retention-\(UUID().uuidString)").path
            let db = dir + "/pw.db"
            do {
                let d = try DaemonHarness(dbPath: db)
                guard d.waitReady() else { return }
                #expect(d.stop() == 0)
            }
            // Two entries, one a day old and one a minute old, as if written earlier.
            let now = Int64(Date().timeIntervalSince1970 * 1e9)
            let sql = [now - 86_400_000_000_000, now - 60_000_000_000].enumerated().map { i, t in
                "INSERT INTO history (time, action, netns, protocol, family, address, port, pid, comm, uid, state, opened) VALUES (\(t), 'insert', 1, 'tcp', 'ipv4', '0.0.0.0', \(61000 + i), 1, 'old', 0, 'listen', \(t))"
            }.joined(separator: "; ")
            #expect(TestProcess.run(["python3", "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()", db, sql]).status == 0)
            let d = try DaemonHarness(arguments: ["--db.history-retention", "1h"], dbPath: db)
            guard d.waitReady() else { return }
            #expect(TestHTTP.waitUntil(5) { d.history(port: 61000, transport: "tcp").isEmpty }, "the day-old entry is pruned")
            #expect(d.history(port: 61001, transport: "tcp") == ["insert:"], "the recent one stays")
        }

        @Test func countersSurviveARestart() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-counters-\(UUID().uuidString)").path
            let db = dir + "/pw.db"
            var before = 0.0
            do {
                let d = try DaemonHarness(arguments: ["--reconcile.window", "2s"], dbPath: db)
                guard d.waitReady() else { return }
                let (fd, _) = TestSockets.bound("127.0.0.1")
                close(fd) // released within the window: a transient binding
                #expect(TestHTTP.waitUntil(5) { (d.sample("portwatch_transient_bindings_total{protocol=\"tcp\"}") ?? 0) >= 1 })
                before = d.sample("portwatch_transient_bindings_total{protocol=\"tcp\"}") ?? 0
                #expect(d.stop() == 0)
            }
            let d = try DaemonHarness(dbPath: db)
            guard d.waitReady() else { return }
            #expect((d.sample("portwatch_transient_bindings_total{protocol=\"tcp\"}") ?? 0) >= before)
            #expect(before >= 1)
        }

        @Test func aListenerInAnotherNamespaceOlderThanTheDaemonIsFound() throws {
            let (child, port, netns) = try ChildProcess.listenerInNewNetworkNamespace()
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            #expect(d.portInfo(port: port, transport: "tcp")?.contains("netns=\"\(netns)\"") == true, "ready means every namespace was listed")
            child.kill()
            #expect(d.waitGone(port, "tcp"), "and its release is seen")
        }
    }
}
