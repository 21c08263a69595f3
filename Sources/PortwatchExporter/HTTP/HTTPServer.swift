import Foundation
import Glibc
import Logging

/// A small HTTP/1.1 server on POSIX sockets: one thread, one poll loop, keep-alive,
/// pipelining, limits on header size, idle and read time, and concurrent connections.
/// Handlers run on the server thread and must be quick (a scrape is a few milliseconds).
public final class HTTPServer: @unchecked Sendable {
    public struct Limits: Sendable {
        public var maxConnections = 256
        public var idleTimeout: Double = 60
        /// Time allowed to receive one whole request once its first byte arrived.
        public var readTimeout: Double = 10
        public var maxHeaderBytes = 8192
        public init() {}
    }

    public typealias Handler = @Sendable (HTTPRequest) -> HTTPResponse

    private final class Connection {
        let fd: Int32
        var input: [UInt8] = []
        var output: [UInt8] = []
        var written = 0
        var lastActivity: Double
        var requestStarted: Double?
        var closeAfterWrite = false
        var tls: TLSStream?

        init(fd: Int32, now: Double) {
            self.fd = fd
            lastActivity = now
        }
    }

    public let addresses: [ListenAddress]
    private let limits: Limits
    private let handler: Handler
    private let logger: Logger
    private let parser: HTTPParser
    private let tls: TLSContext?
    private var listeners: [Int32] = []
    private var connections: [Int32: Connection] = [:]
    private var wakePipe: [Int32] = [-1, -1]
    private var thread: Thread?
    private let stopped = NSCondition()
    private var running = false

    /// Opens every listening socket now, so that a taken port fails at start-up.
    public init(addresses: [ListenAddress], limits: Limits = Limits(), tls: TLSSettings? = nil, logger: Logger,
                handler: @escaping Handler) throws {
        self.addresses = addresses
        self.limits = limits
        self.handler = handler
        self.logger = logger
        parser = HTTPParser(maxHeaderBytes: limits.maxHeaderBytes)
        self.tls = try tls.map(TLSContext.init)
        for address in addresses {
            do { listeners.append(try address.openListener()) } catch let error as SocketError {
                listeners.forEach(Sys.close)
                let hint = error.code == EADDRINUSE ? ": another process listens there; choose another --web.listen-address"
                    : error.code == EADDRNOTAVAIL ? ": no interface has that address" : ""
                throw SocketError(operation: "cannot listen on \(address) (\(error.description))\(hint)", code: error.code)
            }
        }
        guard pipe(&wakePipe) == 0 else { throw SocketError(operation: "pipe", code: errno) }
        _ = fcntl(wakePipe[0], F_SETFL, O_NONBLOCK)
    }

    /// The ports actually bound (useful with port 0).
    public var boundPorts: [UInt16] {
        listeners.map { fd in
            var sa = sockaddr_in6()
            var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &len) } }
            return UInt16(bigEndian: sa.sin6_port) // sin_port sits at the same offset
        }
    }

    public func start() {
        running = true
        let thread = Thread { [self] in run() }
        thread.name = "portwatch-http"
        self.thread = thread
        thread.start()
    }

    /// Stops the loop, closes every socket and waits for the thread to end.
    public func stop() {
        stopped.lock()
        guard running else { stopped.unlock(); return }
        running = false
        var byte: UInt8 = 1
        _ = Glibc.write(wakePipe[1], &byte, 1)
        while thread != nil { stopped.wait() }
        stopped.unlock()
    }

    private func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            stopped.lock()
            let keepGoing = running
            stopped.unlock()
            guard keepGoing else { break }

            var fds = [pollfd(fd: wakePipe[0], events: Int16(POLLIN), revents: 0)]
            fds += listeners.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            for c in connections.values {
                let wantsWrite = c.written < c.output.count || c.tls?.wantsWrite == true
                fds.append(pollfd(fd: c.fd, events: Int16(wantsWrite ? POLLOUT : POLLIN), revents: 0))
            }
            do { _ = try Sys.poll(&fds, timeoutMs: 250) } catch {
                logger.error("HTTP poll failed", metadata: ["error": "\(error)"])
                break
            }
            let t = now()
            for p in fds where p.revents != 0 {
                if p.fd == wakePipe[0] { continue }
                if listeners.contains(p.fd) { acceptAll(p.fd, now: t); continue }
                guard let c = connections[p.fd] else { continue }
                if p.revents & Int16(POLLOUT) != 0 {
                    if c.written < c.output.count { flush(c, now: t) } else { read(c, buffer: &buffer, now: t) }
                } else if p.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { read(c, buffer: &buffer, now: t) }
            }
            expire(now: t)
            tls?.reloadIfChanged(now: t, logger: logger)
        }
        for c in connections.values { Sys.close(c.fd) }
        connections.removeAll()
        listeners.forEach(Sys.close)
        listeners.removeAll()
        wakePipe.forEach { Sys.close($0) }
        stopped.lock()
        thread = nil
        stopped.broadcast()
        stopped.unlock()
    }

    private func acceptAll(_ listener: Int32, now: Double) {
        while true {
            let fd: Int32?
            do { fd = try Sys.accept(listener) } catch {
                logger.warning("accept failed", metadata: ["error": "\(error)"])
                return
            }
            guard let fd else { return }
            if connections.count >= limits.maxConnections, let victim = evictionCandidate() {
                // Full: make room by closing the connection that has waited longest without
                // completing a request (slow or idle clients), so that one slowloris cannot
                // lock out a scrape.
                close(victim)
            }
            if connections.count >= limits.maxConnections, tls != nil {
                Sys.close(fd) // no plain-text answer to a TLS client
                continue
            }
            if connections.count >= limits.maxConnections {
                // Over the cap and nobody to evict: say so and hang up, without keeping any state.
                var response = HTTPResponse(status: 503, text: "too many connections\n")
                response.headers.append(("Retry-After", "1"))
                let bytes = response.serialize(keepAlive: false)
                _ = bytes.withUnsafeBytes { try? Sys.write(fd, $0) }
                Sys.close(fd)
                continue
            }
            let connection = Connection(fd: fd, now: now)
            if let tls {
                guard let stream = TLSStream(context: tls.context, fd: fd) else { Sys.close(fd); continue }
                connection.tls = stream
            }
            connections[fd] = connection
        }
    }

    /// The connection to close when full: the oldest incomplete request, else the longest idle;
    /// never one that is being answered.
    private func evictionCandidate() -> Connection? {
        let quiet = connections.values.filter { $0.output.isEmpty }
        return quiet.filter { $0.requestStarted != nil }.min { $0.requestStarted! < $1.requestStarted! }
            ?? quiet.min { $0.lastActivity < $1.lastActivity }
    }

    private func read(_ c: Connection, buffer: inout [UInt8], now: Double) {
        var received = 0
        if let stream = c.tls {
            // Drain OpenSSL: decrypted bytes may wait inside it with no socket event to come.
            reading: while true {
                switch buffer.withUnsafeMutableBytes({ stream.read(into: $0) }) {
                case .bytes(let n):
                    c.input.append(contentsOf: buffer[0..<n])
                    received += n
                    if !stream.pending && c.input.count > limits.maxHeaderBytes * 4 { break reading }
                case .wait: break reading
                case .closed: close(c); return
                }
            }
            guard received > 0 else { return }
        } else {
            let n: Int?
            do { n = try buffer.withUnsafeMutableBytes { try Sys.read(c.fd, into: $0) } } catch {
                close(c)
                return
            }
            guard let n else { return }
            guard n > 0 else { close(c); return }
            c.input.append(contentsOf: buffer[0..<n])
        }
        c.lastActivity = now
        if c.requestStarted == nil { c.requestStarted = now }
        process(c, now: now)
    }

    /// Answers every complete request in the input, in order.
    private func process(_ c: Connection, now: Double) {
        while !c.closeAfterWrite && !c.input.isEmpty {
            switch parser.parse(c.input) {
            case .incomplete:
                flush(c, now: now)
                return
            case .failure(let status):
                var response = HTTPResponse(status: status, text: HTTPResponse.reason(status) + "\n")
                response.close = true
                queue(response, on: c, keepAlive: false)
                c.input.removeAll()
            case .request(let request, let consumed):
                c.input.removeFirst(consumed)
                c.requestStarted = c.input.isEmpty ? nil : now
                var response = handler(request)
                if request.method == "HEAD" { response.omitBody = true }
                let keepAlive = request.keepAlive && !response.close
                queue(response, on: c, keepAlive: keepAlive)
            }
        }
        flush(c, now: now)
    }

    private func queue(_ response: HTTPResponse, on c: Connection, keepAlive: Bool) {
        c.output += response.serialize(keepAlive: keepAlive)
        if !keepAlive { c.closeAfterWrite = true }
    }

    private func flush(_ c: Connection, now: Double) {
        while c.written < c.output.count {
            var n = 0
            if let stream = c.tls {
                switch c.output.withUnsafeBytes({ stream.write(UnsafeRawBufferPointer(rebasing: $0[c.written...])) }) {
                case .bytes(let written): n = written
                case .wait: return
                case .closed: close(c); return
                }
            } else {
                do { n = try c.output.withUnsafeBytes { try Sys.write(c.fd, UnsafeRawBufferPointer(rebasing: $0[c.written...])) } } catch {
                    close(c)
                    return
                }
            }
            if n == 0 { return } // socket full: POLLOUT will call again
            c.written += n
            c.lastActivity = now
        }
        c.output.removeAll(keepingCapacity: true)
        c.written = 0
        if c.closeAfterWrite { close(c) }
    }

    private func expire(now: Double) {
        for c in Array(connections.values) {
            if let started = c.requestStarted, now - started > limits.readTimeout, c.output.isEmpty {
                var response = HTTPResponse(status: 408, text: "request timeout\n")
                response.close = true
                queue(response, on: c, keepAlive: false)
                c.input.removeAll()
                flush(c, now: now)
            } else if now - c.lastActivity > limits.idleTimeout {
                close(c)
            }
        }
    }

    private func close(_ c: Connection) {
        guard connections.removeValue(forKey: c.fd) != nil else { return }
        Sys.close(c.fd)
    }
}
