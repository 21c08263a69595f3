import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// An unexpected listener shows up in the metrics and in `portwatch ls --unexpected`;
/// the policy reloads on change and on SIGHUP, and a bad file keeps the old policy.
extension KernelSuite {
    @Suite struct PolicyEndToEndTests {

        @Test func unexpectedListenerIsReportedAndPolicyReloads() throws {
            let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).yaml").path
            let (fd, port) = TestSockets.bound("127.0.0.1")
            defer { close(fd) }
            try "expected:\n  - { port: 1-1023 }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            let d = try DaemonHarness(arguments: ["--policy.file", policy])
            guard d.waitReady() else { return }

            let flagged = TestHTTP.waitUntil(5) {
                d.scrape().samples("portwatch_unexpected_port_info").contains { $0.label("port") == "\(port)" }
            }
            #expect(flagged, "\(d.metrics())")
            #expect((d.sample("portwatch_unexpected_ports") ?? 0) >= 1)
            let ls = try TestBinaries.run("portwatch", ["ls", "--db.path", d.dbPath, "--unexpected", "--policy.file", policy])
            #expect(ls.status == 0 && ls.stdout.contains("127.0.0.1:\(port)"), "\(ls)")

            // A bad file is refused and the old policy stays in force.
            try "expected:\n  - { port: nope }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            #expect(TestHTTP.waitUntil(5) { d.sample("portwatch_policy_last_reload_success") == 0 })
            #expect(d.metrics().contains("portwatch_unexpected_port_info{") && d.metrics().contains("port=\"\(port)\""))
            #expect(d.log.contains("policy file refused"))

            // A good file allowing the port takes effect; SIGHUP also reloads.
            try "expected:\n  - { port: \(port) }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            #expect(TestHTTP.waitUntil(5) {
                let m = d.metrics()
                let stillFlagged = Scrape(m).samples("portwatch_unexpected_port_info").contains { $0.label("port") == "\(port)" }
                return Scrape(m).value("portwatch_policy_last_reload_success") == 1 && !stillFlagged
            })
            #expect(d.process.isRunning, "SIGHUP does not stop the daemon")
        }

        /// `ignore:` rules take a port out of every per-port series, on a file change and on
        /// SIGHUP, and give it back when removed; the ledger and `ls --all` keep it.
        @Test func ignoredPortsLeaveTheMetricsAndStayInTheLedger() throws {
            let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).yaml").path
            let (fd, port) = TestSockets.bound("127.0.0.1")
            defer { close(fd) }
            try "expected:\n  - { port: 1-1023 }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            let d = try DaemonHarness(arguments: ["--policy.file", policy, "--listen-stats.interval", "1s"])
            guard d.waitReady() else { return }
            func shown(_ name: String) -> Bool { d.scrape().samples(name).contains { $0.label("port") == "\(port)" } }
            #expect(TestHTTP.waitUntil(5) { shown("portwatch_port_info") && shown("portwatch_unexpected_port_info") && shown("portwatch_socket_drops_total") })

            // Ignored by a file change (the watcher): out of port_info, unexpected and health series.
            try "expected:\n  - { port: 1-1023 }\nignore:\n  - { port: \(port), address: 127.0.0.1 }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            #expect(TestHTTP.waitUntil(5) {
                !shown("portwatch_port_info") && !shown("portwatch_unexpected_port_info") && !shown("portwatch_socket_drops_total")
            }, "\(d.metrics())")
            #expect((d.sample("portwatch_ignored_ports") ?? 0) >= 1)
            let ls = try TestBinaries.run("portwatch", ["ls", "--db.path", d.dbPath, "--policy.file", policy, "--port", "\(port)"]).stdout
            let all = try TestBinaries.run("portwatch", ["ls", "--db.path", d.dbPath, "--policy.file", policy, "--port", "\(port)", "--all"]).stdout
            #expect(!ls.contains("127.0.0.1:\(port)") && all.contains("127.0.0.1:\(port)"), "\(ls)\n\(all)")
            let check = try TestBinaries.run("portwatch", ["check-policy", policy, "--db.path", d.dbPath]).stdout
            #expect(check.contains("1 ignore rule") && check.contains("ignored (left out of the metrics)"), "\(check)")

            // Given back by SIGHUP alone (the same size, so only the signal reloads it at once).
            try "expected:\n  - { port: 1-1023 }\nignore:\n  - { port: \(port), address: 127.0.0.9 }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            kill(d.process.processIdentifier, SIGHUP)
            #expect(TestHTTP.waitUntil(5) { shown("portwatch_port_info") && shown("portwatch_unexpected_port_info") })

            // The low-cardinality mode, switched by a file change: port_info for unexpected ports only.
            try "expected:\n  - { port: 1-1023 }\nmetrics: { port_info: none }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            #expect(TestHTTP.waitUntil(5) {
                d.scrape().samples("portwatch_port_info").isEmpty && shown("portwatch_unexpected_port_info")
            }, "\(d.metrics())")
        }

        /// SIGHUP alone reloads: the new file keeps the old size and modification time, so the
        /// watcher cannot see the change and only the signal can bring it in.
        @Test func hangupAloneReloads() throws {
            let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).yaml").path
            let (fd, port) = TestSockets.bound("127.0.0.1")
            defer { close(fd) }
            try "expected:\n  - { port: 1-1023 }\n".write(toFile: policy, atomically: false, encoding: .utf8)
            let stamp = try #require(try FileManager.default.attributesOfItem(atPath: policy)[.modificationDate] as? Date)
            let d = try DaemonHarness(arguments: ["--policy.file", policy])
            guard d.waitReady() else { return }
            func flagged() -> Bool { d.scrape().samples("portwatch_unexpected_port_info").contains { $0.label("port") == "\(port)" } }
            #expect(TestHTTP.waitUntil(5) { flagged() })
            let allowing = "expected:\n  - { port: \(port) }"
            try (allowing + String(repeating: " ", count: 31 - allowing.utf8.count) + "\n").write(toFile: policy, atomically: false, encoding: .utf8)
            try FileManager.default.setAttributes([.modificationDate: stamp], ofItemAtPath: policy)
            #expect(flagged(), "nothing reloads an unchanged-looking file by itself")
            kill(d.process.processIdentifier, SIGHUP)
            #expect(TestHTTP.waitUntil(5) { !flagged() }, "\(d.log)")
            #expect(d.log.components(separatedBy: "policy reloaded").count == 2, "one reload, by the signal")
        }

        /// The file users see changes three ways: Kubernetes swaps a ConfigMap's `..data` link
        /// (the `policy.yaml` link itself never changes), an editor renames a new file over the
        /// old, a tool writes in place. Each reloads within 2 s without a signal.
        @Test func aConfigMapSwapARenameOverAndAnInPlaceWriteEachReload() throws {
            let (fd, port) = TestSockets.bound("127.0.0.1")
            defer { close(fd) }
            let denying = "expected:\n  - { port: 1-1023 }\n", allowing = "expected:\n  - { port: \(port) }\n"
            let volume = try KubernetesVolume(["policy.yaml": denying])
            let d = try DaemonHarness(arguments: ["--policy.file", volume.path("policy.yaml")])
            guard d.waitReady() else { return }
            func flagged() -> Bool { d.scrape().samples("portwatch_unexpected_port_info").contains { $0.label("port") == "\(port)" } }
            func reloads() -> Int { d.log.components(separatedBy: "policy reloaded").count - 1 }
            #expect(TestHTTP.waitUntil(5) { flagged() })

            try volume.publish(["policy.yaml": allowing])
            #expect(TestHTTP.waitUntil(2) { !flagged() }, "a ConfigMap update is not picked up: \(d.log)")

            // An editor's save: a new file renamed over the old one.
            try volume.publish(["policy.yaml": denying])
            #expect(TestHTTP.waitUntil(2) { flagged() })
            let before = reloads()
            try allowing.write(toFile: volume.dir + "/..data/policy.yaml.swp", atomically: false, encoding: .utf8)
            #expect(rename(volume.dir + "/..data/policy.yaml.swp", volume.dir + "/..data/policy.yaml") == 0)
            #expect(TestHTTP.waitUntil(2) { !flagged() }, "a rename over the file is not picked up")

            // In place, same inode.
            let handle = try #require(FileHandle(forWritingAtPath: volume.dir + "/..data/policy.yaml"))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data(denying.utf8))
            try handle.close()
            #expect(TestHTTP.waitUntil(2) { flagged() }, "a write in place is not picked up")
            #expect(reloads() == before + 2, "one reload per change")
        }

        @Test func badPolicyAtStartIsOneClearLine() throws {
            let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).yaml").path
            try "expected:\n  - { colour: red }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            let (status, _, err) = try TestBinaries.run("portwatch", ["--policy.file", policy, "--db.path", "/tmp/pw-policy-\(getpid()).db",
                                                                      "--web.listen-address", "127.0.0.1:\(TestHTTP.freePort())"])
            #expect(status == 1)
            #expect(err.hasPrefix("portwatch: \(policy):2: unknown field `colour`"), "\(err)")
        }
    }
}
