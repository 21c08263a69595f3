import Foundation
import Logging
import Synchronization
import Testing
import PortwatchCore
@testable import PortwatchExporter
import PortwatchStore
import PortwatchPipeline
import PortwatchPolicy
@testable import PortwatchScrape

/// A scrape reads the ledger again only when the daemon committed to it, and a change is
/// always in the next scrape.
@Suite struct ScrapeSourceTests {
    static func ledger() throws -> (path: String, store: Store) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-scrape-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return (dir + "/pw.db", try Store(path: dir + "/pw.db"))
    }

    static func batch(_ port: UInt16, cookie: UInt64) -> Batch {
        var r = Reconciler(window: 0)
        r.ingest(PortEvent(kind: .open, cookie: cookie, time: 1_000_000_000,
                           key: BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "0.0.0.0", port: port),
                           owner: Owner(pid: 1, comm: "app", uid: 0), state: .listen))
        return r.flush(now: .max)!
    }

    /// A source that lives through the ledger's changes (a few rows, then more than it puts in
    /// place one by one, owners that change, policy reloads) serves what a fresh source reading
    /// the whole ledger renders, at every step.
    @Test func aLongLivedSourceServesWhatAFreshReadRenders() throws {
        let (path, store) = try Self.ledger()
        let file = path + ".policy.yaml"
        func policy(_ step: Int) throws {
            try "expected:\n  - { ports: \(1000 + step * 7)-\(1400 + step * 5) }\n  - { comm: db }\nignore:\n  - { ports: \(1500 + step)-\(1550 + step) }\n"
                .write(toFile: file, atomically: true, encoding: .utf8)
        }
        try policy(0)
        let watcher = try PolicyWatcher(path: file, logger: Logger(label: "test"))
        func source() -> ScrapeSource {
            ScrapeSource(settings: .init(databasePath: path, programs: [:], version: "t", revision: "t", maxPortSeries: nil),
                         policy: watcher, health: { CapturePipeline.Health() }, logger: Logger(label: "test"))
        }
        let kept = source()
        let exporter = Exporter(telemetryPath: "/metrics", state: { kept.state() }, ready: { true })
        func ledgerPart(_ text: String) -> String {
            text.split(separator: "\n").filter { !$0.contains("process_") && !$0.contains("portwatch_scrape_duration") }.joined(separator: "\n")
        }
        var held: [UInt16: Binding] = [:]
        var generator = SystemRandomNumberGenerator()
        for step in 0..<40 {
            var batch = Batch()
            // Most steps change a few rows; every fifth more than are put in place one by one.
            let changes = step % 5 == 4 ? LedgerTable.inPlaceChanges + 40 : Int.random(in: 1...6, using: &generator)
            for _ in 0..<changes {
                let port = UInt16.random(in: 1000...1700, using: &generator)
                let key = BindingKey(netns: 1, transport: port % 3 == 0 ? .udp : .tcp, family: .ipv4, address: "0.0.0.0", port: port)
                if let row = held[key.port], Bool.random(using: &generator) {
                    batch.changes.append(RowChange(action: .delete, row: row, time: 1))
                    held[key.port] = nil
                } else {
                    let row = Binding(key: key, owner: Owner(pid: Int32.random(in: 2...90, using: &generator), comm: port % 4 == 0 ? "db" : "web", uid: 0),
                                      state: .listen, holders: 1, firstSeen: 1, lastChange: 1)
                    batch.changes.append(RowChange(action: held[key.port] == nil ? .insert : .update, row: row, time: 1))
                    held[key.port] = row
                }
            }
            try store.apply(batch)
            if step % 7 == 6 {
                try policy(step)
                #expect(watcher.reload())
            }
            let served = String(decoding: exporter.handle(HTTPRequest(method: "GET", path: "/metrics", query: "", version: "HTTP/1.1", headers: [])).body,
                                as: UTF8.self)
            let fresh = String(decoding: ExpositionFormat.text.render(PortwatchMetrics.families(source().state()).sorted { $0.name < $1.name }),
                               as: UTF8.self)
            #expect(ledgerPart(served) == ledgerPart(fresh), "step \(step)")
            // And it is this ledger: every held port is a series or ignored.
            let series = served.split(separator: "\n").filter { $0.hasPrefix("portwatch_port_info{") }.count
            let line = served.split(separator: "\n").first { $0.hasPrefix("portwatch_ignored_ports ") }
            let ignored = line.flatMap { $0.split(separator: " ").last }.flatMap { Int($0) } ?? -1
            #expect(series + ignored == held.count, "step \(step)")
        }
    }

    /// `ignore:` rules take ports out of the per-port series; the aggregates still count them.
    @Test func ignoredPortsAreCountedButHaveNoSeries() throws {
        let (path, store) = try Self.ledger()
        try store.apply(Self.batch(22, cookie: 1))
        try store.apply(Self.batch(31000, cookie: 2))
        let file = path + ".policy.yaml"
        try "expected:\n  - { port: 22 }\nignore:\n  - { ports: 30000-32767 }\n".write(toFile: file, atomically: true, encoding: .utf8)
        let watcher = try PolicyWatcher(path: file, logger: Logger(label: "test"))
        let source = ScrapeSource(settings: .init(databasePath: path, programs: [:], version: "t", revision: "t", maxPortSeries: nil),
                                  policy: watcher, health: { CapturePipeline.Health() }, logger: Logger(label: "test"))
        let text = String(decoding: ExpositionFormat.text.render(PortwatchMetrics.families(source.state())), as: UTF8.self)
        #expect(!text.contains("port=\"31000\""), "no per-port series for an ignored port")
        #expect(text.contains("port=\"22\""))
        #expect(text.contains("portwatch_ignored_ports 1"))
        #expect(text.contains("portwatch_ports_held{protocol=\"tcp\",family=\"ipv4\"} 2"), "held ports are counted all the same")
        #expect(text.contains("portwatch_unexpected_ports 0"), "an ignored port is not unexpected either")
    }

    /// The policy's `metrics:` section: port_info for the unexpected ports only, or none, the
    /// aggregates kept; dropped labels merge the series that differ in nothing else.
    @Test func portInfoScopeAndDroppedLabels() throws {
        let (path, store) = try Self.ledger()
        var r = Reconciler(window: 0)
        for (cookie, address) in [(UInt64(1), "0.0.0.0"), (2, "127.0.0.1")] {
            r.ingest(PortEvent(kind: .open, cookie: cookie, time: 1, key: BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: address, port: 80),
                               owner: Owner(pid: Int32(cookie) + 100, comm: "web", uid: 0), state: .listen))
        }
        try store.apply(r.flush(now: .max)!)
        try store.apply(Self.batch(22, cookie: 3))
        let file = path + ".policy.yaml"
        func scrape(_ policy: String) throws -> String {
            try policy.write(toFile: file, atomically: true, encoding: .utf8)
            let watcher = try PolicyWatcher(path: file, logger: Logger(label: "test"))
            let source = ScrapeSource(settings: .init(databasePath: path, programs: [:], version: "t", revision: "t", maxPortSeries: nil),
                                      policy: watcher, health: { CapturePipeline.Health() }, logger: Logger(label: "test"))
            return String(decoding: ExpositionFormat.text.render(PortwatchMetrics.families(source.state())), as: UTF8.self)
        }
        func series(_ text: String) -> [Substring] { text.split(separator: "\n").filter { $0.hasPrefix("portwatch_port_info{") } }
        #expect(series(try scrape("expected:\n  - { port: 22 }\n")).count == 3, "all by default")
        let unexpected = try scrape("expected:\n  - { port: 22 }\nmetrics: { port_info: unexpected }\n")
        #expect(series(unexpected).count == 2 && !series(unexpected).contains { $0.contains("port=\"22\"") })
        #expect(unexpected.contains("portwatch_ports_held{protocol=\"tcp\",family=\"ipv4\"} 3"), "the aggregates stay")
        #expect(series(try scrape("expected: []\nmetrics: { port_info: none }\n")).isEmpty)
        let merged = series(try scrape("expected: []\nmetrics: { drop_labels: [pid, address, exposure] }\n"))
        #expect(merged.count == 2, "the two web sockets on port 80 are one series: \(merged)")
        #expect(!merged.contains { $0.contains("pid=") })
        #expect(throws: PolicyError.self) { try PolicyFile.parse("metrics: { port_info: some }\n") }
        #expect(throws: PolicyError.self) { try PolicyFile.parse("metrics: { drop_labels: [port] }\n") }
    }

    /// The listener health enters each namespace by the snapshots' handles first, then by a
    /// few holders' /proc/PID/ns/net: a namespace of thousands of holders gets no more.
    @Test func listenerHealthTriesAFewHandlesPerNamespace() {
        func row(_ i: Int) -> Binding {
            let key = BindingKey(netns: i < 999 ? 7 : 8, transport: .tcp, family: .ipv4, address: "0.0.0.0", port: UInt16(1000 + i))
            return Binding(key: key, owner: Owner(pid: Int32(100 + i), comm: "app", uid: 0), state: .listen, holders: 1, firstSeen: 0, lastChange: 0)
        }
        let rows = (0..<1000).map(row)
        let expected: [String] = ["/run/netns/seven", "/proc/100/ns/net", "/proc/101/ns/net", "/proc/102/ns/net", "/proc/103/ns/net"]
        let handles = ListenerHealthMonitor.namespaces(of: rows, known: [7: ["/run/netns/seven"]])
        #expect(handles[7] == expected)
        #expect(handles[8] == ["/proc/1099/ns/net"], "a namespace no snapshot listed yet")
    }

    @Test func theGenerationHoldsUntilTheLedgerOrTheHealthChanges() throws {
        let (path, store) = try Self.ledger()
        try store.apply(Self.batch(22, cookie: 1))
        let health = Mutex(CapturePipeline.Health())
        let source = ScrapeSource(settings: .init(databasePath: path, programs: [:], version: "t", revision: "t", maxPortSeries: nil),
                                  policy: nil, health: { health.withLock { $0 } }, logger: Logger(label: "test"))
        let first = source.state()
        #expect(first.rows?.map(\.key.port) == [22])
        #expect(first.generation != nil)
        #expect(source.state().generation == first.generation, "nothing changed: the same series")

        try store.apply(Self.batch(8080, cookie: 2))
        let changed = source.state()
        #expect(changed.rows?.map(\.key.port) == [22, 8080], "a change is in the next scrape")
        #expect(changed.generation != first.generation)

        health.withLock { $0.resyncs += 1 }
        let resynced = source.state()
        #expect(resynced.generation != changed.generation, "the pipeline's health is part of the series")
        #expect(resynced.counters.contains { $0.name == CounterEntry.resyncs && $0.value == 1 })
    }
}
