import Testing
@testable import PortwatchExporter

/// The request parser alone: what it takes from the bytes of a request, and what it refuses.
@Suite struct HTTPParserTests {
    let parser = HTTPParser(maxHeaderBytes: 256, maxBodyBytes: 16)

    func parse(_ text: String) -> HTTPParser.Result { parser.parse(Array(text.utf8)) }
    func parse(bytes: [UInt8]) -> HTTPParser.Result { parser.parse(bytes) }

    @Test func aScrapeAsPrometheusSendsIt() throws {
        let text = "GET /metrics?x=1&y HTTP/1.1\r\nHost: node:9100\r\nUser-Agent: Prometheus/2.45.0\r\n"
            + "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n"
            + "Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\nGET /next"
        guard case .request(let request, let consumed) = parse(text) else { Issue.record("not parsed: \(parse(text))"); return }
        #expect(consumed == text.utf8.count - "GET /next".utf8.count)
        #expect(request.method == "GET" && request.path == "/metrics" && request.query == "x=1&y" && request.version == "HTTP/1.1")
        #expect(request.headers.map(\.0) == ["host", "user-agent", "accept", "accept-encoding", "x-prometheus-scrape-timeout-seconds"])
        #expect(request.header("accept-encoding") == "gzip")
        #expect(request.header("host") == "node:9100")
    }

    @Test func valuesAreTrimmedNamesLowered() {
        let text = "HEAD / HTTP/1.0\r\nX-Tabs:\t \tvalue with  inner  blanks \t \r\nEMPTY:\r\nUtf8: caf\u{e9} \u{2713}\r\n\r\n"
        guard case .request(let request, _) = parse(text) else { Issue.record("not parsed: \(parse(text))"); return }
        #expect(request.method == "HEAD" && request.version == "HTTP/1.0" && request.query == "")
        #expect(request.headers.map(\.0) == ["x-tabs", "empty", "utf8"])
        #expect(request.header("x-tabs") == "value with  inner  blanks")
        #expect(request.header("empty") == "")
        #expect(request.header("utf8") == "caf\u{e9} \u{2713}")
    }

    @Test func aBodyIsCountedInWhatIsConsumed() {
        let head = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
        #expect(parse(head + "abc") == .incomplete)
        guard case .request(_, let consumed) = parse(head + "abcdeGET") else { Issue.record("not parsed"); return }
        #expect(consumed == head.utf8.count + 5)
        #expect(parse("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n") == .failure(status: 413))
        #expect(parse("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n") == .failure(status: 400))
        #expect(parse("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n") == .failure(status: 400))
        #expect(parse("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nab") != .failure(status: 400))
    }

    @Test func partialInputWaits() {
        let text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        for cut in 0..<text.utf8.count {
            #expect(parse(bytes: Array(text.utf8.prefix(cut))) == .incomplete, "cut at \(cut)")
        }
        #expect(parse(String(repeating: "a", count: 300)) == .failure(status: 431))
        #expect(parse("GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "a", count: 250) + "\r\n\r\n") == .failure(status: 431))
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\n\r\n", 400),                        // no Host
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ("GET / HTTPS1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
        ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),            // two blanks
        ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),             // not a token
        (" / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a\u{7f} HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nNo colon\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\u{1}b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    ])
    func refused(request: String, status: Int) {
        #expect(parse(request) == .failure(status: status))
    }

    @Test(arguments: [
        ("HTTP/1.1", nil, true), ("HTTP/1.1", "Close", false), ("HTTP/1.1", "keep-alive", true), ("HTTP/1.1", "Upgrade, close", false),
        ("HTTP/1.0", nil, false), ("HTTP/1.0", "Keep-Alive", true), ("HTTP/1.0", "close", false),
    ] as [(String, String?, Bool)])
    func keepAliveFollowsTheVersionAndConnectionHeader(version: String, connection: String?, keepAlive: Bool) {
        let text = "GET / \(version)\r\nHost: a\r\n" + (connection.map { "Connection: \($0)\r\n" } ?? "") + "\r\n"
        guard case .request(let request, _) = parse(text) else { Issue.record("not parsed"); return }
        #expect(request.keepAlive == keepAlive)
    }

    @Test func asteriskAndOptionsAreRequests() {
        guard case .request(let request, _) = parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n") else { Issue.record("not parsed"); return }
        #expect(request.method == "OPTIONS" && request.path == "*")
    }

    @Test func bytesThatAreNotUTF8AreRefused() {
        var bytes = Array("GET / HTTP/1.1\r\nHost: a\r\nX: ".utf8)
        bytes += [0xff, 0xfe]
        bytes += Array("\r\n\r\n".utf8)
        #expect(parse(bytes: bytes) == .failure(status: 400))
    }
}
