import Foundation
import Glibc

/// The real `portwatch` binary, started on a ledger of its own and a loopback port it picks
/// itself (it binds port 0 and logs the port it got, so no other process can take a port
/// picked for it in between), its log kept in memory. The integration tests and the
/// benchmark both start the daemon through it.
public final class DaemonProcess: @unchecked Sendable {
    public let process = Process()
    public let dbPath: String
    private let stderr = Pipe()
    private let logBox = LogBox()
    private let portLock = NSLock()
    private var boundPortValue: UInt16 = 0

    private final class LogBox: @unchecked Sendable {
        let lock = NSLock()
        var text = ""
    }

    /// `launcher` runs in front of the binary (e.g. `setpriv` with a smaller capability set)
    /// and must exec it, so that the process is the daemon.
    public init(binary: String, arguments: [String] = [], dbPath: String? = nil, environment: [String: String] = [:],
                launcher: [String] = []) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("portwatch-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        self.dbPath = dbPath ?? dir + "/portwatch.db"
        let command = launcher + [binary, "--web.listen-address", "127.0.0.1:0", "--db.path", self.dbPath] + arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        let box = logBox
        stderr.fileHandleForReading.readabilityHandler = { handle in
            let chunk = String(decoding: handle.availableData, as: UTF8.self)
            box.lock.withLock { box.text += chunk }
        }
        try process.run()
    }

    public var pid: Int32 { process.processIdentifier }

    /// Everything the daemon wrote to stderr so far.
    public var log: String { logBox.lock.withLock { logBox.text } }

    /// The port of its HTTP listener, from its "listening" log line (0 if it never got that far).
    public var port: UInt16 {
        if let known = portLock.withLock({ boundPortValue == 0 ? nil : boundPortValue }) { return known }
        var found: UInt16 = 0
        _ = TestHTTP.waitUntil(30) {
            if let range = log.range(of: " ports=") {
                found = UInt16(log[range.upperBound...].prefix { $0.isNumber }) ?? 0
            }
            return found != 0 || !process.isRunning
        }
        portLock.withLock { boundPortValue = found }
        return found
    }

    /// Waits up to `seconds` for /-/ready to answer 200; false at the deadline or when the daemon exited.
    public func waitReady(seconds: Double = 30) -> Bool {
        var exited = false
        return TestHTTP.waitUntil(seconds) {
            guard process.isRunning else { exited = true; return true }  // no point waiting longer
            return (try? get("/-/ready").status) == 200
        } && !exited
    }

    /// One request on a fresh loopback connection.
    public func get(_ path: String, headers: [String: String] = [:]) throws -> TestHTTPResponse {
        try TestHTTP.get(port: port, path: path, headers: headers)
    }

    /// SIGTERM, then waits for the exit; returns the exit status (or the signal that ended it).
    @discardableResult
    public func stop() -> Int32 {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        stderr.fileHandleForReading.readabilityHandler = nil
        return process.terminationStatus
    }
}
