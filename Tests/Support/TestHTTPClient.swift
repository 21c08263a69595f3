import Foundation
import Glibc

/// A plain HTTP/1.1 client on POSIX sockets for tests: it shows exactly what the server sent.
public struct TestHTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]
    public var text: String { String(decoding: body, as: UTF8.self) }
}

public enum TestHTTP {
    /// Connects to host:port (IPv4 or IPv6 literal). Returns the fd.
    public static func connect(host: String = "127.0.0.1", port: UInt16) throws -> Int32 {
        let v6 = host.contains(":")
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc: Int32
        if v6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &sa.sin6_addr)
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &sa.sin_addr)
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: e) ?? .EIO)
        }
        return fd
    }

    public static func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// Reads one response (Content-Length framed). nil if the server closed first.
    public static func readResponse(_ fd: Int32, head: Bool = false) -> TestHTTPResponse? {
        var data: [UInt8] = takeLeftover(fd)
        var buffer = [UInt8](repeating: 0, count: 65536)
        func fill() -> Bool {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return false }
            data += buffer[0..<n]
            return true
        }
        var headEnd: Int?
        while headEnd == nil {
            if let r = findCRLFCRLF(data) { headEnd = r; break }
            if !fill() { return nil }
        }
        let headText = String(decoding: data[0..<headEnd!], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let start = headEnd! + 4
        if !head, headers["transfer-encoding"]?.lowercased() == "chunked" {
            // Servers such as Prometheus stream large answers in chunks; read to the last one.
            var body: [UInt8] = []
            var at = start
            while true {
                while findCRLF(data, from: at) == nil { if !fill() { return nil } }
                guard let lineEnd = findCRLF(data, from: at),
                      let size = Int(String(decoding: data[at..<lineEnd], as: UTF8.self).split(separator: ";")[0], radix: 16) else { return nil }
                while data.count < lineEnd + 2 + size + 2 { if !fill() { return nil } }
                body += data[(lineEnd + 2)..<(lineEnd + 2 + size)]
                at = lineEnd + 2 + size + 2
                if size == 0 { break }
            }
            return TestHTTPResponse(status: status, headers: headers, body: body)
        }
        let length = head ? 0 : Int(headers["content-length"] ?? "0") ?? 0
        while data.count < start + length { if !fill() { break } }
        let body = Array(data[start..<min(data.count, start + length)])
        keepLeftover(fd, Array(data[min(data.count, start + length)...]))
        return TestHTTPResponse(status: status, headers: headers, body: body)
    }

    /// Bytes read past the previous response on a connection (pipelined responses).
    nonisolated(unsafe) private static var leftover: [Int32: [UInt8]] = [:]
    private static let leftoverLock = NSLock()

    private static func takeLeftover(_ fd: Int32) -> [UInt8] {
        leftoverLock.withLock { leftover.removeValue(forKey: fd) ?? [] }
    }

    private static func keepLeftover(_ fd: Int32, _ bytes: [UInt8]) {
        leftoverLock.withLock { leftover[fd] = bytes.isEmpty ? nil : bytes }
    }

    private static func findCRLF(_ d: [UInt8], from: Int) -> Int? {
        guard d.count >= from + 2 else { return nil }
        for i in from..<(d.count - 1) where d[i] == 13 && d[i + 1] == 10 { return i }
        return nil
    }

    private static func findCRLFCRLF(_ d: [UInt8]) -> Int? {
        guard d.count >= 4 else { return nil }
        for i in 0...(d.count - 4) where d[i] == 13 && d[i + 1] == 10 && d[i + 2] == 13 && d[i + 3] == 10 { return i }
        return nil
    }

    /// One request on a fresh connection.
    public static func get(port: UInt16, path: String, host: String = "127.0.0.1", headers: [String: String] = [:],
                           method: String = "GET") throws -> TestHTTPResponse {
        let fd = try connect(host: host, port: port)
        defer { close(fd) }
        var request = "\(method) \(path) HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        for (k, v) in headers { request += "\(k): \(v)\r\n" }
        send(fd, request + "\r\n")
        guard let response = readResponse(fd, head: method == "HEAD") else { throw POSIXError(.ECONNRESET) }
        return response
    }

    /// Waits until `condition` holds, polling every 20 ms, up to `seconds`.
    public static func waitUntil(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(20_000)
        }
        return try condition()
    }

    /// A TCP port nobody listens on right now.
    public static func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = bind(fd, $0, len)
                _ = getsockname(fd, $0, &len)
            }
        }
        return UInt16(bigEndian: sa.sin_port)
    }
}
