import Foundation
import Glibc
import PortwatchTestSupport

/// The release `portwatch` binary running on a temporary DB and a loopback port it picks
/// itself, started as the tests start it (`DaemonProcess`).
final class BenchDaemon {
    let daemon: DaemonProcess
    var port: UInt16 { daemon.port }
    var dbPath: String { daemon.dbPath }
    var process: Process { daemon.process }

    /// The portwatch binary next to this benchmark's (the build being measured).
    static let builtBinary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("portwatch").path

    /// `binary`: another build to measure against this one (see `PORTWATCH_BENCH_BASELINE`).
    init(arguments: [String] = [], environment: [String: String] = [:], binary: String = BenchDaemon.builtBinary) throws {
        daemon = try DaemonProcess(binary: binary, arguments: arguments, environment: environment)
        guard daemon.waitReady() else { throw BenchError("portwatch did not become ready (run as root); its log:\n\(daemon.log)") }
    }

    var pid: Int32 { daemon.pid }

    func stop() { daemon.stop() }

    deinit { stop() }

    /// One GET over a fresh loopback connection: status and body bytes.
    func get(_ path: String, headers: [String: String] = [:]) -> (status: Int, body: [UInt8])? {
        (try? daemon.get(path, headers: headers)).map { ($0.status, $0.body) }
    }

    /// One scrape's text; `gzip`: asked for compressed, as Prometheus asks (then the daemon
    /// keeps the per-port lines compressed only), and decompressed here.
    func metrics(gzip: Bool = false) -> String {
        guard gzip else { return get("/metrics").map { String(decoding: $0.body, as: UTF8.self) } ?? "" }
        return get("/metrics", headers: ["Accept-Encoding": "gzip"]).flatMap { TestProcess.gunzip($0.body) }.map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    func value(_ prefix: String, gzip: Bool = false) -> Double { values([prefix], gzip: gzip)[0] }

    /// The sum of the samples of each metric, from one scrape.
    func values(_ prefixes: [String], gzip: Bool = false) -> [Double] {
        let lines = metrics(gzip: gzip).split(separator: "\n")
        return prefixes.map { prefix in
            lines.filter { $0.hasPrefix(prefix) }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
        }
    }

    var databaseBytes: Double {
        ["", "-wal"].map { (try? FileManager.default.attributesOfItem(atPath: dbPath + $0))?[.size] as? Double ?? 0 }.reduce(0, +)
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
