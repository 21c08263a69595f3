import Foundation
import Testing
import PortwatchCore
@testable import PortwatchStore

func temporaryDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("portwatch-test-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

let sampleKey = BindingKey(netns: 4026531840, transport: .tcp, family: .ipv4, address: "127.0.0.1", port: 8080)

func sampleBatch(now: UInt64 = 10_000_000_000) -> Batch {
    var r = Reconciler(window: 0)
    r.ingest(PortEvent(kind: .open, cookie: 42, time: now, key: sampleKey,
                       owner: Owner(pid: 1234, comm: "nginx", uid: 33), state: .listen))
    return r.flush(now: now)!
}

@Suite struct StoreTests {
    @Test func batchSurvivesReopen() throws {
        let path = try temporaryDirectory() + "/pw.db"
        do {
            let store = try Store(path: path)
            try store.apply(sampleBatch(), extra: [CounterEntry(name: CounterEntry.eventsLost, label: "", value: 3)])
        }
        let store = try Store(path: path)
        let state = try store.loadState()
        #expect(state.rows[sampleKey]?.owner == Owner(pid: 1234, comm: "nginx", uid: 33))
        #expect(state.sockets == [42: sampleKey])
        let counters = try StoreReader(path: path).snapshot()
        #expect(counters.counter(CounterEntry.events, "open") == 1)
        #expect(counters.counter(CounterEntry.actions, "insert") == 1)
        #expect(counters.counter(CounterEntry.eventsLost) == 3)
        #expect(counters.rows.map(\.key) == [sampleKey])
    }

    @Test func dataVersionMovesWithEachCommitOnly() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        try store.apply(sampleBatch())
        let reader = try StoreReader(path: path)
        let first = try reader.dataVersion()
        #expect(try reader.dataVersion() == first, "nothing committed: nothing new to read")
        var close = Batch()
        close.counters.orphanCloses[.udp] = 1
        for _ in 0..<3 {
            let before = try reader.dataVersion()
            try store.apply(close)
            #expect(try reader.dataVersion() != before, "a commit by the writer is seen at the next ask")
        }
        #expect(try reader.snapshot().counter(CounterEntry.orphanCloses, "udp") == 3)
    }

    @Test func countersAccumulateAcrossBatches() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        try store.apply(sampleBatch())
        var close = Batch()
        close.counters.orphanCloses[.udp] = 2
        try store.apply(close)
        try store.apply(close)
        #expect(try StoreReader(path: path).snapshot().counter(CounterEntry.orphanCloses, "udp") == 4)
    }

    @Test func historyRecordsInsertAndDeleteAndPrunes() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        try store.apply(sampleBatch(now: 1_000))
        var r = Reconciler(window: 0, rows: try store.loadState().rows, sockets: try store.loadState().sockets)
        r.ingest(PortEvent(kind: .close, cookie: 42, time: 5_000, key: sampleKey,
                           owner: Owner(pid: 1234, comm: "nginx", uid: 33), state: .listen))
        try store.apply(r.flush(now: 5_000)!)
        var actions: [String] = []
        try store.db.prepare("SELECT action FROM history ORDER BY id").query { actions.append($0.text(0)) }
        #expect(actions == ["insert", "delete"])
        #expect(try store.pruneHistory(before: 2_000) == 1)
        #expect(try store.loadState().rows.isEmpty)
    }

    /// A burst's history is written many entries per statement: every entry arrives once,
    /// in the batch's order (its changes, then its transients), each with its own values.
    @Test(arguments: [Store.historyRowsPerStatement - 1, 2 * Store.historyRowsPerStatement + 5])
    func aBurstsHistoryIsWrittenWholeAndInOrder(opens: Int) throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        var r = Reconciler(window: 0)
        let ports = (0..<opens).map { UInt16(20_000 + ($0 * 7919) % 30_000) }
        for (i, port) in ports.enumerated() {
            r.ingest(PortEvent(kind: .open, cookie: UInt64(100 + i), time: 1_000 + UInt64(i),
                               key: BindingKey(netns: 1, transport: i % 2 == 0 ? .tcp : .udp, family: .ipv4, address: "10.0.0.\(i % 250)", port: port),
                               owner: Owner(pid: Int32(1_000 + i), comm: "srv\(i)", uid: UInt32(i)), state: .listen))
        }
        let flushed = r.flush(now: 10_000)
        var batch = try #require(flushed)
        batch.transients = (0..<Store.historyRowsPerStatement + 3).map {
            RecentTransientsTests.transient(UInt16(40_000 + $0), comm: "t\($0)", at: 5_000 + UInt64($0))
        }
        try store.apply(batch)
        var written: [(port: Int64, comm: String, pid: Int64, uid: Int64, time: Int64, action: String)] = []
        try store.db.prepare("SELECT port, comm, pid, uid, time, action FROM history ORDER BY id").query {
            written.append(($0.int(0), $0.text(1), $0.int(2), $0.int(3), $0.int(4), $0.text(5)))
        }
        #expect(written.map(\.port) == ports.map(Int64.init) + batch.transients.map { Int64($0.key.port) })
        #expect(written.prefix(opens).map(\.comm) == (0..<opens).map { "srv\($0)" })
        #expect(written.prefix(opens).allSatisfy { $0.action == "insert" && $0.pid == 1_000 + $0.uid && $0.time == 1_000 + $0.uid })
        #expect(written.dropFirst(opens).map(\.comm) == batch.transients.map(\.owner.comm))
        #expect(try StoreReader(path: path).history().count == written.count)
    }

    /// Every history write goes into the table and its time index (and transients into their
    /// own partial index): no index at a random place per write. Each reader still finds its
    /// rows through an index, not by reading the whole history.
    @Test func historyReadsUseIndexesThatWritesCanAfford() throws {
        let store = try Store(path: try temporaryDirectory() + "/pw.db")
        var indexes: [String] = []
        try store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'history' ORDER BY name").query { indexes.append($0.text(0)) }
        #expect(indexes == ["history_by_time", "history_transients"])
        func plan(_ sql: String) throws -> String {
            var out = ""
            try store.db.prepare("EXPLAIN QUERY PLAN " + sql).query { out += $0.text(3) + "\n" }
            return out
        }
        let transients = try plan(StoreReader.recentTransientsQuery)
        #expect(transients.contains("USING INDEX history_transients"), "the scrape's transient gauges: \(transients)")
        let ofKind = try plan(StoreReader.historyQuery(HistoryQuery(since: 1, kinds: [.transient])).sql)
        #expect(ofKind.contains("USING INDEX history_transients"), "history --kind transient: \(ofKind)")
        // A scrape after a change reads the log's ends, the entries after its position and the
        // changed rows by key: none of them may read a whole table (the log holds thousands).
        for sql in [StoreReader.rowLogEnds, StoreReader.rowLogSince, StoreReader.rowByKey] {
            let text = try plan(sql)
            #expect(!text.contains("SCAN row_log") && !text.contains("SCAN bindings"), "\(sql): \(text)")
        }
        var half = HistoryQuery(since: 1)
        half.partition = (1, 2)
        for query in [HistoryQuery(since: 1), HistoryQuery(port: 22, since: 1), HistoryQuery(since: 1, kinds: [.open, .close]), half] {
            let text = try plan(StoreReader.historyQuery(query).sql)
            #expect(text.contains("USING INDEX history_by_time") && !text.contains("SCAN history"), "\(query): \(text)")
        }
    }

    /// `portwatch history` reads with one connection per core, each a partition: together
    /// they must read every entry once, each part in time order, and a row read in place must
    /// say what the decoded entry says.
    @Test func historyPartitionsReadEveryEntryOnceInTimeOrder() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        // Times out of id order (as folded transient records are), over several id blocks.
        try store.db.execute("""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
            INSERT INTO history (time, action, netns, protocol, family, address, port, pid, comm, uid, state, opened, reason, count, port_max)
            SELECT 1000 + (i * 7919) % 2500, CASE i % 3 WHEN 0 THEN 'insert' WHEN 1 THEN 'delete' ELSE 'transient' END, 1, 'tcp',
                   'ipv4', '127.0.0.1', 1024 + i, i, 'comm-' || i, 0, 'listen', 500, CASE i % 3 WHEN 1 THEN 'released' ELSE '' END, 1, 1024 + i
            FROM n
            """)
        let reader = try StoreReader(path: path)
        var all = HistoryQuery(since: 1200)
        var expected: [Int64] = []
        try reader.history(all) { expected.append($0.id) }
        #expect(expected.count > 2000 && expected.count < 3000, "the period leaves older entries out")
        var seen: [Int64] = []
        for index in 0..<2 {
            all.partition = (index, 2)
            var part: [(UInt64, Int64)] = []
            try reader.historyRows(all) { row in
                let entry = row.entry
                #expect(row.kind == entry?.kind && row.uint(.time) == entry?.time && row.int(.id) == entry?.id)
                #expect(String(decoding: row.bytes(.comm), as: UTF8.self) == entry?.row.owner.comm)
                part.append((row.uint(.time), row.int(.id)))
            }
            #expect(part.count > 500, "each part has its share")
            #expect(zip(part, part.dropFirst()).allSatisfy { $0 < $1 }, "each part in time order")
            seen += part.map(\.1)
        }
        #expect(seen.sorted() == expected.sorted(), "every entry once")
        // The one column list names every column of the migrated table, and nothing else.
        var tableColumns: Set<String> = []
        let db = try Connection(path: path, readOnly: true)
        try db.prepare("SELECT name FROM pragma_table_info('history')").query { tableColumns.insert($0.text(0)) }
        #expect(Set(HistoryColumn.allCases.map(\.name)) == tableColumns)
        var bindingColumns: Set<String> = []
        try db.prepare("SELECT name FROM pragma_table_info('bindings')").query { bindingColumns.insert($0.text(0)) }
        #expect(Set(BindingColumn.allCases.map(\.name)) == bindingColumns)
        // Keys and owners are read by the same code from both tables: their columns run in one order.
        let historyRun = HistoryColumn.allCases.filter { $0.rawValue >= HistoryColumn.netns.rawValue && $0.rawValue <= HistoryColumn.exe.rawValue }
        #expect(historyRun.map(\.name) == (BindingColumn.key + BindingColumn.owner).map(\.name))
    }

    @Test func aVersionOneLedgerMigratesKeepingItsRows() throws {
        let path = try temporaryDirectory() + "/pw.db"
        do {
            let db = try Connection(path: path, readOnly: false)
            try db.execute(Schema.migrations[0])
            try db.execute("""
                INSERT INTO bindings VALUES (4026531840, 'tcp', 'ipv4', '0.0.0.0', 22, 612, 'sshd', 0, 'listen', 1, 5, 5);
                INSERT INTO history (time, action, netns, protocol, family, address, port, pid, comm, uid, state, opened)
                    VALUES (5, 'insert', 4026531840, 'tcp', 'ipv4', '0.0.0.0', 22, 612, 'sshd', 0, 'listen', 5);
                PRAGMA user_version = 1;
                """)
        }
        let store = try Store(path: path)
        #expect(try store.loadState().rows.keys.map(\.port) == [22], "rows of the old ledger are kept")
        var close = Reconciler(window: 0, rows: try store.loadState().rows)
        close.ingest(PortEvent(kind: .close, cookie: 9, time: 10, key: try #require(try store.loadState().rows.keys.first),
                               owner: Owner(pid: 612, comm: "sshd", uid: 0), state: .listen, reason: .shutdown))
        let batch = close.flush(now: 10)
        try store.apply(try #require(batch))
        let history = try StoreReader(path: path).history()
        #expect(history.map(\.kind) == [.open, .close])
        #expect(history.map(\.reason) == [nil, .shutdown], "old entries have no reason, new ones do")
    }

    /// `history --port` finds a folded transient record by any port it held: its ends and
    /// its inner ports exactly, a port among the ones not kept by the range, and nothing
    /// where every port is known and the port asked for is not among them.
    @Test func aFoldedRecordIsFoundByEveryPortItHeld() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        var exact = HeldPorts(41500)
        exact.add(42000)
        exact.add(41700)
        var overflow = HeldPorts(50_000)
        for p in 50_001...50_100 { overflow.add(UInt16(p)) }
        var batch = Batch()
        batch.transients = [
            RecentTransientsTests.transient(41001, comm: "python3", at: 100),
            TransientBinding(key: BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "127.0.0.1", port: 41500),
                             owner: Owner(pid: 10, comm: "python3", uid: 0), state: .listen, opened: 200, lifetime: 5_000_000, count: 3, held: exact),
            TransientBinding(key: BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "127.0.0.1", port: 50_000),
                             owner: Owner(pid: 11, comm: "flood", uid: 0), state: .listen, opened: 300, lifetime: 5_000_000, count: 101, held: overflow),
        ]
        try store.apply(batch)
        let reader = try StoreReader(path: path)
        let stored = try reader.history().compactMap(\.held)
        #expect(stored == [exact, overflow], "the exact ports and the count of the others come back as written")
        func found(_ ports: ClosedRange<UInt16>) throws -> [String] {
            let q = HistoryQuery(ports: ports, kinds: [.transient])
            var out: [String] = []
            try reader.history(q) { e in out.append("\(e.row.owner.comm) \(q.match(e.held, port: e.row.key.port)!.rawValue)") }
            var rows: [String] = []
            try reader.historyRows(q) { r in rows.append(String(decoding: r.bytes(.comm), as: UTF8.self)) }
            #expect(rows == out.map { String($0.split(separator: " ")[0]) }, "the row reader finds the same")
            return out
        }
        #expect(try found(41001...41001) == ["python3 exact"])
        #expect(try found(41500...41500) == ["python3 exact"], "the first port of the run")
        #expect(try found(42000...42000) == ["python3 exact"], "the last port of the run")
        #expect(try found(41700...41700) == ["python3 exact"], "a port inside the run")
        #expect(try found(41800...41800) == [], "inside the range, never held: every port of that record is known")
        #expect(try found(41000...41600) == ["python3 exact", "python3 exact"])
        let notKept = try #require((50_000...50_100).first { !overflow.ports.contains(UInt16($0)) })
        #expect(try found(UInt16(notKept)...UInt16(notKept)) == ["flood range"], "one of the ports beyond the bound")
        #expect(try found(50_100...50_100) == ["flood exact"])
    }

    /// A ledger from before the exact ports kept a folded record's two ends: every port
    /// between them is found as a range match after the migration.
    @Test func aFoldedRecordOfAnOlderLedgerIsFoundByItsRange() throws {
        let path = try temporaryDirectory() + "/pw.db"
        do {
            let db = try Connection(path: path, readOnly: false)
            // The ledger as it was before the exact ports.
            let before = try #require(Schema.migrations.firstIndex { $0.contains("ports_unlisted") })
            for step in 0..<before { try db.execute(Schema.migrations[step]) }
            try db.execute("""
                INSERT INTO history (time, action, netns, protocol, family, address, port, pid, comm, uid, state, opened, count, port_max)
                    VALUES (5, 'transient', 1, 'tcp', 'ipv4', '127.0.0.1', 41500, 7, 'python3', 0, 'listen', 5, 3, 42000);
                PRAGMA user_version = \(before);
                """)
        }
        _ = try Store(path: path)
        let reader = try StoreReader(path: path)
        let q = HistoryQuery(port: 41700)
        var matches: [PortMatch?] = []
        try reader.history(q) { matches.append(q.match($0.held, port: $0.row.key.port)) }
        #expect(matches == [.range])
        #expect(try reader.history(port: 42000).first?.heldPorts.unlisted == 1)
    }

    /// A row keeps its first socket: a port held by one socket writes no sockets row, and a
    /// second holder (SO_REUSEPORT) is listed apart. After a restart both are known, and
    /// each close takes its own holder away.
    @Test func aRowKeepsItsSocketAndTheSocketsTableListsTheOthers() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let owner = Owner(pid: 1234, comm: "nginx", uid: 33)
        func listed() throws -> [Int64] {
            var cookies: [Int64] = []
            try Store(path: path).db.prepare("SELECT cookie FROM sockets ORDER BY cookie").query { cookies.append($0.int(0)) }
            return cookies
        }
        do {
            let store = try Store(path: path)
            var r = Reconciler(window: 0)
            r.ingest(PortEvent(kind: .open, cookie: 7, time: 1, key: sampleKey, owner: owner, state: .listen))
            let first = r.flush(now: 1)
            try store.apply(try #require(first))
            #expect(try listed().isEmpty, "one socket: the row alone")
            r.ingest(PortEvent(kind: .open, cookie: 8, time: 2, key: sampleKey, owner: owner, state: .listen))
            let second = r.flush(now: 2)
            try store.apply(try #require(second))
            #expect(try listed() == [8])
        }
        for (cookie, left) in [(UInt64(7), [UInt64(8): sampleKey]), (8, [:])] {
            let store = try Store(path: path)
            let state = try store.loadState()
            var r = Reconciler(window: 0, rows: state.rows, sockets: state.sockets)
            #expect(r.sockets.count == left.count + 1, "every socket is known after a restart")
            r.ingest(PortEvent(kind: .close, cookie: cookie, time: 3, key: sampleKey, owner: owner, state: .listen))
            let flushed = r.flush(now: 3)
            let batch = try #require(flushed)
            #expect(batch.counters.orphanCloses.isEmpty, "a known holder closed")
            try store.apply(batch)
            #expect(try store.loadState().sockets == left)
            #expect(try store.loadState().rows[sampleKey]?.holders == (left.isEmpty ? nil : 1))
        }
        #expect(try listed().isEmpty)
    }

    /// A ledger from before rows kept a socket lists every socket apart: they stay known.
    @Test func socketsListedByAnOlderLedgerStayKnown() throws {
        let path = try temporaryDirectory() + "/pw.db"
        do {
            let db = try Connection(path: path, readOnly: false)
            for step in 0..<(Schema.version - 1) { try db.execute(Schema.migrations[step]) }
            try db.execute("""
                INSERT INTO bindings (netns, protocol, family, address, port, pid, comm, uid, state, holders, first_seen, last_change)
                    VALUES (4026531840, 'tcp', 'ipv4', '127.0.0.1', 8080, 612, 'nginx', 0, 'listen', 2, 5, 5);
                INSERT INTO sockets VALUES (41, 4026531840, 'tcp', 'ipv4', '127.0.0.1', 8080), (42, 4026531840, 'tcp', 'ipv4', '127.0.0.1', 8080);
                PRAGMA user_version = \(Schema.version - 1);
                """)
        }
        let store = try Store(path: path)
        let state = try store.loadState()
        #expect(state.sockets == [41: sampleKey, 42: sampleKey])
        var r = Reconciler(window: 0, rows: state.rows, sockets: state.sockets)
        r.ingest(PortEvent(kind: .close, cookie: 41, time: 10, key: sampleKey, owner: Owner(pid: 612, comm: "nginx", uid: 0), state: .listen))
        let batch = r.flush(now: 10)
        try store.apply(try #require(batch))
        #expect(try store.loadState().sockets == [42: sampleKey])
        #expect(try store.loadState().rows[sampleKey]?.holders == 1)
    }

    /// Scrapes and `ls` show rows in the order the store gives them: by port, the order in
    /// which people read a port list, whatever order they were written in.
    @Test func rowsComeBackSortedByPort() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        var r = Reconciler(window: 0)
        for (cookie, port, transport) in [(UInt64(1), UInt16(8080), TransportProtocol.tcp), (2, 22, .tcp), (3, 443, .tcp), (4, 53, .udp), (5, 22, .udp)] {
            r.ingest(PortEvent(kind: .open, cookie: cookie, time: 1, key: BindingKey(netns: 1, transport: transport, family: .ipv4, address: "0.0.0.0", port: port),
                               owner: Owner(pid: 1, comm: "x", uid: 0), state: .listen))
        }
        let batch = r.flush(now: 1)
        try store.apply(try #require(batch))
        let rows = try StoreReader(path: path).snapshot().rows
        #expect(rows.map { "\($0.key.transport)/\($0.key.port)" } == ["tcp/22", "udp/22", "udp/53", "tcp/443", "tcp/8080"])
    }

    /// 10,000 rows, as one batch.
    private func tenThousandRows() -> Batch {
        var batch = Batch()
        batch.changes = (0..<10_000).map { i in
            let key = BindingKey(netns: UInt32(1 + i % 7), transport: .tcp, family: .ipv4, address: "10.0.\(i / 256).\(i % 256)", port: UInt16(1024 + i))
            return RowChange(action: .insert, row: Binding(key: key, owner: Owner(pid: Int32(i), comm: "server-\(i)", uid: 0), state: .listen,
                                                           holders: 1, firstSeen: 1, lastChange: 1), time: 1)
        }
        return batch
    }

    /// The daemon's writer keeps a small page cache whatever the table's size, and writes and
    /// reads back all of it; a writer with SQLite's default keeps megabytes of a large table.
    @Test func theDaemonsWriterKeepsASmallPageCache() throws {
        let dir = try temporaryDirectory()
        let small = try Store(path: dir + "/small.db", cacheKiB: Store.daemonCacheKiB)
        let plain = try Store(path: dir + "/plain.db")
        for store in [small, plain] {
            try store.apply(tenThousandRows())
            #expect(try store.loadState().rows.count == 10_000)
        }
        expectSmallCache(small.db, limitKiB: Store.daemonCacheKiB, plain: plain.db)
    }

    /// `small`'s page cache within `limitKiB` (and a page or so), and under half of `plain`'s.
    private func expectSmallCache(_ small: Connection, limitKiB: Int, plain: Connection) {
        #expect(small.cacheUsed <= (limitKiB + 64) * 1024, "\(small.cacheUsed) bytes")
        #expect(plain.cacheUsed > 2 * small.cacheUsed, "\(plain.cacheUsed) against \(small.cacheUsed) bytes")
    }

    /// 2,000 rows held by one containerised program: as read back (a scrape's first read and
    /// its reads of changed rows, the daemon's start), its executable's path and its attribution
    /// are kept once, not once per row.
    @Test func rowsReadBackShareWhatTheyRepeat() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        let reader = try StoreReader(path: path)
        let attribution = Attribution(unit: "docker-\(String(repeating: "ab", count: 32)).scope", containerID: String(repeating: "ab", count: 32),
                                      pod: "frontend-7d9c5b6f4-x2x9z", namespace: "shop", container: "web")
        func rows(_ range: Range<Int>) -> Batch {
            var batch = Batch()
            batch.changes = range.map { i in
                var owner = Owner(pid: 4242, comm: "frontend", uid: 0, attribution: attribution)
                owner.exe = "/usr/local/bin/frontend-server-\(i % 2)"
                let key = BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "10.0.\(i / 256).\(i % 256)", port: 8080)
                return RowChange(action: .insert, row: Binding(key: key, owner: owner, state: .listen, holders: 1, firstSeen: 1, lastChange: 1), time: 1)
            }
            return batch
        }
        /// Distinct copies of the path's bytes and of the attribution's box among `rows`.
        func copies(_ rows: [Binding]) -> (exe: Int, attribution: Int) {
            (Set(rows.map { $0.owner.exe.utf8.withContiguousStorageIfAvailable { UInt(bitPattern: $0.baseAddress) } ?? 0 }).count,
             Set(rows.map { row in withUnsafeBytes(of: row.owner.attribution) { $0.load(as: UInt.self) } }).count)
        }
        try store.apply(rows(0..<1_000))
        guard case .whole(let first) = try reader.read(since: nil).rows else { Issue.record("not a whole read"); return }
        #expect(first.count == 1_000 && first.allSatisfy { $0.owner.attribution == attribution })
        #expect(copies(first) == (2, 1))
        let position = try reader.read(since: nil).position
        try store.apply(rows(1_000..<2_000))
        guard case .changed(let changed) = try reader.read(since: position).rows else { Issue.record("not a read of changes"); return }
        let added = changed.compactMap(\.row)
        #expect(added.count == 1_000 && added.allSatisfy { $0.owner.exe.hasPrefix("/usr/local/bin/frontend-server-") })
        #expect(copies(first + added) == (2, 1))
        let loaded = Array(try store.loadState().rows.values)
        #expect(loaded.count == 2_000 && copies(loaded) == (2, 1))
    }

    /// The daemon's readers (scrapes, listener health) keep a small page cache whatever the
    /// table's size; a reader with SQLite's default keeps megabytes of a large table.
    @Test func theDaemonsReadersKeepASmallPageCache() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        try store.apply(tenThousandRows())
        let small = try StoreReader(path: path, cacheKiB: StoreReader.daemonCacheKiB)
        let plain = try StoreReader(path: path)
        for reader in [small, plain] {
            guard case .whole(let rows) = try reader.read(since: nil).rows else { Issue.record("not a whole read"); return }
            #expect(rows.count == 10_000)
        }
        expectSmallCache(small.db, limitKiB: StoreReader.daemonCacheKiB, plain: plain.db)
    }

    /// A scrape reads the rows changed since it last looked: inserts, owner updates and deletes
    /// each come back once, by key; nothing when nothing changed; the whole table on the first
    /// read and when the row log no longer reaches back that far. Whatever it reads, the table
    /// it keeps equals the ledger's.
    @Test func aReaderReadsTheRowsChangedSinceItsLastLook() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        let reader = try StoreReader(path: path)
        var kept: [BindingKey: Binding] = [:]
        func apply(_ read: TableRead) {
            switch read.rows {
            case .whole(let rows): kept = Dictionary(uniqueKeysWithValues: rows.map { ($0.key, $0) })
            case .changed(let changes): for (key, row) in changes { kept[key] = row }
            }
        }
        func key(_ port: UInt16) -> BindingKey { BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "0.0.0.0", port: port) }
        func row(_ port: UInt16, pid: Int32 = 1) -> Binding {
            Binding(key: key(port), owner: Owner(pid: pid, comm: "x", uid: 0), state: .listen, holders: 1, firstSeen: 1, lastChange: 1)
        }
        func write(_ changes: [RowChange]) throws {
            var batch = Batch()
            batch.changes = changes
            try store.apply(batch)
        }
        var first = try reader.read(since: nil)
        guard case .whole(let empty) = first.rows, empty.isEmpty else { Issue.record("first read: \(first.rows)"); return }
        try write((1...5).map { RowChange(action: .insert, row: row($0), time: 1) })
        first = try reader.read(since: first.position)
        guard case .changed(let inserted) = first.rows else { Issue.record("not a change read"); return }
        #expect(Set(inserted.map(\.key.port)) == [1, 2, 3, 4, 5])
        apply(first)

        try write([RowChange(action: .update, row: row(2, pid: 7), time: 2), RowChange(action: .delete, row: row(4), time: 2),
                   RowChange(action: .insert, row: row(9), time: 2)])
        let second = try reader.read(since: first.position)
        guard case .changed(let changes) = second.rows else { Issue.record("not a change read"); return }
        #expect(changes.count == 3)
        #expect(changes.first { $0.key.port == 4 }.map { $0.row == nil } == true)
        #expect(changes.first { $0.key.port == 2 }?.row?.owner.pid == 7)
        apply(second)
        #expect(kept == Dictionary(uniqueKeysWithValues: try reader.snapshot().rows.map { ($0.key, $0) }))

        let quiet = try reader.read(since: second.position)
        guard case .changed(let none) = quiet.rows else { Issue.record("not a change read"); return }
        #expect(none.isEmpty && quiet.position == second.position)

        // Far behind: more row changes than the log keeps, then one more batch.
        let churn = Int(Store.rowLogKept) + 4_000
        for start in stride(from: 0, to: churn, by: 1_000) {
            try write((start..<start + 1_000).map { RowChange(action: $0 % 2 == 0 ? .insert : .delete, row: row(UInt16(100 + $0 % 500)), time: 3) })
        }
        let behind = try reader.read(since: second.position)
        guard case .whole = behind.rows else { Issue.record("a reader behind the log must read the whole table"); return }
        apply(behind)
        #expect(kept == Dictionary(uniqueKeysWithValues: try reader.snapshot().rows.map { ($0.key, $0) }))
        // The log was pruned, not emptied: positions go on, and a reader that kept up still reads changes.
        try write([RowChange(action: .delete, row: row(1), time: 4)])
        let after = try reader.read(since: behind.position)
        guard case .changed(let last) = after.rows else { Issue.record("not a change read"); return }
        #expect(last.map(\.key) == [key(1)] && after.position == behind.position + 1)
        var logged: Int64 = 0
        try store.db.prepare("SELECT count(*) FROM row_log").query { logged = $0.int(0) }
        #expect(logged <= Store.rowLogKept + Store.rowLogKept / 4 + 1_000)
    }

    @Test func directoryIsRefusedWithAClearMessage() throws {
        let dir = try temporaryDirectory()
        #expect { try Store(path: dir) } throws: { "\($0)".contains("is a directory") && "\($0)".contains(dir) }
    }

    @Test func foreignFileIsLeftUntouched() throws {
        let path = try temporaryDirectory() + "/notes.txt"
        let content = String(repeating: "my precious notes\n", count: 200)
        try content.write(toFile: path, atomically: true, encoding: .utf8)
        #expect { try Store(path: path) } throws: { "\($0)".contains("not a portwatch SQLite database") && "\($0)".contains(path) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == content)
    }

    @Test func newerSchemaIsRefusedAndKept() throws {
        let path = try temporaryDirectory() + "/pw.db"
        do {
            let store = try Store(path: path)
            try store.apply(sampleBatch())
            try store.db.execute("PRAGMA user_version = 99")
        }
        #expect { try Store(path: path) } throws: { "\($0)".contains("schema version 99") }
        let reader = try StoreReader(path: path)
        #expect(try reader.snapshot().rows.count == 1, "rows are still there")
    }

    @Test func unwritableDirectoryIsExplained() throws {
        #expect { try Store(path: "/proc/portwatch/pw.db") } throws: { "\($0)".contains("/proc/portwatch") }
    }

    @Test func lockedDatabaseIsExplained() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        let other = try Connection(path: path, readOnly: false)
        try other.execute("PRAGMA busy_timeout=0; BEGIN EXCLUSIVE")
        defer { try? other.execute("ROLLBACK") }
        #expect { try store.apply(sampleBatch()) } throws: { "\($0)".contains("locked") }
    }
}

/// The recent-transients query behind the dashboard's short-lived listeners table.
@Suite struct RecentTransientsTests {
    static func transient(_ port: UInt16, comm: String, address: String = "0.0.0.0", at time: UInt64, lifetime: UInt64 = 5_000_000,
                          count: UInt64 = 1, portMax: UInt16? = nil) -> TransientBinding {
        TransientBinding(key: BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: address, port: port),
                         owner: Owner(pid: 10, comm: comm, uid: 0), state: .listen, opened: time, lifetime: lifetime, count: count,
                         portMax: portMax ?? port)
    }

    @Test func perOwnerMostFirstBoundedAndOnlyThePeriod() throws {
        let path = try temporaryDirectory() + "/pw.db"
        let store = try Store(path: path)
        let s: UInt64 = 1_000_000_000
        var batch = Batch()
        batch.transients = [
            Self.transient(4444, comm: "nc", at: 100 * s, lifetime: 300_000_000),
            Self.transient(5555, comm: "nc", at: 110 * s, lifetime: 2_000_000),
            Self.transient(33000, comm: "unbound", address: "127.0.0.1", at: 120 * s, count: 40, portMax: 61000),
            Self.transient(34000, comm: "unbound", address: "127.0.0.53", at: 130 * s, count: 2, portMax: 34010),
            Self.transient(8080, comm: "old", at: 10 * s),
            Self.transient(9090, comm: "curl", address: "10.0.0.1", at: 140 * s),
        ]
        try store.apply(batch)
        let reader = try StoreReader(path: path)
        let all = try reader.recentTransients(since: 50 * s, limit: 10)
        #expect(all.top.map(\.comm) == ["unbound", "nc", "curl"], "most transients first; the one before the period left out")
        #expect(all.dropped == 0)
        let unbound = try #require(all.top.first)
        #expect(unbound.count == 42 && unbound.ports == "33000-61000" && unbound.exposure == .loopback, "one owner across loopback addresses")
        let nc = all.top[1]
        #expect(nc.count == 2 && nc.ports == "4444,5555" && nc.longestLifetime == 300_000_000 && nc.last == 110 * s)
        let capped = try reader.recentTransients(since: 50 * s, limit: 1)
        #expect(capped.top.map(\.comm) == ["unbound"] && capped.dropped == 2)
    }
}
