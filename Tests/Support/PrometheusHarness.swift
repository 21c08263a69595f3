import Foundation
import Glibc

/// A real Prometheus server (Debian's `prometheus`) on loopback, scraping a portwatch daemon
/// every second (and itself, unless `scrapesItself` is false), optionally with rule files.
/// Shared by the integration tests and the benchmark.
public final class PrometheusHarness {
    public let port: UInt16
    public let process = Process()
    public let dir: String

    public init(target: UInt16, ruleFiles: [String] = [], basicAuth: (user: String, password: String)? = nil, tlsCA: String? = nil,
                scrapesItself: Bool = true) throws {
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
        \(scrapesItself ? "  - job_name: prometheus\n    static_configs:\n      - targets: [\"127.0.0.1:\(port)\"]\n" : "")
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
    public func api(_ path: String) -> [String: Any]? {
        guard let response = try? TestHTTP.get(port: port, path: path), response.status == 200 else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
    }

    /// An instant query's result vector (nil if the query failed).
    public func query(_ expression: String) -> [[String: Any]]? {
        let encoded = expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        guard let json = api("/api/v1/query?query=\(encoded)"), json["status"] as? String == "success",
              let data = json["data"] as? [String: Any] else { return nil }
        return data["result"] as? [[String: Any]] ?? []
    }

    /// The scrape target's health and last error, once it has been scraped.
    public func target() -> (health: String, lastError: String)? {
        guard let data = api("/api/v1/targets")?["data"] as? [String: Any],
              let active = data["activeTargets"] as? [[String: Any]],
              let t = active.first(where: { ($0["labels"] as? [String: String])?["job"] == "portwatch" }),
              let health = t["health"] as? String, health != "unknown" else { return nil }
        return (health, t["lastError"] as? String ?? "")
    }

    /// One of Prometheus's own metrics, from its /metrics (nil if not there).
    public func selfMetric(_ name: String) -> Double? {
        guard let response = try? TestHTTP.get(port: port, path: "/metrics"), response.status == 200 else { return nil }
        return Scrape(response.text).value(name)
    }

    deinit {
        // Never started (no /usr/bin/prometheus): the throw from init is the failure to report.
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}
