import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// The shipped dashboard and alert rules, run against a real Prometheus scraping the real daemon.
extension KernelSuite {
    @Suite struct OpsKitTests {
        static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        static let rules = root.appendingPathComponent("docker/prometheus/portwatch-rules.yml").path
        static let fleetRules = root.appendingPathComponent("docker/prometheus/portwatch-fleet-rules.yml").path
        static let dashboard = root.appendingPathComponent("grafana/portwatch.json").path

        /// (panel title, expression) for every query of the dashboard, with Grafana's variables filled in.
        static func panelQueries() throws -> [(String, String)] {
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dashboard))) as! [String: Any]
            var out: [(String, String)] = []
            for panel in json["panels"] as! [[String: Any]] {
                for target in panel["targets"] as? [[String: Any]] ?? [] {
                    let expr = (target["expr"] as! String).replacingOccurrences(of: "$__rate_interval", with: "1m")
                        .replacingOccurrences(of: "$instance", with: ".*")
                    out.append((panel["title"] as! String, expr))
                }
            }
            return out
        }

        /// Every `expr:` of the rules file (block scalars included).
        static func ruleExpressions(_ file: String = rules) throws -> [String] {
            let lines = try String(contentsOfFile: file, encoding: .utf8).components(separatedBy: "\n")
            var out: [String] = []
            var i = 0
            while i < lines.count {
                let line = lines[i].trimmingCharacters(in: .whitespaces)
                if line.hasPrefix("expr:") {
                    var expr = String(line.dropFirst(5)).trimmingCharacters(in: .whitespaces)
                    if expr == "|" {
                        expr = ""
                        let indent = lines[i + 1].prefix { $0 == " " }.count
                        while i + 1 < lines.count, lines[i + 1].prefix(while: { $0 == " " }).count >= indent, !lines[i + 1].isEmpty {
                            expr += lines[i + 1].trimmingCharacters(in: .whitespaces) + " "
                            i += 1
                        }
                    }
                    out.append(expr)
                }
                i += 1
            }
            return out
        }

        static func metricNames(_ text: String) -> Set<String> {
            // Not the middle of a recording rule's name (level:metric:operations).
            let regex = try! NSRegularExpression(pattern: "(?<![:\\w])(portwatch_[a-z_]+|process_[a-z_]+)\\b(?!:)")
            return Set(regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { String(text[Range($0.range, in: text)!]) })
        }

        @Test func dashboardAndRulesWorkAgainstTheRealDaemon() throws {
            let policy = FileManager.default.temporaryDirectory.appendingPathComponent("ops-policy-\(UUID().uuidString).yaml").path
            try "expected:\n  - { port: 1-1023 }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            let d = try DaemonHarness(arguments: ["--policy.file", policy])
            guard d.waitReady() else { return }
            let (fd, port) = TestSockets.bound("127.0.0.1")
            defer { close(fd) }
            let (transient, _) = TestSockets.bound("127.0.0.1")
            close(transient) // for the short-lived listeners table
            let prometheus = try PrometheusHarness(target: d.port, ruleFiles: [Self.rules, Self.fleetRules])
            #expect(TestHTTP.waitUntil(30) {
                (prometheus.query("portwatch_port_info{port=\"\(port)\"}")?.count ?? 0) == 1
            }, "Prometheus never saw the listener")

            // Every panel query runs; the core panels return data.
            let core: Set<String> = ["Ports held", "Ports held by protocol and family", "Current holders", "Up",
                                     "BPF programs attached", "Unexpected listeners (policy)", "Kernel events per second",
                                     "Short-lived listeners (last hour)", "Top listeners by drops", "Top listeners by accept queue fill",
                                     "Unexpected listeners per cluster and namespace", "Nodes with a port open"]
            for (title, expr) in try Self.panelQueries() {
                var result: [[String: Any]]?
                _ = TestHTTP.waitUntil(core.contains(title) ? 10 : 0) {
                    result = prometheus.query(expr)
                    return (result?.count ?? 0) > 0
                }
                #expect(result != nil, "panel \(title): query failed: \(expr)")
                if core.contains(title) { #expect((result?.count ?? 0) > 0, "panel \(title) shows no data: \(expr)") }
            }

            // Every rule expression evaluates; the unexpected-listener alert fires for our port.
            for expr in try Self.ruleExpressions() + Self.ruleExpressions(Self.fleetRules) {
                #expect(prometheus.query(expr) != nil, "rule expression fails: \(expr)")
            }
            // Every fleet recording rule records an answer from this one node.
            for line in try String(contentsOfFile: Self.fleetRules, encoding: .utf8).split(separator: "\n") {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                guard trimmed.hasPrefix("- record: ") else { continue }
                let record = String(trimmed.dropFirst("- record: ".count))
                var result: [[String: Any]]?
                #expect(TestHTTP.waitUntil(10) {
                    result = prometheus.query(record)
                    return (result?.count ?? 0) > 0
                }, "recording rule \(record) records nothing")
            }
            var firing = false
            _ = TestHTTP.waitUntil(20) {
                let alerts = (prometheus.api("/api/v1/alerts")?["data"] as? [String: Any])?["alerts"] as? [[String: Any]] ?? []
                firing = alerts.contains {
                    ($0["labels"] as? [String: String])?["alertname"] == "PortwatchUnexpectedListener"
                        && ($0["labels"] as? [String: String])?["port"] == "\(port)" && $0["state"] as? String == "firing"
                }
                return firing
            }
            #expect(firing, "PortwatchUnexpectedListener did not fire for port \(port)")

            // Every metric the dashboard and rules name is one portwatch exports.
            // A family with no series now (no deleted executable here) is exported all the same: its TYPE line names it.
            let scraped = d.metrics().split(separator: "\n")
            let exported = Self.metricNames(scraped.filter { !$0.hasPrefix("#") }.joined(separator: "\n"))
                .union(scraped.filter { $0.hasPrefix("# TYPE ") }.compactMap { $0.split(separator: " ").dropFirst(2).first.map(String.init) })
            let used = Self.metricNames(try String(contentsOfFile: Self.dashboard, encoding: .utf8))
                .union(Self.metricNames(try String(contentsOfFile: Self.rules, encoding: .utf8)))
            #expect(used.subtracting(exported).isEmpty, "named but not exported: \(used.subtracting(exported).sorted())")
        }
    }
}
