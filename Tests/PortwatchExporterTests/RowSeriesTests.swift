import Foundation
import PortwatchTestSupport
import Synchronization
import Testing
import PortwatchCore
@testable import PortwatchExporter

/// A scrape serves the per-port series from lines kept between scrapes; they must be the
/// bytes the families' samples render to, whatever the policy's scope, dropped labels, the
/// series cap and the health, and a scrape after one changed entry renders that entry alone.
@Suite struct RowSeriesTests {
    static func entries(_ count: Int) -> [LedgerEntry] {
        (0..<count).map { i in
            let port = UInt16(1000 + i)
            let attribution = i % 3 == 0 ? Attribution(unit: "svc\(i % 5).service") : Attribution(containerID: "c\(i)", pod: "p\"\(i % 4)", namespace: "ns")
            var owner = Owner(pid: Int32(100 + i % 7), comm: i % 2 == 0 ? "web" : "db\\x", uid: 0, attribution: attribution)
            owner.exe = i % 9 == 0 ? "/usr/bin/web" + Owner.deletedSuffix : "/usr/bin/web"
            let row = Binding(key: BindingKey(netns: UInt32(1 + i % 2), transport: i % 4 == 0 ? .udp : .tcp, family: i % 5 == 0 ? .ipv6 : .ipv4,
                                              address: i % 5 == 0 ? "::" : "0.0.0.0", port: port),
                              owner: owner, state: i % 4 == 0 ? .bound : .listen, holders: 1, firstSeen: 0, lastChange: 0)
            let health = i % 3 == 1 ? nil : SocketHealth(key: row.key, cookie: 1, queue: UInt32(i % 4), queueLimit: 128, drops: UInt64(i % 6))
            return LedgerEntry(row, ignored: i % 11 == 0, unexpected: i % 3 == 2, health: health)
        }.sorted { $0.row.key < $1.row.key }
    }

    /// The ledger's part of a served body: the per-scrape series left out.
    static func ledgerPart(_ body: [UInt8]) -> String {
        String(decoding: body, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.contains("process_") && !$0.contains("portwatch_scrape_duration") && $0 != "# EOF" }.joined(separator: "\n")
    }

    static func reference(_ state: ExporterState, _ format: ExpositionFormat) -> String {
        let families = PortwatchMetrics.families(state).sorted { $0.name < $1.name }
        return ledgerPart(format.render(families))
    }

    @Test func servedPerPortSeriesAreTheSamplesBytes() {
        let entries = Self.entries(120)
        var generation: UInt64 = 0
        let current = Mutex(ExporterState(entries: [], counters: [], programs: [:], version: "t", revision: "t"))
        let exporter = Exporter(telemetryPath: "/metrics", state: { current.withLock { $0 } }, ready: { true })
        for scope in [PortInfoScope.all, .unexpected, .none] {
            for dropping in [Set<String>(), ["pid", "address", "exposure"], ["exe"]] {
                for (limit, exe, policy, health) in [(nil as Int?, false, true, true), (40, true, false, true), (nil, true, true, false)] {
                    var state = ExporterState(entries: entries, counters: [], programs: [:], version: "t", revision: "t", maxPortSeries: limit)
                    state.portInfoOnly = scope
                    state.portInfoDropLabels = dropping
                    state.portInfoExe = exe
                    state.policyApplied = policy
                    state.listenerHealthRead = health
                    generation += 1
                    state.generation = generation
                    current.withLock { $0 = state }
                    for format in [ExpositionFormat.text, .openMetrics] {
                        let accept = format == .text ? "text/plain" : "application/openmetrics-text; version=1.0.0"
                        let served = Self.ledgerPart(RenderCacheTests.get(exporter, [("accept", accept)]).body)
                        #expect(served == Self.reference(state, format), "scope \(scope) dropping \(dropping) limit \(String(describing: limit)) exe \(exe)")
                    }
                }
            }
        }
        // Not empty comparisons: the families have their samples.
        var state = ExporterState(entries: entries, counters: [], programs: [:], version: "t", revision: "t")
        state.policyApplied = true
        state.listenerHealthRead = true
        let text = Self.reference(state, .text)
        for family in ["portwatch_port_info{", "portwatch_unexpected_port_info{", "portwatch_deleted_executable_port_info{",
                       "portwatch_listen_queue_length{", "portwatch_socket_drops_total{"] {
            #expect(text.contains(family), "\(family)")
        }
    }

    /// Up to four random changes: an entry deleted, one inserted from `spare`, one ignored or
    /// no longer, one with a new health reading.
    static func change(_ entries: inout [LedgerEntry], spare: ArraySlice<LedgerEntry>, using generator: inout some RandomNumberGenerator) {
        for _ in 0..<Int.random(in: 0...4, using: &generator) {
            let i = Int.random(in: 0..<entries.count, using: &generator)
            switch Int.random(in: 0..<4, using: &generator) {
            case 0: entries.remove(at: i)
            case 1:
                let new = spare.randomElement(using: &generator)!
                if !entries.contains(where: { $0.row.key == new.row.key }) {
                    entries.insert(LedgerEntry(new.row, unexpected: Bool.random(using: &generator)), at: entries.firstIndex { new.row.key < $0.row.key } ?? entries.count)
                }
            case 2: entries[i] = entries[i].with(ignored: !entries[i].ignored, unexpected: entries[i].unexpected, health: entries[i].health)
            default:
                let h = SocketHealth(key: entries[i].row.key, cookie: 1, queue: UInt32.random(in: 0...9, using: &generator), queueLimit: 4096,
                                     drops: UInt64.random(in: 0...99, using: &generator))
                entries[i] = entries[i].with(ignored: entries[i].ignored, unexpected: entries[i].unexpected, health: h)
            }
        }
    }

    /// The first entry from `from` on with listener health gets a new holder (pid 4242): a new
    /// entry for its row. Its index.
    static func newHolder(_ entries: inout [LedgerEntry], from: Int, _ state: ExporterState) throws -> Int {
        let k = try #require(entries.indices.first { $0 >= from && RowSeries.queueLength.value(entries[$0], state) != nil })
        var owner = entries[k].row.owner
        owner.pid = 4242
        entries[k] = LedgerEntry(Binding(key: entries[k].row.key, owner: owner, state: .listen, holders: 1, firstSeen: 0, lastChange: 1))
            .with(ignored: false, unexpected: false, health: entries[k].health)
        return k
    }

    /// The state of `generation`: the series cap in every third, only the unexpected ports in every tenth.
    static func state(_ entries: [LedgerEntry], generation: Int) -> ExporterState {
        var state = ExporterState(entries: entries, counters: [], programs: [:], version: "t", revision: "t",
                                  maxPortSeries: generation % 3 == 0 ? 150 : nil)
        state.policyApplied = true
        state.listenerHealthRead = true
        state.portInfoOnly = generation % 10 == 0 ? .unexpected : .all
        state.generation = UInt64(generation)
        return state
    }

    /// Generations whose entries are inserted, deleted, replaced and given new health here and
    /// there (the kept lines spliced around them): every served body is the samples' rendering.
    @Test func splicedGenerationsAreTheSamplesBytes() throws {
        var entries = Self.entries(300)
        var generator = SystemRandomNumberGenerator()
        let current = Mutex(ExporterState(entries: [], counters: [], programs: [:], version: "t", revision: "t"))
        let exporter = Exporter(telemetryPath: "/metrics", state: { current.withLock { $0 } }, ready: { true })
        let spare = Self.entries(600).suffix(300)
        for generation in 1...60 {
            Self.change(&entries, spare: spare, using: &generator)
            let state = Self.state(entries, generation: generation)
            current.withLock { $0 = state }
            let plain = RenderCacheTests.get(exporter).body
            #expect(Self.ledgerPart(plain) == Self.reference(state, .text), "generation \(generation)")
            // As Prometheus asks: the member joined from kept and new chunks is that text.
            if generation % 4 == 0 {
                let gz = RenderCacheTests.get(exporter, [("accept-encoding", "gzip")]).body
                #expect(Self.ledgerPart(try Self.gunzip(gz)) == Self.ledgerPart(plain), "generation \(generation)")
            }
        }
    }

    /// As Prometheus scrapes (gzip only), the per-port lines are kept compressed only: through
    /// generations that insert, delete and change entries, under the series cap and another
    /// scope, every member is the samples' rendering; a plain-text scrape now and then renders
    /// the lines and keeps them for its generation and the next, after which they go again.
    @Test func compressedOnlyGenerationsAreTheSamplesBytes() throws {
        var entries = Self.entries(300)
        var generator = SystemRandomNumberGenerator()
        let current = Mutex(ExporterState(entries: [], counters: [], programs: [:], version: "t", revision: "t"))
        let exporter = Exporter(telemetryPath: "/metrics", state: { current.withLock { $0 } }, ready: { true })
        let spare = Self.entries(600).suffix(300)
        var lastPlain = -10
        for generation in 1...50 {
            Self.change(&entries, spare: spare, using: &generator)
            let state = Self.state(entries, generation: generation)
            current.withLock { $0 = state }
            let format: ExpositionFormat = generation % 7 == 0 ? .openMetrics : .text
            let accept = format == .text ? "text/plain" : "application/openmetrics-text; version=1.0.0"
            let gz = RenderCacheTests.get(exporter, [("accept", accept), ("accept-encoding", "gzip")]).body
            #expect(Self.ledgerPart(try Self.gunzip(gz)) == Self.reference(state, format), "generation \(generation)")
            let kept = exporter.rendered.keptLineBytes
            if generation - lastPlain <= 1 {
                #expect(kept > 0, "generation \(generation): a plain-text scrape came for it or the one before")
            } else {
                #expect(kept == 0, "generation \(generation): \(kept) bytes of lines kept with only gzip asked")
            }
            if generation % 12 == 5 {
                let plain = RenderCacheTests.get(exporter, [("accept", accept)]).body
                #expect(Self.ledgerPart(plain) == Self.reference(state, format), "generation \(generation), plain")
                #expect(exporter.rendered.keptLineBytes > 0)
                lastPlain = generation
            }
        }
    }

    /// With the lines kept compressed only, a scrape after one changed entry renders the
    /// entries of the chunk it is in, in each family it has a line in, and compresses that chunk.
    @Test func aCompressedOnlyScrapeAfterOneChangeRendersItsChunk() throws {
        var entries = Self.entries(2_000)
        var state = ExporterState(entries: entries, counters: [], programs: [:], version: "t", revision: "t")
        state.listenerHealthRead = true
        state.generation = 1
        let current = Mutex(state)
        let exporter = Exporter(telemetryPath: "/metrics", state: { current.withLock { $0 } }, ready: { true })
        _ = RenderCacheTests.get(exporter, [("accept-encoding", "gzip")])
        #expect(exporter.rendered.labelsRendered.load(ordering: .relaxed) >= 2_000, "the first scrape renders every entry's labels")
        #expect(exporter.rendered.keptLineBytes == 0)
        let k = try Self.newHolder(&entries, from: 1_000, state)
        state.entries = entries
        state.generation = 2
        current.withLock { $0 = state }
        let gz = try Self.gunzip(RenderCacheTests.get(exporter, [("accept-encoding", "gzip")]).body)
        #expect(Self.ledgerPart(gz) == Self.reference(state, .text))
        #expect(String(decoding: gz, as: UTF8.self).contains("pid=\"4242\""))
        // The chunk: from the entry that starts it (or the first) to the next that starts one;
        // made again in each family that has lines in it (its entries are not all the same).
        let a = (0...k).last { $0 == 0 || entries[$0].chunkStart }!
        let b = ((k + 1)..<entries.count).first { entries[$0].chunkStart } ?? entries.count
        let lines = PortwatchMetrics.sortedFamilies(state).compactMap(\.rows).map { rows in entries[a..<b].filter { rows.value($0, state) != nil }.count }.filter { $0 > 0 }
        #expect(lines.count >= 3, "the entry has listener health")
        #expect(exporter.rendered.chunksCompressed.load(ordering: .relaxed) == lines.count)
        let expected = lines.reduce(0, +)
        #expect(exporter.rendered.labelsRendered.load(ordering: .relaxed) == expected, "chunk \(a)..<\(b)")
        #expect(expected < 2_000 / 4)
        #expect(exporter.rendered.keptLineBytes == 0)
    }

    /// 3,000 listeners, then 10 of them: each family's kept lines give back the room the
    /// 3,000 took (300 KB and more each), and are still the bytes the samples render to.
    @Test func keptLinesGiveBackTheRoomOfABurstGone() {
        let all = Self.entries(3_000)
        for rows in RowSeries.allCases {
            var segment = RowSegment()
            var rendered = 0
            let name = Array("portwatch_x".utf8)
            for entries in [all, Array(all.prefix(10))] {
                var state = ExporterState(entries: entries, counters: [], programs: [:], version: "t", revision: "t")
                state.policyApplied = true
                state.listenerHealthRead = true
                rows.update(&segment, to: state, name: name, rendered: &rendered)
                var expected: [UInt8] = []
                rows.render(state, name: name, into: &expected, rendered: &rendered)
                #expect(segment.bytes == expected, "\(rows), \(entries.count) entries")
            }
            #expect(segment.bytes.capacity <= 64 << 10 && segment.offsets.capacity <= 1024, "\(rows): room for \(segment.bytes.capacity) bytes kept")
        }
    }

    static func gunzip(_ bytes: [UInt8]) throws -> [UInt8] { try #require(TestProcess.gunzip(bytes), "gzip -dc refused the body") }

    @Test func aScrapeAfterOneChangedEntryRendersThatEntryAlone() throws {
        var entries = Self.entries(500)
        var state = ExporterState(entries: entries, counters: [], programs: [:], version: "t", revision: "t")
        state.listenerHealthRead = true
        state.generation = 1
        let current = Mutex(state)
        let exporter = Exporter(telemetryPath: "/metrics", state: { current.withLock { $0 } }, ready: { true })
        _ = RenderCacheTests.get(exporter)
        #expect(exporter.rendered.labelsRendered.load(ordering: .relaxed) >= 500, "the first scrape renders every entry's labels")
        _ = RenderCacheTests.get(exporter, [("accept-encoding", "gzip")])
        #expect(exporter.rendered.chunksCompressed.load(ordering: .relaxed) >= 500 / RenderCache.chunkEntries, "and compresses every chunk")
        // One row changed (one with listener health): a new entry for it, the others kept.
        let k = try Self.newHolder(&entries, from: 250, state)
        state.entries = entries
        state.generation = 2
        current.withLock { $0 = state }
        let body = String(decoding: RenderCacheTests.get(exporter).body, as: UTF8.self)
        #expect(body.contains("pid=\"4242\""))
        // Compressed, the chunk the entry is in, per family it has a line in: at most one each.
        let gz = try Self.gunzip(RenderCacheTests.get(exporter, [("accept-encoding", "gzip")]).body)
        #expect(Self.ledgerPart(gz) == Self.ledgerPart(Array(body.utf8)))
        #expect(exporter.rendered.chunksCompressed.load(ordering: .relaxed) <= RowSeries.allCases.count)
        // Its labels in each family it has a line in, no other entry's.
        let lines = RowSeries.allCases.filter { $0.value(entries[k], state) != nil }.count
        #expect(exporter.rendered.labelsRendered.load(ordering: .relaxed) == lines)
    }

    /// A new listener-health reading makes a new entry for every row (the same row, new
    /// values): their lines take the labels from the lines before, none is rendered again
    /// (the entries keep no rendered labels of their own), whether a few changed or all.
    @Test func aNewHealthReadingRendersNoLabels() throws {
        var entries = Self.entries(400)
        var state = ExporterState(entries: entries, counters: [], programs: [:], version: "t", revision: "t")
        state.listenerHealthRead = true
        state.policyApplied = true
        state.generation = 1
        let current = Mutex(state)
        let exporter = Exporter(telemetryPath: "/metrics", state: { current.withLock { $0 } }, ready: { true })
        _ = RenderCacheTests.get(exporter)
        // The entries with a reading before (one without had no line to take labels from).
        let read = entries.indices.filter { entries[$0].health != nil }
        // A reading with the same values (of another socket on the port, say) keeps the entry.
        let same = try #require(entries[read[0]].health)
        let again = SocketHealth(key: entries[read[0]].row.key, cookie: 999, queue: same.queue, queueLimit: same.queueLimit, drops: same.drops)
        #expect(entries[read[0]].with(ignored: entries[read[0]].ignored, unexpected: entries[read[0]].unexpected, health: again) === entries[read[0]])
        for (generation, changed) in [(2, [read[3], read[100], read.last!]), (3, read)] {
            for i in changed {
                let old = entries[i].health!
                let health = SocketHealth(key: entries[i].row.key, cookie: 1, queue: (old.queue ?? 0) + 1, queueLimit: old.queueLimit,
                                          drops: (old.drops ?? 0) + 5)
                entries[i] = entries[i].with(ignored: entries[i].ignored, unexpected: entries[i].unexpected, health: health)
            }
            state.entries = entries
            state.generation = UInt64(generation)
            current.withLock { $0 = state }
            let served = Self.ledgerPart(RenderCacheTests.get(exporter).body)
            #expect(served == Self.reference(state, .text), "generation \(generation)")
            #expect(exporter.rendered.labelsRendered.load(ordering: .relaxed) == 0, "generation \(generation)")
        }
    }
}
