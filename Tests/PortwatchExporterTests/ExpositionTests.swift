import Foundation
import Synchronization
import Testing
import PortwatchCore
import PortwatchTestSupport
@testable import PortwatchExporter

@Suite struct ExpositionTests {
    let families = [
        MetricFamily("demo_bytes", .gauge, help: "Help with \\ backslash,\nnewline and \"quotes\".", unit: "bytes",
                     samples: [.init([("comm", "evil\"\\\nname"), ("address", "::1")], 1.5)]),
        MetricFamily("demo_events", .counter, help: "Events.", samples: [.init([("kind", "open")], 3)]),
    ]

    @Test func textFormatGolden() {
        let out = String(decoding: ExpositionFormat.text.render(families), as: UTF8.self)
        #expect(out == #"""
        # HELP demo_bytes Help with \\ backslash,\nnewline and "quotes".
        # TYPE demo_bytes gauge
        demo_bytes{comm="evil\"\\\nname",address="::1"} 1.5
        # HELP demo_events_total Events.
        # TYPE demo_events_total counter
        demo_events_total{kind="open"} 3

        """#)
    }

    @Test func openMetricsGolden() {
        let out = String(decoding: ExpositionFormat.openMetrics.render(families), as: UTF8.self)
        #expect(out == #"""
        # HELP demo_bytes Help with \\ backslash,\nnewline and \"quotes\".
        # TYPE demo_bytes gauge
        # UNIT demo_bytes bytes
        demo_bytes{comm="evil\"\\\nname",address="::1"} 1.5
        # HELP demo_events Events.
        # TYPE demo_events counter
        demo_events_total{kind="open"} 3
        # EOF

        """#)
    }

    @Test(arguments: [
        (nil, ExpositionFormat.text),
        ("text/plain", .text),
        ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", .openMetrics),
        ("application/openmetrics-text; version=1.0.0; q=0.2, text/plain; q=0.9", .text),
        ("application/openmetrics-text; version=2.0.0", .text),
        ("application/json", .text),
        ("*/*", .text),
        ("application/openmetrics-text;q=0", .text),
        // Prometheus 3, and blanks (spaces and tabs) around every part.
        ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2", .openMetrics),
        ("\tapplication/openmetrics-text ;\tversion = 1.0.0 ; q = 0.6 , text/plain ; q=0.5", .openMetrics),
        ("application/openmetrics-text ; version =\t2.0.0 , text/plain ; q=0.5", .text),
        ("text/plain;q=0.5, application/openmetrics-text;q=\t0.7\t", .openMetrics),
    ] as [(String?, ExpositionFormat)])
    func negotiation(accept: String?, expected: ExpositionFormat) {
        #expect(ExpositionFormat.negotiate(accept: accept) == expected)
    }

    @Test func portInfoIsSortedAndCapped() {
        let rows = [443, 22, 8080].map { port in
            Binding(key: BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "0.0.0.0", port: UInt16(port)),
                    owner: Owner(pid: 1, comm: "x", uid: 0), state: .listen, holders: 1, firstSeen: 0, lastChange: 0)
        }.sorted { $0.key < $1.key }
        let state = ExporterState(rows: rows, counters: [], programs: ["p": true], version: "v", revision: "r", maxPortSeries: 2)
        let families = PortwatchMetrics.families(state)
        let info = families.first { $0.name == "portwatch_port_info" }!
        #expect(info.samples.map { $0.labels.first { $0.0 == "port" }!.1 } == ["22", "443"])
        #expect(families.first { $0.name == "portwatch_port_info_series_dropped" }!.samples[0].value == 1)
        #expect(families.first { $0.name == "portwatch_ports_held" }!.samples[0].value == 3, "held counts every row")
    }

    @Test func upIsZeroWhenTheLedgerCannotBeRead() {
        let state = ExporterState(rows: nil, counters: [], programs: [:], version: "v", revision: "r")
        #expect(PortwatchMetrics.families(state).first { $0.name == "portwatch_up" }!.samples[0].value == 0)
    }

    @Test func equalStateGivesIdenticalBytes() {
        let exporter = Exporter(telemetryPath: "/metrics", state: {
            ExporterState(rows: [], counters: [CounterEntry(name: CounterEntry.events, label: "open", value: 9)],
                          programs: ["a": true, "b": false], version: "v", revision: "r")
        }, ready: { true })
        func body() -> String {
            let r = exporter.handle(HTTPRequest(method: "GET", path: "/metrics", query: "", version: "HTTP/1.1", headers: []))
            // Only the self-measurements may differ between two scrapes.
            return String(decoding: r.body, as: UTF8.self).split(separator: "\n")
                .filter { !$0.hasPrefix("process_") && !$0.hasPrefix("portwatch_scrape_duration") }.joined(separator: "\n")
        }
        #expect(body() == body())
        #expect(body().contains("portwatch_events_total{kind=\"open\"} 9"))
    }
}

/// The exporter renders a generation once and serves it until the generation changes; the
/// per-scrape series are fresh every time, and gzip of the cached part is the same text.
@Suite struct RenderCacheTests {
    static func state(ports: [UInt16], generation: UInt64) -> ExporterState {
        var s = ExporterState(rows: ports.map { port in
            Binding(key: BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "0.0.0.0", port: port),
                    owner: Owner(pid: 1, comm: "app", uid: 0), state: .listen, holders: 1, firstSeen: 0, lastChange: 0)
        }, counters: [], programs: [:], version: "t", revision: "t")
        s.generation = generation
        return s
    }

    static func get(_ exporter: Exporter, _ headers: [(String, String)] = []) -> HTTPResponse {
        exporter.handle(HTTPRequest(method: "GET", path: "/metrics", query: "", version: "HTTP/1.1", headers: headers))
    }

    @Test func aGenerationIsRenderedOnceAndANewOneAnew() throws {
        let current = Mutex(Self.state(ports: [22], generation: 1))
        let exporter = Exporter(telemetryPath: "/metrics", state: { current.withLock { $0 } }, ready: { true })
        #expect(String(decoding: Self.get(exporter).body, as: UTF8.self).contains("port=\"22\""))
        // Same generation, other rows: the rendered series are served again (that is the contract
        // of a generation), so the cache is really used.
        current.withLock { $0 = Self.state(ports: [22, 443], generation: 1) }
        let cached = String(decoding: Self.get(exporter).body, as: UTF8.self)
        #expect(!cached.contains("port=\"443\""))
        #expect(cached.contains("process_open_fds") && cached.contains("portwatch_scrape_duration_seconds"), "per-scrape series every time")
        current.withLock { $0 = Self.state(ports: [22, 443], generation: 2) }
        #expect(String(decoding: Self.get(exporter).body, as: UTF8.self).contains("port=\"443\""), "a new generation shows the change")
    }

    /// A compressed piece of per-port lines (which deflate to a 30th or less) keeps about its
    /// compressed size, not the quarter of the text reserved while compressing, and is still
    /// the text once framed.
    @Test func aCompressedPieceKeepsItsSize() throws {
        let text = Array((0..<2_000).map { "portwatch_port_info{netns=\"1\",protocol=\"tcp\",port=\"\(1000 + $0)\",comm=\"app\"} 1\n" }.joined().utf8)
        let stream = try #require(Gzip.Stream(level: 5, raw: true))
        let piece = try #require(Gzip.Piece(text[...], stream: stream))
        #expect(piece.compressed.count * 10 < text.count)
        #expect(piece.compressed.capacity <= 2 * piece.compressed.count + 256, "\(piece.compressed.capacity) bytes kept for \(piece.compressed.count)")
        let member = try #require(Gzip.Member([piece]).finish([]))
        #expect(try RowSeriesTests.gunzip(Array(member.joined())) == text)
    }

    @Test func mapMemoryIsReadAtEachScrape() throws {
        let bytes = Mutex<UInt64>(4096)
        var exporter = Exporter(telemetryPath: "/metrics", state: { Self.state(ports: [22], generation: 1) }, ready: { true })
        #expect(!String(decoding: Self.get(exporter).body, as: UTF8.self).contains("portwatch_bpf_map_memory_bytes"), "no maps, no series")
        exporter.mapMemory = { [("bindings", bytes.withLock { $0 }), ("events", 1 << 20)] }
        let text = String(decoding: Self.get(exporter).body, as: UTF8.self)
        #expect(text.contains("# TYPE portwatch_bpf_map_memory_bytes gauge\nportwatch_bpf_map_memory_bytes{map=\"bindings\"} 4096\nportwatch_bpf_map_memory_bytes{map=\"events\"} 1048576\n"), "\(text)")
        // Same generation of the ledger: the value is still read anew.
        bytes.withLock { $0 = 8192 }
        let open = String(decoding: Self.get(exporter, [("accept", "application/openmetrics-text; version=1.0.0")]).body, as: UTF8.self)
        #expect(open.contains("# UNIT portwatch_bpf_map_memory_bytes bytes\nportwatch_bpf_map_memory_bytes{map=\"bindings\"} 8192\n"), "\(open)")
    }

    @Test func gzipOfTheCachedPartDecompressesToTheSameText() throws {
        let exporter = Exporter(telemetryPath: "/metrics", state: { Self.state(ports: Array(1...2000), generation: 7) }, ready: { true })
        for accept in ["text/plain", "application/openmetrics-text; version=1.0.0"] {
            let plain = String(decoding: Self.get(exporter, [("accept", accept)]).body, as: UTF8.self)
            for _ in 0..<2 { // the second from the cached compressed prefix
                let gz = Self.get(exporter, [("accept", accept), ("accept-encoding", "gzip")])
                #expect(gz.headers.contains { $0 == ("Content-Encoding", "gzip") })
                let unzipped = String(decoding: try RowSeriesTests.gunzip(gz.body), as: UTF8.self)
                #expect(HTTPServerTests.stable(unzipped) == HTTPServerTests.stable(plain))
                #expect(unzipped.hasSuffix(accept.hasPrefix("application") ? "# EOF\n" : "\n"))
                #expect(unzipped.components(separatedBy: "# EOF").count == (accept.hasPrefix("application") ? 2 : 1), "one # EOF, at the end")
            }
        }
    }
}
