import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// Short-lived listeners against the kernel: recorded in history with who opened them,
/// followed live, and judged by the policy.
extension KernelSuite {
    @Suite struct TransientHistoryTests {

        func transients(_ d: DaemonHarness, port: UInt16) throws -> [[String: Any]] {
            let out = try TestBinaries.run("portwatch", ["history", "--db.path", d.dbPath, "--kind", "transient", "--port", "\(port)", "--output", "json"])
            return out.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }

        @Test func aFiveMillisecondListenerIsRecordedWithItsProcess() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let child = try ChildProcess("""
            import time
            s = tcp("127.0.0.1", 0)
            port = s.getsockname()[1]
            time.sleep(0.005)
            s.close()
            say(port)
            wait()
            """)
            defer { child.send("") }
            let port = try #require(child.line().flatMap(UInt16.init))
            var found: [[String: Any]] = []
            #expect(TestHTTP.waitUntil(5) { found = (try? transients(d, port: port)) ?? []; return !found.isEmpty }, "\(d.log)")
            let entry = try #require(found.first)
            #expect(entry["pid"] as? Int == Int(child.pid))
            #expect(entry["comm"] as? String == "python3")
            #expect(entry["state"] as? String == "listen")
            #expect(entry["address"] as? String == "127.0.0.1")
            let lifetime = try #require(entry["lifetime_seconds"] as? Double)
            #expect(lifetime >= 0.005 && lifetime < 0.2, "lived \(lifetime) s")
            #expect(entry["count"] as? Int == 1)
            #expect(d.barrier())
            #expect(d.portInfo(port: port, transport: "tcp") == nil, "never a row of the table")
            #expect(d.history(port: port, transport: "tcp").isEmpty, "no open or close entry, only the transient one")
        }

        /// "Who held port N for 5 ms?" One process name opens four 5 ms listeners in a row
        /// (the first is recorded at once, the others folded into one record), then 70 on
        /// another address (more ports than a record keeps). After the daemon stops and writes
        /// its folds, `history --port` finds every one of the first run's ports exactly, the
        /// first, the last and the inner ones of the folded record, and a port of the long run
        /// either exactly or, beyond the bound, as a match of the record's range.
        @Test func everyPortOfAFoldedRunIsFound() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let child = try ChildProcess("""
            import time
            def run(addr, n):
                ports = []
                for i in range(n):
                    s = tcp(addr, 0)
                    ports.append(s.getsockname()[1])
                    time.sleep(0.005)
                    s.close()
                return ports
            say(" ".join(map(str, run("127.0.0.1", 4))))
            say(" ".join(map(str, run("127.0.0.3", 70))))
            wait()
            """)
            defer { child.send("") }
            let short = try #require(child.line()).split(separator: " ").compactMap { UInt16($0) }
            let long = try #require(child.line()).split(separator: " ").compactMap { UInt16($0) }
            try #require(short.count == 4 && long.count == 70)
            #expect(d.barrier())
            #expect(d.stop() == 0, "a clean stop writes the folded records")
            func found(_ port: UInt16, address: String = "127.0.0.1") throws -> [[String: Any]] {
                try transients(d, port: port).filter { $0["pid"] as? Int == Int(child.pid) && $0["address"] as? String == address }
            }
            for (i, port) in short.enumerated() {
                let entries = try found(port)
                #expect(entries.count == 1 && entries.first?["match"] as? String == "exact", "port \(i + 1) of 4 (\(port)): \(entries)")
            }
            let folded = try #require(try found(short[3]).first)
            #expect(folded["count"] as? Int == 3 && Set(folded["ports"] as? [Int] ?? []) == Set(short.dropFirst().map(Int.init)), "\(folded)")
            let inner = short.dropFirst().sorted()[1]
            #expect(try found(inner).first?["match"] as? String == "exact", "the inner port of the folded record")
            // The long run: its first transient alone, the 69 others folded (the kernel may hand
            // out a port twice); each of the record's transients is on a listed port or counted.
            let record = try #require(try found(long[1], address: "127.0.0.3").first { $0["count"] as? Int == 69 })
            let listed = Set((record["ports"] as? [Int] ?? []).map(UInt16.init))
            #expect(listed.count == 64, "a record keeps 64 ports: \(record)")
            #expect(record["ports_unlisted"] as? Int == long.dropFirst().filter { !listed.contains($0) }.count, "\(record)")
            var wrong: [UInt16] = []
            for port in Set(long.dropFirst()) {
                let match = try found(port, address: "127.0.0.3").first { $0["count"] as? Int == 69 }?["match"] as? String
                if match != (listed.contains(port) ? "exact" : "range") { wrong.append(port) }
            }
            #expect(wrong.isEmpty, "exact for a listed port, range for the others: \(wrong)")
        }

        /// The policy applies to transients: a disallowed one moves the counter, an allowed one does not.
        @Test func unexpectedTransientsAreCounted() throws {
            let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).yaml").path
            try "expected:\n  - { address: 127.0.0.2 }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            let d = try DaemonHarness(arguments: ["--policy.file", policy])
            guard d.waitReady() else { return }
            let series = "portwatch_unexpected_transient_bindings_total{exposure=\"loopback\",protocol=\"tcp\"}"
            let before = try #require(d.sample(series), "\(d.metrics())")

            let (allowedFD, allowedPort) = TestSockets.bound("127.0.0.2")
            close(allowedFD)
            #expect(TestHTTP.waitUntil(5) { ((try? transients(d, port: allowedPort)) ?? []).count == 1 })
            #expect(d.barrier())
            #expect(d.sample(series) == before, "an allowed transient is not unexpected")

            let (fd, port) = TestSockets.bound("127.0.0.1")
            close(fd)
            #expect(TestHTTP.waitUntil(5) { d.sample(series) == before + 1 }, "\(d.metrics())")
            let ls = try TestBinaries.run("portwatch", ["ls", "--db.path", d.dbPath, "--unexpected", "--policy.file", policy, "--since", "1h"])
            #expect(ls.stdout.contains("127.0.0.1:\(port) ") && !ls.stdout.contains("127.0.0.2:\(allowedPort) "), "\(ls.stdout)")
        }
    

        /// The dashboard's short-lived listeners: one series per owner with how many in the last
        /// hour, their ports and the longest lifetime; none with --metrics.max-transient-series 0.
        /// (An owner's later transients are folded into one record per minute, so only the first
        /// shows at once; RecentTransientsTests merges several records.)
        @Test func recentTransientsAreSummarisedPerOwner() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let (fd, port) = TestSockets.bound("0.0.0.0")
            close(fd)
            func mine(_ scrape: Scrape, _ name: String) -> [Scrape.Sample] {
                scrape.samples(name).filter { $0.label("comm") == TestSockets.comm && $0.label("exposure") == "wildcard" }
            }
            var found: [Scrape.Sample] = []
            #expect(TestHTTP.waitUntil(5) { found = mine(d.scrape(), "portwatch_recent_transient_listeners"); return found.first?.value == 1 },
                    "\(found)")
            let scrape = d.scrape()
            let series = try #require(mine(scrape, "portwatch_recent_transient_listeners").first)
            #expect(series.label("port") == "\(port)" && series.label("protocol") == "tcp", "\(series.line)")
            let lifetime = try #require(mine(scrape, "portwatch_recent_transient_listener_lifetime_max_seconds").first?.value)
            #expect(lifetime > 0 && lifetime < 0.2, "\(lifetime)")
            #expect(scrape.value("portwatch_recent_transient_listener_owners_dropped") == 0)

            let off = try DaemonHarness(arguments: ["--metrics.max-transient-series", "0"])
            guard off.waitReady() else { return }
            #expect(!off.metrics().contains("portwatch_recent_transient"), "0 leaves the series out")
            #expect(try TestBinaries.run("portwatch", ["--metrics.max-transient-series", "-1", "--db.path", "/tmp/pw-flags-\(getpid()).db"]).status == 64)
        }
    }
}
