import CSQLite
import Foundation
import Glibc

/// 4b. A scrape on a host whose listeners change: 10,000 held ports, one new listener committed
/// to the ledger before each scrape (one row changed), then the same scrape again with nothing
/// changed (the cached path), and `ss -Htln` (the kernel's dump alone) in the same loop. Per
/// policy: none, 2,000 rules and 20,000 rules (port + comm and unit globs, a few port-less).
/// Also times `portwatch check-policy` and a reload of each policy.
enum ScrapeChangeBench {
    static func run(report: Report, ports: Int, scrapes: Int, runs: Int) throws {
        Sockets.raiseFileLimit(ports + scrapes * runs * 3 + 1_000)
        let dir = NSTemporaryDirectory() + "pw-bench-change-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var held: [Int32] = []
        defer { held.forEach { close($0) } }
        while held.count < ports { held.append(Sockets.open().fd) }

        var figures: [Figure] = []
        var notes: [String] = []
        var baseline: [Double] = []
        for rules in [0, 2_000, 20_000] {
            let name = rules == 0 ? "no policy" : "policy of \(rules.formatted()) rules"
            let policy = dir + "/policy-\(rules).yaml"
            if rules > 0 { try self.policy(rules: rules).write(toFile: policy, atomically: true, encoding: .utf8) }
            // No series cap: every added port is in the scrape (the check below), whatever its place.
            let daemon = try BenchDaemon(arguments: ["--metrics.max-port-series", "0"] + (rules > 0 ? ["--policy.file", policy] : []))
            var added: [Int32] = []
            defer { added.forEach { close($0) } }
            defer { daemon.stop() }
            let deadline = Measure.now() + 60
            while daemon.value("portwatch_ports_held") < Double(ports), Measure.now() < deadline { usleep(100_000) }
            guard daemon.value("portwatch_ports_held") >= Double(ports) else {
                notes.append("\(name): the scrapes did not show the \(ports.formatted()) ports within 60 s; not measured")
                continue
            }
            let ledger = try LedgerWatch(path: daemon.dbPath)
            var changed50: [Double] = [], changed99: [Double] = [], cached50: [Double] = [], cached99: [Double] = [], ss: [Double] = []
            var gzipChanged50: [Double] = [], gzipCached50: [Double] = [], onlyChanged50: [Double] = [], onlyCached50: [Double] = []
            for run in 0..<runs {
                Progress.step("changed scrape, \(name)", run: run, of: runs)
                var changed: [Double] = [], cached: [Double] = [], plain: [Double] = [], gzipChanged: [Double] = [], gzipCached: [Double] = []
                var onlyChanged: [Double] = [], onlyCached: [Double] = []
                // Not measured: a plain-text scrape, which renders the lines as text again (the
                // run before ended with gzip alone, which keeps them compressed only).
                _ = daemon.get("/metrics")
                for i in 0..<scrapes {
                    // As Prometheus asks (gzip), every other change.
                    let gzip = i % 2 == 1
                    let headers = gzip ? ["Accept-Encoding": "gzip"] : [:]
                    let (fd, port) = Sockets.open()
                    added.append(fd)
                    guard ledger.waitFor(port: port, seconds: 10) else { throw BenchError("changed scrape: port \(port) never committed") }
                    var body: [UInt8] = []
                    let first = Measure.time { body = daemon.get("/metrics", headers: headers)?.body ?? [] } * 1000
                    let again = Measure.time { _ = daemon.get("/metrics", headers: headers) } * 1000
                    if gzip {
                        gzipChanged.append(first)
                        gzipCached.append(again)
                        continue
                    }
                    changed.append(first)
                    cached.append(again)
                    guard String(decoding: body, as: UTF8.self).contains("port=\"\(port)\"") else {
                        throw BenchError("changed scrape: the scrape after the change does not show port \(port)")
                    }
                    if i % 4 == 0 { plain.append(Measure.time { KernelBench.runSS(["-Htln"]) } * 1000) }
                }
                // As Prometheus alone scrapes: gzip only. The per-port lines are then kept
                // compressed only, from the second such change on (a plain-text scrape keeps
                // them for its generation and the next), and a change renders its chunk.
                var lastPort: UInt16 = 0
                for i in 0..<(scrapes / 2 + 2) {
                    let (fd, port) = Sockets.open()
                    added.append(fd)
                    lastPort = port
                    guard ledger.waitFor(port: port, seconds: 10) else { throw BenchError("changed scrape: port \(port) never committed") }
                    let first = Measure.time { _ = daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"]) } * 1000
                    let again = Measure.time { _ = daemon.get("/metrics", headers: ["Accept-Encoding": "gzip"]) } * 1000
                    if i >= 2 {
                        onlyChanged.append(first)
                        onlyCached.append(again)
                    }
                }
                guard daemon.metrics(gzip: true).contains("port=\"\(lastPort)\"") else {
                    throw BenchError("changed scrape: the compressed scrape after the change does not show port \(lastPort)")
                }
                changed50.append(Measure.percentile(changed, 0.5))
                changed99.append(Measure.percentile(changed, 0.99))
                cached50.append(Measure.percentile(cached, 0.5))
                cached99.append(Measure.percentile(cached, 0.99))
                ss.append(Measure.percentile(plain, 0.5))
                gzipChanged50.append(Measure.percentile(gzipChanged, 0.5))
                gzipCached50.append(Measure.percentile(gzipCached, 0.5))
                onlyChanged50.append(Measure.percentile(onlyChanged, 0.5))
                onlyCached50.append(Measure.percentile(onlyCached, 0.5))
            }
            figures += [
                Figure(name: "\(name): scrape after a one-row change p50", unit: "ms", runs: changed50),
                Figure(name: "\(name): scrape after a one-row change p99", unit: "ms", runs: changed99),
                Figure(name: "\(name): cached scrape p50", unit: "ms", runs: cached50),
                Figure(name: "\(name): cached scrape p99", unit: "ms", runs: cached99),
                Figure(name: "\(name): ss -Htln", unit: "ms", runs: ss),
                Figure(name: "\(name): with gzip, scrape after a one-row change p50", unit: "ms", runs: gzipChanged50),
                Figure(name: "\(name): with gzip, cached scrape p50", unit: "ms", runs: gzipCached50),
                Figure(name: "\(name): gzip only (lines kept compressed only), scrape after a one-row change p50", unit: "ms", runs: onlyChanged50),
                Figure(name: "\(name): gzip only, cached scrape p50", unit: "ms", runs: onlyCached50),
            ]
            if rules == 0 { baseline = changed50 }
            func ratio(_ a: [Double], _ b: [Double]) -> String { Report.format(Measure.percentile(zip(a, b).map { $0 / $1 }, 0.5)) }
            notes.append("\(name): changed / cached = \(ratio(changed50, cached50)) (p50), \(ratio(changed99, cached99)) (p99); changed / ss -Htln = \(ratio(changed50, ss)); with gzip, changed / cached = \(ratio(gzipChanged50, gzipCached50)); gzip only, changed / cached = \(ratio(onlyChanged50, onlyCached50))"
                         + (rules > 0 && !baseline.isEmpty ? "; changed / changed without a policy = \(Report.format(Measure.percentile(changed50, 0.5) / Measure.percentile(baseline, 0.5)))" : ""))
            if rules > 0 {
                let check = (0..<3).map { _ in Measure.time { runPortwatch(["check-policy", policy, "--db.path", daemon.dbPath]) } * 1000 }
                let reload = try (0..<3).map { _ in try timeReload(daemon, policy: policy) * 1000 }
                figures += [Figure(name: "\(name): portwatch check-policy against the ledger", unit: "ms", runs: check),
                            Figure(name: "\(name): reload (SIGHUP to the next scrape showing it)", unit: "ms", runs: reload)]
            }
        }
        report.add("Scrape after a change (\(ports.formatted()) held ports, one listener added and committed before each scrape; \(runs) runs of \(scrapes) scrapes; each run's p50 and p99)",
                   figures, notes: notes + ["changed: the first scrape after the ledger committed the new row; cached: the same scrape again, nothing changed"])
    }

    /// `rules` expected listeners on ports spread over the ephemeral range (where the held
    /// ports are), each with a comm and a unit glob; one in 200 names no port, and the last
    /// allows this benchmark's own listeners: the series are those of the run without a policy
    /// (no port unexpected), and what differs is the matching.
    static func policy(rules: Int) -> String {
        var text = "expected:\n"
        for i in 0..<rules - 1 {
            let port = i % 200 == 199 ? "" : "port: \(32_768 + (i * 7) % 28_000), "
            text += "  - { \(port)comm: svc\(i), unit: \"svc\(i)-*.service\" }\n"
        }
        return text + "  - { comm: portwatch-bench }\n"
    }

    /// Seconds from SIGHUP to a scrape whose reload time moved.
    static func timeReload(_ daemon: BenchDaemon, policy: String) throws -> Double {
        let before = daemon.value("portwatch_policy_last_reload_success_timestamp_seconds")
        usleep(10_000)  // the reload's time must differ at the scrape's resolution
        let start = Measure.now()
        kill(daemon.pid, SIGHUP)
        let deadline = start + 30
        while daemon.value("portwatch_policy_last_reload_success_timestamp_seconds") == before {
            guard Measure.now() < deadline else { throw BenchError("changed scrape: the policy was never reloaded") }
            usleep(1_000)
        }
        return Measure.now() - start
    }

    static func runPortwatch(_ arguments: [String]) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: BenchDaemon.builtBinary)
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        try? p.run()
        p.waitUntilExit()
    }
}

/// A read-only look at the daemon's ledger: has it committed a row for this port yet.
final class LedgerWatch {
    private var db: OpaquePointer?
    private var statement: OpaquePointer?

    init(path: String) throws {
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK,
              sqlite3_prepare_v2(db, "SELECT count(*) FROM bindings WHERE port = ?", -1, &statement, nil) == SQLITE_OK else {
            throw BenchError("cannot read the ledger at \(path)")
        }
    }

    deinit {
        sqlite3_finalize(statement)
        sqlite3_close(db)
    }

    func waitFor(port: UInt16, seconds: Double) -> Bool {
        let deadline = Measure.now() + seconds
        while Measure.now() < deadline {
            sqlite3_reset(statement)
            sqlite3_bind_int(statement, 1, Int32(port))
            if sqlite3_step(statement) == SQLITE_ROW, sqlite3_column_int(statement, 0) > 0 { return true }
            usleep(2_000)
        }
        return false
    }
}
