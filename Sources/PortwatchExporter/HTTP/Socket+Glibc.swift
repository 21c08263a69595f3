import Glibc

/// A failed system call, with errno and its text.
public struct SocketError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let code: Int32
    public var description: String { "\(operation): \(String(cString: strerror(code)))" }
}

/// Every socket system call the HTTP listener makes. EINTR is retried here.
enum Sys {
    static func retrying(_ operation: String, _ body: () -> Int) throws -> Int {
        while true {
            let rc = body()
            if rc >= 0 { return rc }
            if errno == EINTR { continue }
            throw SocketError(operation: operation, code: errno)
        }
    }

    static func socket(family: Int32) throws -> Int32 {
        Int32(try retrying("socket") { Int(Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)) })
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws {
        var v = value
        _ = try retrying("setsockopt") { Int(setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))) }
    }

    static func bind(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) throws {
        _ = try retrying("bind") { Int(Glibc.bind(fd, address, length)) }
    }

    static func listen(_ fd: Int32, backlog: Int32) throws {
        _ = try retrying("listen") { Int(Glibc.listen(fd, backlog)) }
    }

    /// nil when no connection is waiting.
    static func accept(_ fd: Int32) throws -> Int32? {
        while true {
            let c = Glibc.accept(fd, nil, nil)
            if c >= 0 {
                _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
                _ = fcntl(c, F_SETFD, FD_CLOEXEC)
                return c
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EAGAIN, EWOULDBLOCK: return nil
            default: throw SocketError(operation: "accept", code: errno)
            }
        }
    }

    /// Bytes read (0 at end of stream), or nil if nothing is available yet.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            throw SocketError(operation: "read", code: errno)
        }
    }

    /// Bytes written, or 0 if the socket cannot take more now.
    static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws -> Int {
        while true {
            let n = send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return 0 }
            throw SocketError(operation: "write", code: errno)
        }
    }

    static func poll(_ fds: inout [pollfd], timeoutMs: Int32) throws -> Int {
        try retrying("poll") { Int(Glibc.poll(&fds, nfds_t(fds.count), timeoutMs)) }
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }
}
