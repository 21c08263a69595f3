import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// Whether the kernel tests can run here: root is needed to load BPF. Under
/// PORTWATCH_REQUIRE_BPF=1 (CI) they run regardless, and fail if BPF cannot load.
enum BPFAvailability {
    static var required: Bool { ProcessInfo.processInfo.environment["PORTWATCH_REQUIRE_BPF"] == "1" }
    static var enabled: Bool { required || geteuid() == 0 }
}

/// The real `portwatch` binary, on a temporary DB and a free loopback port.
final class DaemonHarness {
    let port: UInt16
    let dbPath: String
    let process = Process()
    let stderr = Pipe()
    private let logBox = LogBox()

    final class LogBox: @unchecked Sendable {
        let lock = NSLock()
        var text = ""
    }

    static var binary: String {
        ProcessInfo.processInfo.environment["PORTWATCH_BINARY"] ?? TestBinaries.path("portwatch")
    }

    init(arguments: [String] = [], dbPath: String? = nil) throws {
        port = TestHTTP.freePort()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("portwatch-it-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        self.dbPath = dbPath ?? dir + "/portwatch.db"
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["--web.listen-address", "127.0.0.1:\(port)", "--db.path", self.dbPath] + arguments
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        let box = logBox
        stderr.fileHandleForReading.readabilityHandler = { handle in
            let chunk = String(decoding: handle.availableData, as: UTF8.self)
            box.lock.lock()
            box.text += chunk
            box.lock.unlock()
        }
        try process.run()
    }

    var log: String {
        logBox.lock.lock()
        defer { logBox.lock.unlock() }
        return logBox.text
    }

    /// Waits for /-/ready; records a failure with the daemon's log if it never comes.
    func waitReady(seconds: Double = 30) -> Bool {
        var exited = false
        let ok = TestHTTP.waitUntil(seconds) {
            guard process.isRunning else { exited = true; return true } // no point waiting longer
            return (try? TestHTTP.get(port: port, path: "/-/ready").status) == 200
        } && !exited
        if !ok { Issue.record("portwatch did not become ready; log:\n\(log)") }
        return ok
    }

    func metrics(accept: String? = nil) -> String {
        let headers = accept.map { ["Accept": $0] } ?? [:]
        return (try? TestHTTP.get(port: port, path: "/metrics", headers: headers).text) ?? ""
    }

    /// The value of one series, named exactly as exposed (`name{label="v",...}` or `name`).
    func sample(_ series: String) -> Double? {
        Self.sample(series, in: metrics())
    }

    static func sample(_ series: String, in text: String) -> Double? {
        let prefix = series + " "
        return text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) }
    }

    /// Waits until the daemon has compared the table with the kernel `count` more times.
    func waitResyncs(_ count: Double, seconds: Double = 15) -> Bool {
        let start = sample("portwatch_resyncs_total") ?? 0
        return TestHTTP.waitUntil(seconds) { (sample("portwatch_resyncs_total") ?? 0) >= start + count }
    }

    /// History entries of one port as "action:reason" in order, read from the ledger.
    func history(port: UInt16, transport: String) -> [String] {
        let rows = Sqlite.query(dbPath, "SELECT coalesce(group_concat(action || ':' || reason, ' '), '') FROM (SELECT action, reason FROM history WHERE port = \(port) AND protocol = '\(transport)' ORDER BY id)")
        return (rows ?? "").split(separator: " ").map(String.init)
    }

    /// The portwatch_port_info line for a port, if any.
    func portInfo(port: UInt16, transport: String) -> String? {
        metrics().split(separator: "\n").first {
            $0.hasPrefix("portwatch_port_info{") && $0.contains("port=\"\(port)\"") && $0.contains("protocol=\"\(transport)\"")
        }.map(String.init)
    }

    func stop() -> Int32 {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        stderr.fileHandleForReading.readabilityHandler = nil
        return process.terminationStatus
    }

    deinit { _ = stop() }
}

/// Sockets made by the test process itself.
enum TestSockets {
    static let comm = (try? String(contentsOfFile: "/proc/self/comm", encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""

    /// A socket bound to `address` port 0 (and listening, for TCP). Returns fd and port.
    static func bound(_ address: String, udp: Bool = false, listen: Bool = true) -> (fd: Int32, port: UInt16) {
        let v6 = address.contains(":")
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        var storage = sockaddr_storage()
        var len: socklen_t
        if v6 {
            len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutableBytes(of: &storage) { raw in
                let sa = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                sa.pointee.sin6_family = sa_family_t(AF_INET6)
                inet_pton(AF_INET6, address, &sa.pointee.sin6_addr)
            }
        } else {
            len = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutableBytes(of: &storage) { raw in
                let sa = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                sa.pointee.sin_family = sa_family_t(AF_INET)
                inet_pton(AF_INET, address, &sa.pointee.sin_addr)
            }
        }
        withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                precondition(bind(fd, $0, len) == 0, "bind failed: \(errno)")
                _ = getsockname(fd, $0, &len)
            }
        }
        if !udp && listen { precondition(Glibc.listen(fd, 16) == 0) }
        let port = withUnsafeBytes(of: &storage) { raw in
            UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
        }
        return (fd, port)
    }
}
