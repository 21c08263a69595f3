import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// A real Prometheus server (Debian's `prometheus`) on loopback, scraping a portwatch daemon
/// every second, optionally with rule files.
final class PrometheusHarness {
    let port: UInt16
    let process = Process()
    let dir: String

    init(target: UInt16, ruleFiles: [String] = [], basicAuth: (user: String, password: String)? = nil, tlsCA: String? = nil) throws {
        port = TestHTTP.freePort()
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("prom-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let rules = ruleFiles.isEmpty ? "" : "rule_files:\n" + ruleFiles.map { "  - \($0)\n" }.joined()
        var auth = basicAuth.map { "    basic_auth:\n      username: \($0.user)\n      password: \($0.password)\n" } ?? ""
        if let tlsCA { auth += "    scheme: https\n    tls_config:\n      ca_file: \(tlsCA)\n" }
        let config = """
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        \(rules)scrape_configs:
          - job_name: portwatch
        \(auth)    static_configs:
              - targets: ["127.0.0.1:\(target)"]
          - job_name: prometheus
            static_configs:
              - targets: ["127.0.0.1:\(port)"]

        """
        try config.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        process.arguments = ["--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/data",
                             "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// GET on Prometheus's HTTP API, decoded as JSON.
    func api(_ path: String) -> [String: Any]? {
        guard let response = try? TestHTTP.get(port: port, path: path), response.status == 200 else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
    }

    /// An instant query's result vector (nil if the query failed).
    func query(_ expression: String) -> [[String: Any]]? {
        let encoded = expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        guard let json = api("/api/v1/query?query=\(encoded)"), json["status"] as? String == "success",
              let data = json["data"] as? [String: Any] else { return nil }
        return data["result"] as? [[String: Any]] ?? []
    }

    /// The scrape target's health and last error, once it has been scraped.
    func target() -> (health: String, lastError: String)? {
        guard let data = api("/api/v1/targets")?["data"] as? [String: Any],
              let active = data["activeTargets"] as? [[String: Any]],
              let t = active.first(where: { ($0["labels"] as? [String: String])?["job"] == "portwatch" }),
              let health = t["health"] as? String, health != "unknown" else { return nil }
        return (health, t["lastError"] as? String ?? "")
    }

    deinit {
        // Never started (no /usr/bin/prometheus): the throw from init is the failure to report.
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}
