import Foundation
import Glibc

/// The release `portwatch` binary running on a temporary DB and a free port.
final class BenchDaemon {
    let process = Process()
    let port: UInt16
    let dbPath: String

    /// The portwatch binary next to this benchmark's (the build being measured).
    static let builtBinary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("portwatch").path

    /// `binary`: another build to measure against this one (see `PORTWATCH_BENCH_BASELINE`).
    init(arguments: [String] = [], environment: [String: String] = [:], binary: String = BenchDaemon.builtBinary) throws {
        let (fd, port) = Sockets.open()
        close(fd)
        self.port = port
        let dir = NSTemporaryDirectory() + "pw-bench-daemon-\(UUID().uuidString)"
        dbPath = dir + "/pw.db"
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--web.listen-address", "127.0.0.1:\(port)", "--db.path", dbPath, "--log.level", "error"] + arguments
        process.standardError = FileHandle.nullDevice
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        try process.run()
        let deadline = Measure.now() + 30
        while Measure.now() < deadline, get("/-/ready")?.status != 200 { usleep(20_000) }
        guard get("/-/ready")?.status == 200 else { throw BenchError("portwatch did not become ready (run as root)") }
    }

    var pid: Int32 { process.processIdentifier }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }

    /// One GET over a fresh loopback connection: status and body bytes.
    func get(_ path: String, headers: String = "") -> (status: Int, body: [UInt8])? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = UInt32(0x7f000001).bigEndian
        let ok = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\(headers)\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        guard let end = data.indices.first(where: { i in i + 3 < data.count && data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 }),
              data.count > 12, let status = Int(String(decoding: data[9..<12], as: UTF8.self)) else { return nil }
        return (status, Array(data[(end + 4)...]))
    }

    func metrics() -> String { get("/metrics").map { String(decoding: $0.body, as: UTF8.self) } ?? "" }

    func value(_ prefix: String) -> Double { values([prefix])[0] }

    /// The sum of the samples of each metric, from one scrape.
    func values(_ prefixes: [String]) -> [Double] {
        let lines = metrics().split(separator: "\n")
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
