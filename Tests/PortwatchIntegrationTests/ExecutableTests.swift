import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// The holder's executable, against the kernel: read from /proc/PID/exe when the holder is
/// named, kept in the ledger, shown by `ls` and the unexpected-port series, matched by the
/// policy; a deleted one says so and stands out.
extension KernelSuite {
    @Suite struct ExecutableTests {
        @Test func aListenerNamesItsExecutableAndADeletedOneStandsOut() throws {
            let policy = FileManager.default.temporaryDirectory.appendingPathComponent("exe-policy-\(UUID().uuidString).yaml").path
            let python = URL(fileURLWithPath: ChildProcess.systemPython).resolvingSymlinksInPath().path
            // The system python is expected by its executable; a copy of it is not.
            try "expected:\n  - { exe: \"\(python)\" }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            let d = try DaemonHarness(arguments: ["--policy.file", policy])
            guard d.waitReady() else { return }

            let normal = try ChildProcess("""
            s = tcp("127.0.0.1", 0)
            say(s.getsockname()[1])
            wait()
            """)
            defer { normal.send("") }
            let port = try #require(normal.line().flatMap(UInt16.init))
            #expect(d.waitShown(port, "tcp") != nil)

            // A copy of the interpreter, deleted before it listens: an upgrade not yet restarted.
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-exe-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let copy = dir + "/python3-copy"
            try FileManager.default.copyItem(atPath: python, toPath: copy)
            let deleted = try ChildProcess("""
            wait()
            s = tcp("127.0.0.1", 0)
            say(s.getsockname()[1])
            wait()
            """, interpreter: copy)
            defer { deleted.send("") }
            // The interpreter runs from the copy (its exe link is taken at exec) before the copy goes.
            #expect(TestHTTP.waitUntil(10) {
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(deleted.pid)/exe")) == copy
            })
            try FileManager.default.removeItem(atPath: copy)
            deleted.send("")
            let deletedPort = try #require(deleted.line().flatMap(UInt16.init))

            var scrape = Scrape("")
            #expect(TestHTTP.waitUntil(10) {
                scrape = d.scrape()
                return scrape.samples("portwatch_deleted_executable_port_info").contains { $0.label("port") == "\(deletedPort)" }
            }, "no deleted-executable series for \(deletedPort)")
            let flagged = scrape.samples("portwatch_deleted_executable_port_info").first { $0.label("port") == "\(deletedPort)" }
            #expect(flagged?.label("exe") == copy + " (deleted)", "\(String(describing: flagged?.line))")
            #expect(!scrape.samples("portwatch_deleted_executable_port_info").contains { $0.label("port") == "\(port)" })
            // The policy expects the system python by its executable: the copy is unexpected, the original is not.
            let unexpected = scrape.samples("portwatch_unexpected_port_info")
            #expect(unexpected.contains { $0.label("port") == "\(deletedPort)" && $0.label("exe") == copy + " (deleted)" })
            #expect(!unexpected.contains { $0.label("port") == "\(port)" }, "allowed by its executable")
            #expect(scrape.samples("portwatch_port_info").first { $0.label("port") == "\(port)" }?.label("exe") == nil,
                    "portwatch_port_info names the executable only with --metrics.port-info-exe")

            // The ledger keeps it: ls and its JSON say which executable, and that it was deleted.
            let ls = try TestBinaries.run("portwatch", ["ls", "--db.path", d.dbPath, "--port", "\(deletedPort)", "--output", "json"])
            let rows = try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as? [[String: Any]] ?? []
            #expect(rows.first?["exe"] as? String == copy + " (deleted)" && rows.first?["exe_deleted"] as? Int == 1, "\(ls.stdout)")
            let normalRow = try TestBinaries.run("portwatch", ["ls", "--db.path", d.dbPath, "--port", "\(port)"]).stdout
            #expect(normalRow.contains(python), "\(normalRow)")
        }
    
        /// An upgrade: the executable is replaced while its process keeps listening. The next
        /// resync reads it again and the row says " (deleted)", with no event to tell.
        @Test func anExecutableReplacedWhileItListensIsSeenAtTheNextResync() throws {
            let d = try DaemonHarness(arguments: ["--resync.interval", "1s"])
            guard d.waitReady() else { return }
            let python = URL(fileURLWithPath: ChildProcess.systemPython).resolvingSymlinksInPath().path
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-exe-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let copy = dir + "/python3-app"
            try FileManager.default.copyItem(atPath: python, toPath: copy)
            let app = try ChildProcess("""
            s = tcp("127.0.0.1", 0)
            say(s.getsockname()[1])
            wait()
            """, interpreter: copy)
            defer { app.send("") }
            let port = try #require(app.line().flatMap(UInt16.init))
            func exe() -> String? {
                let ls = try? TestBinaries.run("portwatch", ["ls", "--db.path", d.dbPath, "--port", "\(port)", "--output", "json"])
                let rows = (try? JSONSerialization.jsonObject(with: Data((ls?.stdout ?? "").utf8))) as? [[String: Any]]
                return rows?.first?["exe"] as? String
            }
            #expect(TestHTTP.waitUntil(10) { exe() == copy }, "\(String(describing: exe()))")
            try FileManager.default.removeItem(atPath: copy)
            #expect(TestHTTP.waitUntil(10) { exe() == copy + " (deleted)" }, "\(String(describing: exe()))")
            #expect(TestHTTP.waitUntil(5) {
                d.scrape().samples("portwatch_deleted_executable_port_info").contains { $0.label("port") == "\(port)" }
            })
            #expect(d.history(port: port, transport: "tcp").contains("update:holder"), "a holder entry says when")
        }
    }
}
