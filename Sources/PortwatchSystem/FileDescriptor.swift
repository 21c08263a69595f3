import Glibc

/// The one owner of an open file descriptor: whoever holds it closes it, once, with
/// `close()`. Dropping one that is still open is a bug, caught in debug builds (as
/// swift-nio's BaseSocket does). The number is lent out only inside `withUnsafeDescriptor`,
/// for poll(2) and C libraries, as swift-nio's `withUnsafeHandle` lends its handle.
public final class FileDescriptor: @unchecked Sendable, Hashable {
    let rawValue: Int32
    private var isOpen = true

    /// Takes ownership of `rawValue`.
    public init(owning rawValue: Int32) {
        self.rawValue = rawValue
    }

    deinit {
        assert(!isOpen, "file descriptor \(rawValue) dropped without close()")
    }

    /// Closes it. Idempotent.
    public func close() {
        guard isOpen else { return }
        isOpen = false
        _ = Glibc.close(rawValue)
    }

    /// Lends the descriptor's number to `body` (a C library's call, a pollfd); it must not be
    /// kept beyond the descriptor's `close()`.
    public func withUnsafeDescriptor<T>(_ body: (Int32) throws -> T) rethrows -> T { try body(rawValue) }

    /// A poll(2) entry asking for `events` on this descriptor.
    public func pollRequest(_ events: Int32) -> pollfd { pollfd(fd: rawValue, events: Int16(events), revents: 0) }

    /// Whether a poll(2) result is this descriptor's.
    public func answers(_ entry: pollfd) -> Bool { entry.fd == rawValue }

    public static func == (a: FileDescriptor, b: FileDescriptor) -> Bool { a === b }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    // MARK: Opening

    public static func open(_ path: String, _ flags: Int32) throws -> FileDescriptor {
        FileDescriptor(owning: try Syscall.valueOrErrno("open \(path)") { Glibc.open(path, flags | O_CLOEXEC) })
    }

    /// A socket, close-on-exec (and non-blocking when asked).
    public static func socket(_ domain: Int32, _ type: Int32, _ proto: Int32 = 0, nonBlocking: Bool = false) throws -> FileDescriptor {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        return FileDescriptor(owning: try Syscall.valueOrErrno("socket") { Glibc.socket(domain, type | flags, proto) })
    }

    /// A pipe whose read end does not block (a self-pipe to wake a poll loop).
    public static func wakePipe() throws -> (read: FileDescriptor, write: FileDescriptor) {
        var ends: [Int32] = [-1, -1]
        try Syscall.valueOrErrno("pipe") { pipe(&ends) }
        let pair = (read: FileDescriptor(owning: ends[0]), write: FileDescriptor(owning: ends[1]))
        do {
            try pair.read.setNonBlocking()
            try pair.read.setCloseOnExec()
            try pair.write.setCloseOnExec()
        } catch {
            pair.read.close()
            pair.write.close()
            throw error
        }
        return pair
    }

    public func setNonBlocking() throws {
        let flags = try Syscall.valueOrErrno("fcntl") { fcntl(rawValue, F_GETFL) }
        try Syscall.valueOrErrno("fcntl") { fcntl(rawValue, F_SETFL, flags | O_NONBLOCK) }
    }

    public func setCloseOnExec() throws {
        try Syscall.valueOrErrno("fcntl") { fcntl(rawValue, F_SETFD, FD_CLOEXEC) }
    }

    // MARK: Sockets

    public func setOption(_ level: Int32, _ name: Int32, _ value: Int32) throws {
        var v = value
        try Syscall.valueOrErrno("setsockopt") { setsockopt(rawValue, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) }
    }

    public func bind(_ address: UnsafePointer<sockaddr>, _ length: socklen_t) throws {
        try Syscall.valueOrErrno("bind") { Glibc.bind(rawValue, address, length) }
    }

    public func listen(backlog: Int32) throws {
        try Syscall.valueOrErrno("listen") { Glibc.listen(rawValue, backlog) }
    }

    /// The next waiting connection (non-blocking, close-on-exec), or nil when none waits.
    public func accept() throws -> FileDescriptor? {
        while true {
            let accepted: Int32?
            do {
                accepted = try Syscall.valueOrWouldBlock("accept") { Glibc.accept(rawValue, nil, nil) }
            } catch let error as SystemError where error.errno == ECONNABORTED {
                continue
            }
            guard let accepted else { return nil }
            let connection = FileDescriptor(owning: accepted)
            do {
                try connection.setNonBlocking()
                try connection.setCloseOnExec()
            } catch {
                connection.close()
                throw error
            }
            return connection
        }
    }

    /// The local port (IPv4 and IPv6 keep it at the same offset).
    public var localPort: UInt16 {
        var sa = sockaddr_in6()
        var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
        withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(rawValue, $0, &len) } }
        return UInt16(bigEndian: sa.sin6_port)
    }

    // MARK: Reading and writing

    /// Bytes read (0 at end of stream), or nil if nothing is available yet.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        try Syscall.valueOrWouldBlock("read") { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Bytes sent (never raising SIGPIPE), or 0 if the socket cannot take more now. `more`
    /// says another send follows at once (MSG_MORE): TCP holds a short piece to fill a segment
    /// with what comes next instead of sending it alone.
    public func send(_ bytes: UnsafeRawBufferPointer, more: Bool = false) throws -> Int {
        let flags = Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0)
        return try Syscall.valueOrWouldBlock("write") { Glibc.send(rawValue, bytes.baseAddress, bytes.count, flags) } ?? 0
    }

    /// Writes to a pipe or file; nil if it is full.
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer) throws -> Int? {
        try Syscall.valueOrWouldBlock("write") { Glibc.write(rawValue, bytes.baseAddress, bytes.count) }
    }

    /// Writes all of `bytes` to a blocking descriptor (standard output), retrying partial
    /// writes; throws when the reader went away (EPIPE) or the write fails.
    public static func writeAll(_ bytes: UnsafeRawBufferPointer, to fd: Int32) throws {
        var offset = 0
        while offset < bytes.count {
            offset += try Syscall.valueOrErrno("write") { Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
        }
    }

    /// Writes a message to standard error (nothing more to do when that fails).
    public static func writeStandardError(_ text: String) {
        var text = text
        text.withUTF8 { try? writeAll(UnsafeRawBufferPointer($0), to: 2) }
    }

    /// Reads up to `buffer.count` bytes of a small file at once (a /proc entry), opening and
    /// closing it; nil when it cannot be opened.
    public static func read(path: String, into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard let file = try? FileDescriptor.open(path, O_RDONLY) else { return nil }
        defer { file.close() }
        return try? Syscall.valueOrErrno("read \(path)") { Glibc.read(file.rawValue, buffer.baseAddress, buffer.count) }
    }

    /// How many entries a directory has, "." and ".." left out (the open descriptors of a
    /// process, in /proc/PID/fd); nil when it cannot be opened. No names are kept.
    public static func countEntries(directory path: String) -> Int? {
        guard let directory = opendir(path) else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { name in
                name[0] == UInt8(ascii: ".") && (name[1] == 0 || (name[1] == UInt8(ascii: ".") && name[2] == 0))
            }
            if !isDot { count += 1 }
        }
        return count
    }

    /// The whole of a file, as text (a configuration file). Throws SystemError, whose errno
    /// says why (SystemError.text gives it as words).
    public static func readText(path: String) throws -> String {
        String(decoding: try contents(of: path), as: UTF8.self)
    }

    /// Bytes received (blocking).
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try Syscall.valueOrErrno("recv") { Glibc.recv(rawValue, buffer.baseAddress, buffer.count, 0) }
    }
}
