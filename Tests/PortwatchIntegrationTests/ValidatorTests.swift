import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// The real output, judged by the strictest checkers there are.
extension KernelSuite {
    @Suite struct ValidatorTests {
        static let openMetrics = "application/openmetrics-text; version=1.0.0"

        @Test func pythonOpenMetricsParserAcceptsTheOutput() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let (fd, port) = TestSockets.bound("::1")
            defer { close(fd) }
            _ = TestHTTP.waitUntil(5) { d.portInfo(port: port, transport: "tcp") != nil }
            let text = d.metrics(accept: Self.openMetrics)
            #expect(text.hasSuffix("# EOF\n"))
            let parse = """
            import sys
            from prometheus_client.openmetrics.parser import text_string_to_metric_families
            families = list(text_string_to_metric_families(sys.stdin.read()))
            print(len(families), sum(len(f.samples) for f in families))
            """
            let (status, output) = TestProcess.run(["python3", "-c", parse], input: text)
            #expect(status == 0, "prometheus_client rejected the OpenMetrics output: \(output)")
            #expect(output.split(separator: " ").count == 2, "\(output)")
        }

        /// promtool's checker reads the text format (it reads OpenMetrics counters as lacking help).
        @Test func promtoolAcceptsTheTextFormat() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let (status, output) = TestProcess.run(["promtool", "check", "metrics"], input: d.metrics())
            #expect(status == 0, "promtool check metrics: \(output)")
        }

        @Test func prometheusScrapesWithBasicAuth() throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let config = root.appendingPathComponent("docker/web-config.example.yml").path
            let d = try DaemonHarness(arguments: ["--web.config.file", config])
            #expect(TestHTTP.waitUntil(30) { (try? TestHTTP.get(port: d.port, path: "/-/ready").status) == 401 }, "no credentials, no answer")
            let credentials = "Basic " + Data("prometheus:changeme".utf8).base64EncodedString()
            #expect(TestHTTP.waitUntil(30) {
                (try? TestHTTP.get(port: d.port, path: "/-/ready", headers: ["Authorization": credentials]).status) == 200
            })
            let prometheus = try PrometheusHarness(target: d.port, basicAuth: ("prometheus", "changeme"))
            var target: (health: String, lastError: String)?
            #expect(TestHTTP.waitUntil(30) {
                target = prometheus.target()
                return target?.health == "up"
            }, "target: \(String(describing: target))")
            let wrong = try PrometheusHarness(target: d.port, basicAuth: ("prometheus", "guess"))
            #expect(TestHTTP.waitUntil(30) { wrong.target() != nil })
            #expect(wrong.target()?.health == "down" && wrong.target()?.lastError.contains("401") == true)
            // Plain HTTP: OpenSSL is never loaded (its 2 MiB stay out of the daemon's memory).
            #expect(!mapsOpenSSL(d.process.processIdentifier))
        }

        func mapsOpenSSL(_ pid: Int32) -> Bool {
            // Read to the end (a /proc file has no size; a sanitizer's map runs to many pages).
            let data = FileHandle(forReadingAtPath: "/proc/\(pid)/maps")?.readDataToEndOfFile() ?? Data()
            let maps = String(decoding: data, as: UTF8.self)
            return maps.contains("/libssl.so") || maps.contains("/libcrypto.so")
        }

        @Test func prometheusScrapesOverTLSWithBasicAuth() throws {
            let certs = try TestCertificates()
            let config = certs.dir + "/web.yml"
            // bcrypt of "secret", relative certificate paths (resolved against the file).
            try """
            tls_server_config:
              cert_file: server.crt
              key_file: server.key
            basic_auth_users:
              prometheus: $2b$10$ct/91SD9t/SnQxMvayJxi.rjGDpmso.5H873x7E68m/VXiaesH27C
            """.write(toFile: config, atomically: true, encoding: .utf8)
            let check = TestProcess.sh("promtool check web-config '\(config)'")
            #expect(check.status == 0, "\(check.output)")
            let d = try DaemonHarness(arguments: ["--web.config.file", config])
            let prometheus = try PrometheusHarness(target: d.port, basicAuth: ("prometheus", "secret"), tlsCA: certs.ca)
            var target: (health: String, lastError: String)?
            #expect(TestHTTP.waitUntil(30) {
                target = prometheus.target()
                return target?.health == "up"
            }, "target: \(String(describing: target)); log: \(d.log)")
            #expect(mapsOpenSSL(d.process.processIdentifier), "TLS configured: OpenSSL loaded")
        }

        @Test func realPrometheusScrapesCleanly() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let (fd, port) = TestSockets.bound("127.0.0.1")
            defer { close(fd) }
            let prometheus = try PrometheusHarness(target: d.port)
            var target: (health: String, lastError: String)?
            let scraped = TestHTTP.waitUntil(30) {
                target = prometheus.target()
                return target?.health == "up"
            }
            #expect(scraped, "target: \(String(describing: target))")
            #expect(target?.lastError == "")
            let seen = TestHTTP.waitUntil(10) {
                (prometheus.query("portwatch_port_info{port=\"\(port)\"}")?.count ?? 0) == 1
            }
            #expect(seen, "Prometheus has no portwatch_port_info for port \(port)")
            #expect(prometheus.query("up{job=\"portwatch\"}")?.first.flatMap { ($0["value"] as? [Any])?.last as? String } == "1")
            // Prometheus's own counters of rejected samples (it scrapes itself too).
            for problem in ["prometheus_target_scrapes_sample_duplicate_timestamp_total",
                            "prometheus_target_scrapes_sample_out_of_bounds_total",
                            "prometheus_target_scrapes_sample_out_of_order_total",
                            "prometheus_target_scrapes_exceeded_sample_limit_total"] {
                var value: String?
                _ = TestHTTP.waitUntil(10) {
                    value = prometheus.query(problem)?.first.flatMap { ($0["value"] as? [Any])?.last as? String }
                    return value != nil
                }
                #expect(value == "0", "\(problem) = \(value ?? "missing")")
            }
        }
    }
}
