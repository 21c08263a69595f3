import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// The ledger commands against a running daemon: `history --follow` prints what happens after
/// it started, `suggest-policy` leaves out listeners younger than `--min-lifetime`.
extension KernelSuite {
    @Suite struct LedgerCommandsLiveTests {
        /// JSON Lines written so far to `path` (a last partial line is left for later).
        func objects(_ path: String) -> [[String: Any]] {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }

        func has(_ objects: [[String: Any]], _ event: String, _ port: UInt16) -> Bool {
            objects.contains { $0["event"] as? String == event && $0["port"] as? Int == Int(port) }
        }

        @Test func followPrintsOpensAndClosesMadeAfterItStarted() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let (marker, markerPort) = TestSockets.bound("127.0.0.1")
            defer { close(marker) }
            #expect(d.waitShown(markerPort, "tcp") != nil)

            // The follower writes to a file, not a pipe: nothing in the test blocks reading it.
            let out = d.dbPath + ".follow.jsonl"
            FileManager.default.createFile(atPath: out, contents: nil)
            let follower = Process()
            follower.executableURL = URL(fileURLWithPath: TestBinaries.path("portwatch"))
            follower.arguments = ["history", "--db.path", d.dbPath, "--since", "1h", "--follow", "--follow.interval", "100ms", "--output", "json"]
            follower.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
            follower.standardError = FileHandle.nullDevice
            follower.standardInput = FileHandle.nullDevice
            try follower.run()
            defer {
                // SIGKILL: a failed expectation above must not leave the test waiting on a follower.
                if follower.isRunning { kill(follower.processIdentifier, SIGKILL) }
                follower.waitUntilExit()
            }
            // The marker's open is in the first part printed, so the follower has taken its cut.
            #expect(TestHTTP.waitUntil(DaemonHarness.deadline) { has(objects(out), "open", markerPort) }, "\(objects(out))")

            let (fd, port) = TestSockets.bound("127.0.0.1")
            #expect(d.waitShown(port, "tcp") != nil)
            close(fd)
            #expect(d.waitGone(port, "tcp"))
            #expect(TestHTTP.waitUntil(DaemonHarness.deadline) { has(objects(out), "close", port) }, "\(objects(out))")
            let seen = objects(out)
            #expect(has(seen, "open", port), "the open made after the follower started")
            let mine = seen.filter { $0["port"] as? Int == Int(port) }.map { $0["event"] as? String }
            #expect(mine == ["open", "close"], "each once, in order")
            #expect(seen.filter { $0["event"] as? String == "open" && $0["port"] as? Int == Int(markerPort) }.count == 1,
                    "nothing printed twice across the cut")
            #expect(follower.isRunning, "--follow keeps running")
            follower.terminate()
            follower.waitUntilExit()
            #expect(follower.terminationReason == .uncaughtSignal && follower.terminationStatus == SIGTERM)
        }

        /// A listener held now is left out while it is younger than --min-lifetime, and
        /// suggested once it is older.
        @Test func suggestPolicyLeavesOutListenersYoungerThanMinLifetime() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let (fd, port) = TestSockets.bound("127.0.0.1")
            defer { close(fd) }
            #expect(d.waitShown(port, "tcp") != nil)
            let rule = "{ port: \(port), protocol: tcp, comm: "
            let young = try TestBinaries.run("portwatch", ["suggest-policy", "--db.path", d.dbPath, "--min-lifetime", "1h"])
            #expect(young.status == 0, "\(young.stderr)")
            #expect(!young.stdout.contains(rule), "held for less than an hour:\n\(young.stdout)")
            var old = ""
            #expect(TestHTTP.waitUntil(DaemonHarness.deadline) {
                old = (try? TestBinaries.run("portwatch", ["suggest-policy", "--db.path", d.dbPath, "--min-lifetime", "2s"]).stdout) ?? ""
                return old.contains(rule)
            }, "held for more than 2 s:\n\(old)")
            let line = old.split(separator: "\n").first { $0.contains(rule) } ?? ""
            #expect(line.contains(TestSockets.comm) && line.contains("exposure: [loopback]"), "\(line)")
        }
    }
}
