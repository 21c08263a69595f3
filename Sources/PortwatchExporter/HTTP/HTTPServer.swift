import FoundationEssentials
import Glibc
import Logging
import PortwatchSystem

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

    /// Bytes waiting to be written, kept as the pieces the responses were made of.
    struct Outbox {
        private var chunks: [ArraySlice<UInt8>] = []
        /// The chunk being written and how much of it is out.
        private var first = 0
        private var offset = 0

        var isEmpty: Bool { first == chunks.count }

        mutating func append(_ parts: [ArraySlice<UInt8>]) {
            chunks += parts.lazy.filter { !$0.isEmpty }
        }

        /// Writes through `write` (bytes, whether more follow; returns bytes taken, 0 when full)
        /// until it is all out or the writer takes no more. Returns the bytes written.
        mutating func drain(_ write: (UnsafeRawBufferPointer, Bool) throws -> Int) rethrows -> Int {
            var total = 0
            while first < chunks.count {
                let more = first + 1 < chunks.count
                let n = try chunks[first].withUnsafeBytes { try write(UnsafeRawBufferPointer(rebasing: $0[offset...]), more) }
                if n == 0 { return total }
                total += n
                offset += n
                if offset == chunks[first].count {
                    first += 1
                    offset = 0
                }
            }
            chunks.removeAll()
            first = 0
            return total
        }
    }

    private final class Connection {
        let socket: FileDescriptor
        var input: [UInt8] = []
        var output = Outbox()
        var lastActivity: Double
        var requestStarted: Double?
        var closeAfterWrite = false
        var tls: TLSStream?

        init(socket: FileDescriptor, now: Double) {
            self.socket = socket
            lastActivity = now
        }
    }

    public let addresses: [ListenAddress]
    private let limits: Limits
    /// Deadlines (request, idle) are kept on its monotonic clock.
    private let clock: TimeSource
    private let handler: Handler
    private let logger: Logger
    private let parser: HTTPParser
    private let tls: TLSContext?
    private var listeners: [FileDescriptor] = []
    /// Open connections by raw descriptor (what poll reports).
    private var connections: [Int32: Connection] = [:]
    private let wake: (read: FileDescriptor, write: FileDescriptor)
    private var threadRunning = false
    private let stopped = Condition()
    private var running = false

    /// Opens every listening socket now, so that a taken port fails at start-up.
    public init(addresses: [ListenAddress], limits: Limits = Limits(), tls: TLSSettings? = nil, clock: TimeSource = SystemClock(),
                logger: Logger, handler: @escaping Handler) throws {
        self.addresses = addresses
        self.clock = clock
        self.limits = limits
        self.handler = handler
        self.logger = logger
        parser = HTTPParser(maxHeaderBytes: limits.maxHeaderBytes)
        self.tls = try tls.map(TLSContext.init)
        var opened: [FileDescriptor] = []
        for address in addresses {
            do { opened.append(try address.openListener()) } catch let error as SystemError {
                opened.forEach { $0.close() }
                let hint = error.errno == EADDRINUSE ? ": another process listens there; choose another --web.listen-address"
                    : error.errno == EADDRNOTAVAIL ? ": no interface has that address" : ""
                throw SystemError("cannot listen on \(address) (\(error.description))\(hint)", errno: error.errno)
            }
        }
        do { wake = try FileDescriptor.wakePipe() } catch {
            opened.forEach { $0.close() }
            throw error
        }
        listeners = opened
    }

    /// A server that never ran (start-up failed after it was made) still closes what it opened;
    /// after `stop`, everything is closed already (closing again is a no-op).
    deinit {
        connections.values.forEach { $0.socket.close() }
        listeners.forEach { $0.close() }
        wake.read.close()
        wake.write.close()
    }

    /// The ports actually bound (useful with port 0).
    public var boundPorts: [UInt16] {
        listeners.map(\.localPort)
    }

    public func start() {
        running = true
        stopped.withLock { threadRunning = true }
        SystemThread.start(name: "portwatch-http") { [self] in run() }
    }

    /// Stops the loop, closes every socket and waits for the thread to end.
    public func stop() {
        stopped.lock()
        guard running else { stopped.unlock(); return }
        running = false
        _ = withUnsafeBytes(of: UInt8(1)) { try? wake.write.write($0) }
        while threadRunning { stopped.wait() }
        stopped.unlock()
    }

    private func now() -> Double { clock.monotonic() }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            stopped.lock()
            let keepGoing = running
            stopped.unlock()
            guard keepGoing else { break }

            var fds = [wake.read.pollRequest(Int32(POLLIN))]
            fds += listeners.map { $0.pollRequest(Int32(POLLIN)) }
            for c in connections.values {
                let wantsWrite = !c.output.isEmpty || c.tls?.wantsWrite == true
                fds.append(c.socket.pollRequest(Int32(wantsWrite ? POLLOUT : POLLIN)))
            }
            do { _ = try Syscall.poll(&fds, timeoutMs: pollTimeout(now: now())) } catch {
                logger.error("HTTP poll failed", metadata: ["error": "\(error)"])
                break
            }
            let t = now()
            for p in fds where p.revents != 0 {
                if wake.read.answers(p) { continue }
                if let listener = listeners.first(where: { $0.answers(p) }) { acceptAll(listener, now: t); continue }
                guard let c = connections[p.fd] else { continue }
                if p.revents & Int16(POLLOUT) != 0 {
                    if !c.output.isEmpty { flush(c, now: t) } else { read(c, buffer: &buffer, now: t) }
                } else if p.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { read(c, buffer: &buffer, now: t) }
            }
            expire(now: t)
            tls?.reloadIfChanged(now: t, logger: logger)
        }
        for c in connections.values { c.socket.close() }
        connections.removeAll()
        listeners.forEach { $0.close() }
        listeners.removeAll()
        wake.read.close()
        wake.write.close()
        stopped.lock()
        threadRunning = false
        stopped.broadcast()
        stopped.unlock()
    }

    private func acceptAll(_ listener: FileDescriptor, now: Double) {
        while true {
            let accepted: FileDescriptor?
            do { accepted = try listener.accept() } catch {
                logger.warning("accept failed", metadata: ["error": "\(error)"])
                return
            }
            guard let socket = accepted else { return }
            if connections.count >= limits.maxConnections, let victim = evictionCandidate() {
                // Full: make room by closing the connection that has waited longest without
                // completing a request (slow or idle clients), so that one slowloris cannot
                // lock out a scrape.
                close(victim)
            }
            if connections.count >= limits.maxConnections, tls != nil {
                socket.close() // no plain-text answer to a TLS client
                continue
            }
            if connections.count >= limits.maxConnections {
                // Over the cap and nobody to evict: say so and hang up, without keeping any state.
                var response = HTTPResponse(status: 503, text: "too many connections\n")
                response.headers.append(("Retry-After", "1"))
                let bytes = Array(response.serialize(keepAlive: false).joined())
                _ = bytes.withUnsafeBytes { try? socket.send($0) }
                socket.close()
                continue
            }
            let connection = Connection(socket: socket, now: now)
            if let tls {
                guard let stream = socket.withUnsafeDescriptor({ TLSStream(context: tls, fd: $0) }) else { socket.close(); continue }
                connection.tls = stream
            }
            connections[socket.withUnsafeDescriptor { $0 }] = connection
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
            do { n = try buffer.withUnsafeMutableBytes { try c.socket.read(into: $0) } } catch {
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
        c.output.append(response.serialize(keepAlive: keepAlive))
        if !keepAlive { c.closeAfterWrite = true }
    }

    private struct Closed: Error {}

    private func flush(_ c: Connection, now: Double) {
        let socket = c.socket, tls = c.tls
        let written: Int
        do {
            written = try c.output.drain { bytes, more in
                guard let tls else { return try socket.send(bytes, more: more) }
                switch tls.write(bytes) {
                case .bytes(let n): return n
                case .wait: return 0
                case .closed: throw Closed()
                }
            }
        } catch {
            close(c)
            return
        }
        if written > 0 { c.lastActivity = now }
        // Not all out: the socket is full and POLLOUT calls again.
        if c.output.isEmpty && c.closeAfterWrite { close(c) }
    }

    /// Milliseconds until the loop has something to do that no client starts: a connection's
    /// read or idle timeout, or the TLS files' check. With none of them it waits for a client
    /// or `stop` (the wake pipe): an idle exporter does not wake up at all.
    private func pollTimeout(now: Double) -> Int32 {
        var next = Double.infinity
        for c in connections.values {
            if let started = c.requestStarted, c.output.isEmpty { next = min(next, started + limits.readTimeout) }
            next = min(next, c.lastActivity + limits.idleTimeout)
        }
        if let tls { next = min(next, tls.nextCheck) }
        guard next.isFinite else { return -1 }
        // One millisecond past the deadline: `expire` acts once a limit is exceeded.
        return Int32((min(max(next - now, 0), 3600) * 1000).rounded(.up)) + 1
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
        guard connections.removeValue(forKey: c.socket.withUnsafeDescriptor { $0 }) != nil else { return }
        c.socket.close()
    }
}
