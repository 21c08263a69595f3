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

/// The real `portwatch` binary, on a temporary DB and a loopback port (`DaemonProcess`),
/// with the tests' expectations: a daemon that dies or a scrape that fails is recorded as an
/// issue with the daemon's log.
final class DaemonHarness {
    let daemon: DaemonProcess
    var port: UInt16 { daemon.port }
    var dbPath: String { daemon.dbPath }
    var process: Process { daemon.process }
    var log: String { daemon.log }

    static var binary: String {
        ProcessInfo.processInfo.environment["PORTWATCH_BINARY"] ?? TestBinaries.path("portwatch")
    }

    /// `launcher` runs in front of the binary (e.g. `setpriv` with a smaller capability set) and
    /// must exec it, so that the process is the daemon.
    init(arguments: [String] = [], dbPath: String? = nil, environment: [String: String] = [:], launcher: [String] = []) throws {
        daemon = try DaemonProcess(binary: Self.binary, arguments: arguments, dbPath: dbPath, environment: environment, launcher: launcher)
    }

    /// Waits for /-/ready; records a failure with the daemon's log if it never comes.
    func waitReady(seconds: Double = 30) -> Bool {
        let ok = daemon.waitReady(seconds: seconds)
        if !ok { Issue.record("portwatch did not become ready; log:\n\(log)") }
        return ok
    }

    /// One scrape's text. A daemon that has died, or a scrape that is not answered with 200,
    /// is a test failure (recorded here, with the log), never an empty page that would make
    /// every "the port is gone" assertion pass.
    func metrics(accept: String? = nil) -> String {
        let headers = accept.map { ["Accept": $0] } ?? [:]
        guard process.isRunning else {
            Issue.record("portwatch is not running (exit \(process.terminationStatus)); log:\n\(log)")
            return ""
        }
        do {
            let response = try daemon.get("/metrics", headers: headers)
            if response.status != 200 { Issue.record("GET /metrics answered \(response.status): \(response.text)") }
            return response.text
        } catch {
            Issue.record("GET /metrics failed: \(error); log:\n\(log)")
            return ""
        }
    }

    func scrape() -> Scrape { Scrape(metrics()) }

    /// The value of one series, named exactly as exposed (`name{label="v",...}` or `name`).
    func sample(_ series: String) -> Double? { scrape().value(series) }

    /// Waits until the daemon has compared the table with the kernel `count` more times.
    func waitResyncs(_ count: Double, seconds: Double = 15) -> Bool {
        let start = sample("portwatch_resyncs_total") ?? 0
        return TestHTTP.waitUntil(seconds) { (sample("portwatch_resyncs_total") ?? 0) >= start + count }
    }

    /// History entries of one port as "action:reason" in order, read from the ledger.
    func history(port: UInt16, transport: String) -> [String] {
        let rows = Sqlite.query(dbPath, "SELECT coalesce(group_concat(action || ':' || reason, ' '), '') FROM (SELECT action, reason FROM history WHERE action != 'transient' AND port = \(port) AND protocol = '\(transport)' ORDER BY id)")
        return (rows ?? "").split(separator: " ").map(String.init)
    }

    /// The portwatch_port_info line for a port, if any.
    func portInfo(port: UInt16, transport: String) -> String? {
        scrape().samples("portwatch_port_info").first { $0.label("port") == "\(port)" && $0.label("protocol") == transport }?.line
    }

    /// Signals the test sent itself (SIGKILL in a crash test): such an end is not a failure.
    var expectedSignals: Set<Int32> = []

    func stop() -> Int32 {
        if !process.isRunning, process.terminationReason == .uncaughtSignal, !expectedSignals.contains(process.terminationStatus) {
            Issue.record("portwatch died of signal \(process.terminationStatus) before the test stopped it; log:\n\(log)")
        }
        let status = daemon.stop()
        for report in ["AddressSanitizer", "ThreadSanitizer", "LeakSanitizer", "Fatal error:"] where log.contains(report) {
            Issue.record("portwatch's log has a \(report) report:\n\(log)")
        }
        return status
    }

    deinit { _ = stop() }
}

/// Waiting on what /metrics shows, each with a deadline (never a fixed sleep).
extension DaemonHarness {
    static let deadline = 5.0

    /// The port's series once it shows (and contains every one of `parts`), or nil at the deadline.
    func waitShown(_ port: UInt16, _ transport: String, _ parts: [String] = []) -> String? {
        var found: String?
        _ = TestHTTP.waitUntil(Self.deadline) {
            found = portInfo(port: port, transport: transport)
            return found.map { line in parts.allSatisfy { line.contains($0) } } ?? false
        }
        return found.flatMap { line in parts.allSatisfy { line.contains($0) } ? line : nil }
    }

    func waitGone(_ port: UInt16, _ transport: String) -> Bool {
        TestHTTP.waitUntil(Self.deadline) { portInfo(port: port, transport: transport) == nil }
    }

    /// Waits until everything the kernel reported so far has reached /metrics: a marker
    /// listener opened now shows only after every earlier event has been applied.
    func barrier() -> Bool {
        let (fd, port) = TestSockets.bound("127.0.0.1")
        defer { close(fd) }
        return waitShown(port, "tcp") != nil
    }
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
