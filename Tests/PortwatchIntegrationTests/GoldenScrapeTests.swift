import Foundation
import Testing
import PortwatchTestSupport

/// The metric contract as the real daemon serves it: every family's HELP and TYPE, every
/// series' name and labels, compared with Golden/e2e-output.txt (node_exporter's approach).
/// Values, and label values that depend on the host, are masked. After an intended change,
/// regenerate with PORTWATCH_UPDATE_GOLDEN=1 and review the diff.
extension KernelSuite {
    @Suite struct GoldenScrapeTests {
        static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/e2e-output.txt")
        /// Families with one series per held port or per owner of transients: only their label names are kept.
        static let perPort: Set<String> = ["portwatch_port_info", "portwatch_unexpected_port_info", "portwatch_recent_transient_listeners",
                                           "portwatch_recent_transient_listener_lifetime_max_seconds", "portwatch_listen_queue_length",
                                           "portwatch_listen_queue_limit", "portwatch_socket_drops_total",
                                           "portwatch_deleted_executable_port_info"]
        /// Labels whose values depend on the build or the host.
        static let masked: Set<String> = ["version", "revision"]

        static func normalize(_ text: String) -> String {
            var out: [String] = []
            var seen = Set<String>()
            for line in text.split(separator: "\n").map(String.init) {
                if line.hasPrefix("#") {
                    out.append(line)
                    continue
                }
                guard let sample = Scrape(line).samples.first else { continue }
                let rendered: String
                if perPort.contains(sample.name) {
                    rendered = "\(sample.name){\(sample.labels.map(\.0).joined(separator: ","))} <value>"
                } else {
                    let labels = sample.labels.map { "\($0.0)=\"\(masked.contains($0.0) ? "<masked>" : $0.1)\"" }
                    rendered = "\(sample.name)\(labels.isEmpty ? "" : "{\(labels.joined(separator: ","))}") <value>"
                }
                if seen.insert(rendered).inserted { out.append(rendered) }
            }
            return out.joined(separator: "\n") + "\n"
        }

        @Test func theScrapeMatchesTheGoldenFile() throws {
            let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).yaml").path
            try "expected:\n  - { port: 1-1023 }\n".write(toFile: policy, atomically: true, encoding: .utf8)
            let (fd, port) = TestSockets.bound("127.0.0.1")
            defer { close(fd) }
            let d = try DaemonHarness(arguments: ["--policy.file", policy])
            guard d.waitReady() else { return }
            #expect(d.waitShown(port, "tcp") != nil)
            let (transient, transientPort) = TestSockets.bound("127.0.0.1")
            close(transient)
            #expect(TestHTTP.waitUntil(DaemonHarness.deadline) { d.metrics().contains("port=\"\(transientPort)\"") })
            // The listener health is read once the table is the kernel's, on its own thread.
            #expect(TestHTTP.waitUntil(DaemonHarness.deadline) { d.metrics().contains("portwatch_socket_drops_total{") })
            let actual = Self.normalize(d.metrics())
            if ProcessInfo.processInfo.environment["PORTWATCH_UPDATE_GOLDEN"] == "1" {
                try actual.write(to: Self.golden, atomically: true, encoding: .utf8)
            }
            let expected = try String(contentsOf: Self.golden, encoding: .utf8)
            let missing = Set(expected.split(separator: "\n")).subtracting(actual.split(separator: "\n"))
            let extra = Set(actual.split(separator: "\n")).subtracting(expected.split(separator: "\n"))
            #expect(actual == expected, "missing: \(missing.sorted())\nunexpected: \(extra.sorted())")
        }
    }
}
