import Foundation
import Glibc
import PortwatchCore
import Logging
import Testing
import PortwatchTestSupport
@testable import PortwatchExporter

/// A server on a free loopback port answering with the real Exporter routes.
final class RunningServer {
    let server: HTTPServer
    let port: UInt16

    init(limits: HTTPServer.Limits = HTTPServer.Limits()) throws {
        let exporter = Exporter(telemetryPath: "/metrics", state: {
            ExporterState(rows: [], counters: [], programs: [:], version: "test", revision: "test")
        }, ready: { true })
        server = try HTTPServer(addresses: [ListenAddress(host: "127.0.0.1", port: 0)], limits: limits,
                                logger: Logger(label: "test")) { exporter.handle($0) }
        port = server.boundPorts[0]
        server.start()
    }

    deinit { server.stop() }
}

@Suite(.serialized) struct HTTPServerTests {
    @Test func endpointsAnswer() throws {
        let s = try RunningServer()
        #expect(try TestHTTP.get(port: s.port, path: "/metrics").status == 200)
        #expect(try TestHTTP.get(port: s.port, path: "/").text.contains("href=\"/metrics\""))
        #expect(try TestHTTP.get(port: s.port, path: "/-/healthy").status == 200)
        #expect(try TestHTTP.get(port: s.port, path: "/-/ready").status == 200)
        #expect(try TestHTTP.get(port: s.port, path: "/nope").status == 404)
        let post = try TestHTTP.get(port: s.port, path: "/metrics", method: "POST")
        #expect(post.status == 405)
        #expect(post.headers["allow"] == "GET, HEAD")
        let head = try TestHTTP.get(port: s.port, path: "/metrics", method: "HEAD")
        #expect(head.status == 200 && Int(head.headers["content-length"] ?? "0")! > 0)
        // The raw bytes: a HEAD answer ends with its headers, whatever Content-Length says.
        let fd = try TestHTTP.connect(port: s.port)
        defer { close(fd) }
        TestHTTP.send(fd, "HEAD /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        var raw: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            raw += buffer[0..<n]
        }
        let text = String(decoding: raw, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200"))
        #expect(text.hasSuffix("\r\n\r\n"), "bytes after the headers of a HEAD answer: \(text.suffix(80))")
    }

    /// The lines of a scrape that change from one scrape to the next.
    static func stable(_ text: String) -> [Substring] {
        text.split(separator: "\n").filter { !$0.hasPrefix("process_") && !$0.hasPrefix("portwatch_scrape_duration") }
    }

    @Test func metricsAreNegotiatedAndGzipped() throws {
        let s = try RunningServer()
        let om = try TestHTTP.get(port: s.port, path: "/metrics", headers: ["Accept": "application/openmetrics-text; version=1.0.0"])
        #expect(om.headers["content-type"]?.hasPrefix("application/openmetrics-text; version=1.0.0") == true)
        #expect(om.text.hasSuffix("# EOF\n"))
        let gz = try TestHTTP.get(port: s.port, path: "/metrics", headers: ["Accept-Encoding": "gzip"])
        #expect(gz.headers["content-encoding"] == "gzip")
        #expect(gz.headers["vary"] == "Accept-Encoding")
        #expect(Array(gz.body.prefix(2)) == [0x1f, 0x8b])
        // Decompressed, it is the identity answer.
        let unzipped = String(decoding: try RowSeriesTests.gunzip(gz.body), as: UTF8.self)
        let plain = try TestHTTP.get(port: s.port, path: "/metrics")
        #expect(plain.headers["content-encoding"] == nil)
        #expect(Self.stable(unzipped) == Self.stable(plain.text))
        #expect(Self.stable(plain.text).count > 20)
        // A client that refuses gzip gets none.
        let refused = try TestHTTP.get(port: s.port, path: "/metrics", headers: ["Accept-Encoding": "gzip;q=0, identity"])
        #expect(refused.headers["content-encoding"] == nil)
        #expect(refused.text.contains("portwatch_up"))
    }

    @Test func keepAlivePipeliningAndSplitRequests() throws {
        let s = try RunningServer()
        let fd = try TestHTTP.connect(port: s.port)
        defer { close(fd) }
        // Two pipelined requests in one write, then one split across three writes.
        TestHTTP.send(fd, "GET /-/healthy HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(TestHTTP.readResponse(fd)?.status == 200)
        #expect(TestHTTP.readResponse(fd)?.status == 404)
        for part in ["GET /-/re", "ady HTTP/1.1\r\nHo", "st: a\r\n\r\n"] {
            TestHTTP.send(fd, part)
            usleep(20_000)
        }
        #expect(TestHTTP.readResponse(fd)?.status == 200)
    }

    @Test(arguments: [
        ("GARBAGE\r\n\r\n", 400),
        ("GET /metrics HTTP/1.1\r\n\r\n", 400),               // no Host
        ("GET /metrics HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ("GET metrics HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        ("GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400),
    ])
    func malformedRequestsGetAStatusAndAClose(request: String, status: Int) throws {
        let s = try RunningServer()
        let fd = try TestHTTP.connect(port: s.port)
        defer { close(fd) }
        TestHTTP.send(fd, request)
        let response = TestHTTP.readResponse(fd)
        #expect(response?.status == status)
        #expect(response?.headers["connection"] == "close")
    }

    @Test func oversizedHeadersGet431() throws {
        let s = try RunningServer()
        let fd = try TestHTTP.connect(port: s.port)
        defer { close(fd) }
        TestHTTP.send(fd, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "a", count: 10_000) + "\r\n\r\n")
        #expect(TestHTTP.readResponse(fd)?.status == 431)
    }

    @Test func whenFullTheLongestIdleConnectionMakesRoom() throws {
        var limits = HTTPServer.Limits()
        limits.maxConnections = 3
        let s = try RunningServer(limits: limits)
        let held = try (0..<3).map { _ in try TestHTTP.connect(port: s.port) }
        defer { held.forEach { close($0) } }
        for fd in held {
            TestHTTP.send(fd, "GET /-/healthy HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(TestHTTP.readResponse(fd)?.status == 200)
        }
        #expect(try TestHTTP.get(port: s.port, path: "/-/healthy").status == 200, "a fourth client is served")
        var byte: UInt8 = 0
        #expect(recv(held[0], &byte, 1, 0) == 0, "the longest idle connection was closed for it")
    }

    @Test func whenFullOfResponsesInFlightNewClientsGet503() throws {
        var limits = HTTPServer.Limits()
        limits.maxConnections = 1
        let big = [UInt8](repeating: 65, count: 16 << 20)
        let server = try HTTPServer(addresses: [ListenAddress(host: "127.0.0.1", port: 0)], limits: limits,
                                    logger: Logger(label: "t")) { _ in HTTPResponse(status: 200, headers: [], body: big) }
        server.start()
        defer { server.stop() }
        let port = server.boundPorts[0]
        // A client that asks for 16 MiB and does not read it keeps its response in flight.
        let stuck = try TestHTTP.connect(port: port)
        defer { close(stuck) }
        TestHTTP.send(stuck, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        usleep(100_000)
        let extra = try TestHTTP.connect(port: port)
        defer { close(extra) }
        let response = TestHTTP.readResponse(extra)
        #expect(response?.status == 503)
        #expect(response?.headers["retry-after"] == "1")
    }

    @Test func slowlorisWithAThousandConnectionsDoesNotStopAScrape() throws {
        // Room for the thousand (the hard limit is left as it is: the process's other tests
        // and the children they start keep theirs).
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = max(limit.rlim_cur, min(4096, limit.rlim_max))
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let s = try RunningServer()
        var slow: [Int32] = []
        defer { slow.forEach { close($0) } }
        for _ in 0..<1000 {
            guard let fd = try? TestHTTP.connect(port: s.port) else { break }
            TestHTTP.send(fd, "G")
            slow.append(fd)
        }
        #expect(slow.count == 1000)
        // One byte a second from every slow client, and a scrape each second.
        for second in 0..<3 {
            for fd in slow { TestHTTP.send(fd, "E") }
            let started = Date()
            let response = try? TestHTTP.get(port: s.port, path: "/metrics")
            #expect(response?.status == 200, "second \(second): scrape refused or failed")
            #expect(response?.text.contains("portwatch_up 1") == true)
            let spent = Date().timeIntervalSince(started)
            if spent < 1 { usleep(UInt32((1 - spent) * 1e6)) }
        }
    }

    /// A server with `limits` changed as `configure` says, and a client connected to it.
    func connected(_ configure: (inout HTTPServer.Limits) -> Void) throws -> (server: RunningServer, fd: Int32) {
        var limits = HTTPServer.Limits()
        configure(&limits)
        let s = try RunningServer(limits: limits)
        return (s, try TestHTTP.connect(port: s.port))
    }

    @Test func slowRequestTimesOutWith408() throws {
        let (s, fd) = try connected { $0.readTimeout = 0.3 }
        defer { close(fd); _ = s }
        TestHTTP.send(fd, "GET / HTTP/1.1\r\n")
        #expect(TestHTTP.readResponse(fd)?.status == 408)
    }

    /// A keep-alive connection with nothing more to say is closed once idle for the limit,
    /// with no other client to wake the server: its loop sleeps until that deadline.
    @Test func anIdleKeepAliveConnectionIsClosedAtItsLimit() throws {
        let (s, fd) = try connected { $0.idleTimeout = 0.3 }
        defer { close(fd); _ = s }
        TestHTTP.send(fd, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        #expect(TestHTTP.readResponse(fd)?.status == 200)
        var byte: UInt8 = 0
        #expect(recv(fd, &byte, 1, 0) == 0, "closed by the server (the test's own read timeout, 10 s, gives -1)")
    }

    @Test func twoHundredIdleConnectionsDoNotDelayAScrape() throws {
        let s = try RunningServer()
        let idle = try (0..<200).map { _ in try TestHTTP.connect(port: s.port) }
        defer { idle.forEach { close($0) } }
        // Half of them sent half a request.
        for fd in idle.prefix(100) { TestHTTP.send(fd, "GET /metrics HTTP/1.1\r\n") }
        let response = try TestHTTP.get(port: s.port, path: "/metrics")
        #expect(response.status == 200)
        #expect(response.text.contains("portwatch_up 1"))
    }

    @Test func listenAddressParsing() {
        #expect(ListenAddress(":9976") == ListenAddress(host: "", port: 9976))
        #expect(ListenAddress("127.0.0.1:80") == ListenAddress(host: "127.0.0.1", port: 80))
        #expect(ListenAddress("[::1]:80") == ListenAddress(host: "::1", port: 80))
        #expect(ListenAddress("::1:80") == nil)
        #expect(ListenAddress("host.example:80") == nil)
        #expect(ListenAddress("127.0.0.1:99999") == nil)
    }

    @Test func takenPortIsExplained() throws {
        let s = try RunningServer()
        #expect { try HTTPServer(addresses: [ListenAddress(host: "127.0.0.1", port: s.port)], logger: Logger(label: "t")) { _ in HTTPResponse(status: 200) } }
            throws: { "\($0)".contains("another process listens there") }
    }
}

@Suite struct SlowReaderTests {
    /// A large scrape read a little at a time through a small receive buffer arrives whole:
    /// the server keeps writing as the socket drains, without blocking other clients.
    @Test func largeResponseToASlowReaderArrivesWhole() throws {
        let rows = (0..<1500).map { i in
            Binding(key: BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "10.0.\(i / 256).\(i % 256)", port: UInt16(1000 + i % 60000)),
                    owner: Owner(pid: Int32(i), comm: "proc\(i)", uid: 0), state: .listen, holders: 1, firstSeen: 0, lastChange: 0)
        }
        let exporter = Exporter(telemetryPath: "/metrics", state: {
            ExporterState(rows: rows, counters: [], programs: [:], version: "t", revision: "t")
        }, ready: { true })
        let server = try HTTPServer(addresses: [ListenAddress(host: "127.0.0.1", port: 0)], logger: Logger(label: "t")) { exporter.handle($0) }
        server.start()
        defer { server.stop() }
        let port = server.boundPorts[0]

        let fd = try TestHTTP.connect(port: port)
        defer { close(fd) }
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        TestHTTP.send(fd, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        // While the slow reader lags, another client is served.
        usleep(50_000)
        #expect(try TestHTTP.get(port: port, path: "/-/healthy").status == 200)
        // Read 1 KiB at a time, pausing, until the whole Content-Length has arrived.
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        var expected: Int?
        while expected.map({ data.count < $0 }) ?? true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            data += buffer[0..<n]
            usleep(100)
            if expected == nil, let head = String(decoding: data.prefix(512), as: UTF8.self).components(separatedBy: "\r\n\r\n").first,
               head.count < data.count, let line = head.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("content-length:") }),
               let length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) {
                expected = head.utf8.count + 4 + length
            }
        }
        #expect(expected != nil && data.count == expected, "received \(data.count) of \(expected ?? -1) bytes")
        let text = String(decoding: data, as: UTF8.self)
        let portInfoLines = text.split(separator: "\n").filter { $0.hasPrefix("portwatch_port_info{") }.count
        #expect(portInfoLines == 1500, "got \(portInfoLines) of 1500 series in \(data.count) bytes")
    }
}

@Suite struct OutboxTests {
    /// A socket that takes a few bytes at a time and is sometimes full: what comes out is every
    /// piece, in order, once; each write but the last says more follows (MSG_MORE).
    @Test func partialWritesDeliverEveryPieceOnceInOrder() {
        var outbox = HTTPServer.Outbox()
        // A piece may be a slice from the middle of its array (a cached rendering cut to the series cap).
        let lines = (0..<7000).map { UInt8($0 % 251) }
        let pieces: [ArraySlice<UInt8>] = [Array("HTTP/1.1 200 OK\r\n\r\n".utf8)[...], lines[1000..<6000], [], Array("tail\n".utf8)[...]]
        outbox.append(pieces)
        outbox.append([Array("second response".utf8)[...]])
        var wire: [UInt8] = [], calls = 0, lastMore = true
        var takes = [7, 0, 4096, 1, 0, 977, 10_000]
        while !outbox.isEmpty {
            // What the socket takes before it is full this time.
            let budget = takes.isEmpty ? 10_000 : takes.removeFirst()
            var room = budget
            let written = outbox.drain { bytes, more in
                calls += 1
                let n = min(room, bytes.count)
                room -= n
                wire += bytes.prefix(n)
                lastMore = more
                return n
            }
            #expect(written <= budget)
        }
        let expected = Array(pieces.joined()) + Array("second response".utf8)
        let whole = wire == expected
        #expect(whole, "wrote \(wire.count) bytes, expected \(expected.count) in order")
        #expect(!lastMore, "the last piece goes without MSG_MORE")
        #expect(calls > 5)
    }
}
