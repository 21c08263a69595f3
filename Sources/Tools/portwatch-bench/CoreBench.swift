import CSQLite
import Foundation
import PortwatchCore
import PortwatchStore

/// Reconciler and store on their own, each against the simplest code doing the same work.
enum CoreBench {
    /// A realistic mix, 100 µs apart (10,000 events/s of simulated time): 5,000 live sockets
    /// on 10,000 keys closing at random (so most live about a second, longer than the 200 ms
    /// window), and one open in five a transient closed 10 µs later.
    static func events(count: Int) -> [PortEvent] {
        var g = SystemRandomNumberGenerator()
        var out: [PortEvent] = []
        out.reserveCapacity(count)
        var live: [(UInt64, BindingKey)] = []
        var cookie: UInt64 = 1
        var t: UInt64 = 1_700_000_000_000_000_000
        let owner = Owner(pid: 1234, comm: "server", uid: 0)
        while out.count < count {
            t += 100_000
            if live.count < 5_000 || Int.random(in: 0..<2, using: &g) == 0 {
                let key = BindingKey(netns: 4026531840, transport: Bool.random(using: &g) ? .tcp : .udp, family: .ipv4,
                                     address: "10.0.\(Int.random(in: 0..<40, using: &g)).1", port: UInt16.random(in: 1024...1273, using: &g))
                out.append(PortEvent(kind: .open, cookie: cookie, time: t, key: key, owner: owner, state: .listen))
                if Int.random(in: 0..<5, using: &g) == 0 {
                    // Transient: closed 10 µs later.
                    out.append(PortEvent(kind: .close, cookie: cookie, time: t + 10_000, key: key, owner: owner, state: .listen))
                } else {
                    live.append((cookie, key))
                }
                cookie += 1
            } else {
                let i = Int.random(in: 0..<live.count, using: &g)
                live.swapAt(i, live.count - 1)
                let (c, key) = live.removeLast()
                out.append(PortEvent(kind: .close, cookie: c, time: t, key: key, owner: owner, state: .listen))
            }
        }
        return out
    }

    /// Every binding long-lived and on a key of its own: each open inserts a row and each close
    /// (0.5 s of simulated time later, past the window) deletes one, so every event is a row change.
    static func longLivedEvents(count: Int) -> [PortEvent] {
        var out: [PortEvent] = []
        out.reserveCapacity(count)
        var live: [(UInt64, BindingKey)] = []
        var head = 0
        var cookie: UInt64 = 1
        var t: UInt64 = 1_700_000_000_000_000_000
        let owner = Owner(pid: 1234, comm: "server", uid: 0)
        while out.count < count {
            t += 100_000
            if live.count - head < 5_000 {
                let n = Int(cookie)
                let key = BindingKey(netns: 4026531840, transport: .tcp, family: .ipv4, address: "10.\(n >> 16 & 255).\(n >> 8 & 255).1",
                                     port: UInt16(1024 + n & 255))
                out.append(PortEvent(kind: .open, cookie: cookie, time: t, key: key, owner: owner, state: .listen))
                live.append((cookie, key))
                cookie += 1
            } else {
                let (c, key) = live[head]
                head += 1
                out.append(PortEvent(kind: .close, cookie: c, time: t, key: key, owner: owner, state: .listen))
            }
        }
        return out
    }

    /// Events through the reconciler (200 ms window) and the store, in ring-buffer-sized chunks,
    /// each flush written in its transaction. Returns events/s, row changes, transient bindings.
    static func reconcileAndStore(_ events: [PortEvent], path: String) throws -> (rate: Double, changes: Int, transients: Int, storeShare: Double) {
        // The writer as the daemon opens it (its page cache included).
        let store = try Store(path: path, cacheKiB: Store.daemonCacheKiB)
        var r = Reconciler(window: 200_000_000)
        var changes = 0, transients = 0
        var storeSeconds = 0.0
        func write(_ batch: Batch) throws {
            changes += batch.changes.count
            transients += batch.transients.count
            storeSeconds += try Measure.time { try store.apply(batch) }
        }
        let seconds = try Measure.time {
            for chunk in stride(from: 0, to: events.count, by: 4096) {
                let part = events[chunk..<min(events.count, chunk + 4096)]
                r.ingest(part)
                if let batch = r.flush(now: part.last!.time) { try write(batch) }
            }
            if let batch = r.flushAll() { try write(batch) }
        }
        return (Double(events.count) / seconds, changes, transients, storeSeconds / seconds)
    }

    static func run(report: Report, repeats: Int) throws {
        let events = Self.events(count: 1_000_000)
        let longLived = Self.longLivedEvents(count: 400_000)
        var reconcilerRate: [Double] = [], baselineRate: [Double] = [], mixRate: [Double] = [], longRate: [Double] = []
        var rawSQLiteRate: [Double] = [], statementsRate: [Double] = [], rowsAloneRate: [Double] = []
        var transientShare = 0.0, longChanges = 0, mixStoreShare: [Double] = [], longStoreShare: [Double] = []
        for run in 0..<repeats {
            Progress.step("reconciler and store", run: run, of: repeats)
            // Reconciler: ingest in ring-buffer-sized chunks, flush after each.
            var r = Reconciler(window: 200_000_000)
            let seconds = Measure.time {
                for chunk in stride(from: 0, to: events.count, by: 4096) {
                    let part = events[chunk..<min(events.count, chunk + 4096)]
                    r.ingest(part)
                    _ = r.flush(now: part.last!.time)
                }
                _ = r.flushAll()
            }
            reconcilerRate.append(Double(events.count) / seconds)

            // Baseline: remembering which socket holds which key, nothing else.
            var sockets: [UInt64: BindingKey] = [:]
            let baseline = Measure.time {
                for e in events { if e.kind == .open { sockets[e.cookie] = e.key } else { sockets[e.cookie] = nil } }
            }
            baselineRate.append(Double(events.count) / baseline)

            let dir = NSTemporaryDirectory() + "pw-bench-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            // (a) The realistic mix through reconciler and store; its transient share as measured.
            let mix = try reconcileAndStore(events, path: dir + "/mix.db")
            mixRate.append(mix.rate)
            mixStoreShare.append(mix.storeShare)
            let opens = events.reduce(0) { $0 + ($1.kind == .open ? 1 : 0) }
            transientShare = Double(mix.transients) / Double(opens)
            // (b) Every binding long-lived: every event a row change.
            let long = try reconcileAndStore(longLived, path: dir + "/long.db")
            longRate.append(long.rate)
            longStoreShare.append(long.storeShare)
            longChanges = long.changes
            // Baseline: the least SQLite work storing as many rows, in transactions of the same size.
            let perTransaction = max(1, long.changes / max(1, longLived.count / 4096))
            rawSQLiteRate.append(Double(long.changes) / (try rawInserts(path: dir + "/raw.db", rows: long.changes, perTransaction: perTransaction)))
            // Floor: the store's statements for the same events, by SQLite alone.
            statementsRate.append(Double(longLived.count) / (try storeStatementsAlone(longLived, path: dir + "/statements.db")))
            rowsAloneRate.append(Double(longLived.count) / (try storeStatementsAlone(longLived, path: dir + "/rows.db", history: false)))
        }
        let figures = [
            Figure(name: "reconciler alone, realistic mix", unit: "events/s", runs: reconcilerRate),
            Figure(name: "baseline: a dictionary of live sockets", unit: "events/s", runs: baselineRate),
            Figure(name: "(a) reconciler + SQLite store, realistic mix", unit: "events/s", runs: mixRate),
            Figure(name: "(b) reconciler + SQLite store, every binding long-lived (every event a row change)", unit: "events/s", runs: longRate),
            Figure(name: "baseline: raw SQLite inserts of as many rows, same transaction size", unit: "rows/s", runs: rawSQLiteRate),
            Figure(name: "floor: the store's SQL statements for (b)'s events, one row each, the events' fields bound straight (owner fixed), no portwatch code", unit: "events/s", runs: statementsRate),
            Figure(name: "floor without history: the same, the bindings row's statements alone", unit: "events/s", runs: rowsAloneRate),
        ]
        report.add("Reconciler and store (200 ms window; (a) 1,000,000 events on 10,000 keys, (b) 400,000 events)", figures, notes: [
            "(a) transient share measured: \(Report.format(transientShare * 100))% of opens were transient",
            "(b) \(longChanges) row changes for \(longLived.count) events",
            "share of the time in Store.apply (the rest is the reconciler): (a) \(Report.format(Measure.percentile(mixStoreShare, 0.5) * 100))%, (b) \(Report.format(Measure.percentile(longStoreShare, 0.5) * 100))%",
            "reconciler / dictionary baseline: \(Report.format(figures[0].median / figures[1].median))",
            "(b) / raw SQLite: \(Report.format(figures[3].median / figures[4].median)) (goal >= 0.45); vs 200 k events/s: \(Report.format(figures[3].median / 200_000))",
            "the store's SQL alone / raw SQLite: \(Report.format(figures[5].median / figures[4].median)) (a bindings row and a history row per event); (b) / the store's SQL alone: \(Report.format(figures[3].median / figures[5].median))",
            "the bindings row's statements alone / raw SQLite: \(Report.format(figures[6].median / figures[4].median)) (what a store that kept no history would reach)",
        ])
    }

    /// The store's own statements for each event of `events` (all opens and closes of
    /// long-lived bindings), one row per statement, run with plain SQLite calls in transactions
    /// of 4,096 events: the key, cookie and time bound straight from each event, the owner's
    /// columns fixed. What SQLite alone spends on portwatch's schema, with no reconciler and no
    /// row encoding.
    /// Returns the seconds taken.
    /// Without `history`, the rows alone: what any store keeping this row reaches.
    static func storeStatementsAlone(_ events: [PortEvent], path: String, history: Bool = true) throws -> Double {
        do { _ = try Store(path: path) }  // the schema, made and migrated as the daemon does
        var db: OpaquePointer?
        sqlite3_open(path, &db)
        defer { sqlite3_close(db) }
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", nil, nil, nil)
        /// A statement and, for each of its parameters, which value of the event it takes.
        struct Prepared {
            let stmt: OpaquePointer
            let values: [Value]
            init(_ db: OpaquePointer?, _ sql: Store.SQL) throws {
                var stmt: OpaquePointer?
                guard sqlite3_prepare_v2(db, sql.text, -1, &stmt, nil) == SQLITE_OK, let stmt else {
                    throw BenchError("cannot prepare \(sql.text): \(String(cString: sqlite3_errmsg(db)))")
                }
                self.stmt = stmt
                values = try sql.columns.map { try Value(column: $0) }
            }
        }
        enum Value {
            case netns, port, cookie, time, action, reason, address, noPorts, constant(Int64), text(StaticString)
            init(column: String) throws {
                switch column {
                case "netns": self = .netns
                case "port", "port_max": self = .port
                case "cookie": self = .cookie
                case "time", "opened", "first_seen", "last_change": self = .time
                case "action": self = .action
                case "reason": self = .reason
                case "address": self = .address
                case "protocol": self = .text("tcp")
                case "family": self = .text("ipv4")
                case "state": self = .text("listen")
                case "comm": self = .text("server")
                case "exe": self = .text("/usr/sbin/server")
                case "unit", "container_id", "pod", "namespace", "container": self = .text("")
                case "pid": self = .constant(1234)
                case "uid", "lifetime": self = .constant(0)
                case "holders", "count": self = .constant(1)
                // A long-lived binding's history entry holds its one port: no list, none unlisted.
                case "ports": self = .noPorts
                case "ports_unlisted": self = .constant(0)
                default: throw BenchError("the store writes a column the benchmark does not know: \(column)")
                }
            }
        }
        let insertRow = try Prepared(db, Store.SQL.insertRow), deleteRow = try Prepared(db, Store.SQL.deleteRow)
        let appendHistory = try Prepared(db, Store.SQL.appendHistory)
        defer { for p in [insertRow, deleteRow, appendHistory] { sqlite3_finalize(p.stmt) } }
        // Each address's text made before the clock starts.
        let addresses = events.map { Array($0.key.address.utf8) }
        func run(_ p: Prepared, _ i: Int) {
            let e = events[i]
            for (n, value) in p.values.enumerated() {
                let at = Int32(n + 1)
                switch value {
                case .netns: sqlite3_bind_int64(p.stmt, at, Int64(e.key.netns))
                case .port: sqlite3_bind_int64(p.stmt, at, Int64(e.key.port))
                case .cookie: sqlite3_bind_int64(p.stmt, at, Int64(bitPattern: e.cookie))
                case .time: sqlite3_bind_int64(p.stmt, at, Int64(bitPattern: e.time))
                case .constant(let v): sqlite3_bind_int64(p.stmt, at, v)
                case .action: bindStatic(p.stmt, at, e.kind == .open ? "open" : "close")
                case .reason: bindStatic(p.stmt, at, e.kind == .open ? "" : "released")
                case .text(let t): bindStatic(p.stmt, at, t)
                case .noPorts: sqlite3_bind_null(p.stmt, at)
                case .address:
                    addresses[i].withUnsafeBufferPointer {
                        _ = sqlite3_bind_text(p.stmt, at, UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), Int32($0.count), pw_sqlite_transient())
                    }
                }
            }
            sqlite3_step(p.stmt)
            sqlite3_reset(p.stmt)
        }
        let seconds = Measure.time {
            for start in stride(from: 0, to: events.count, by: 4096) {
                sqlite3_exec(db, "BEGIN", nil, nil, nil)
                for i in start..<min(events.count, start + 4096) {
                    // Each socket is its row's only one: the row keeps it, no sockets row.
                    run(events[i].kind == .open ? insertRow : deleteRow, i)
                    if history { run(appendHistory, i) }
                }
                sqlite3_exec(db, "COMMIT", nil, nil, nil)
            }
        }
        // Every statement's result went unchecked in the loop: the rows must all be there.
        var count: OpaquePointer?
        sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM history), (SELECT count(*) FROM sockets), (SELECT count(*) FROM bindings)", -1, &count, nil)
        defer { sqlite3_finalize(count) }
        let opens = events.reduce(0) { $0 + ($1.kind == .open ? 1 : 0) }
        let live = Int64(opens - (events.count - opens))
        guard sqlite3_step(count) == SQLITE_ROW else { throw BenchError("cannot count rows: \(String(cString: sqlite3_errmsg(db)))") }
        let found = (0..<3).map { sqlite3_column_int64(count, $0) }
        let expected = [history ? Int64(events.count) : 0, 0, live]
        guard found == expected else {
            throw BenchError("the store's statements run alone wrote \(found) history, sockets and bindings rows, not \(expected)")
        }
        return seconds
    }

    private static func bindStatic(_ stmt: OpaquePointer, _ at: Int32, _ text: StaticString) {
        // A literal: its bytes live as long as the program (and "" is a pointer to a NUL).
        _ = text.utf8Start.withMemoryRebound(to: CChar.self, capacity: text.utf8CodeUnitCount + 1) {
            sqlite3_bind_text(stmt, at, $0, Int32(text.utf8CodeUnitCount), nil)
        }
    }

    /// The least SQLite work that stores the same number of rows.
    static func rawInserts(path: String, rows: Int, perTransaction: Int) throws -> Double {
        var db: OpaquePointer?
        sqlite3_open(path, &db)
        defer { sqlite3_close(db) }
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE t (a INTEGER, b TEXT, c INTEGER, PRIMARY KEY (a, b, c)) WITHOUT ROWID", nil, nil, nil)
        var stmt: OpaquePointer?
        sqlite3_prepare_v2(db, "INSERT INTO t VALUES (?, ?, ?)", -1, &stmt, nil)
        defer { sqlite3_finalize(stmt) }
        return Measure.time {
            for start in stride(from: 0, to: rows, by: perTransaction) {
                sqlite3_exec(db, "BEGIN", nil, nil, nil)
                for i in start..<min(rows, start + perTransaction) {
                    sqlite3_bind_int64(stmt, 1, Int64(i))
                    sqlite3_bind_text(stmt, 2, "10.0.0.1", -1, pw_sqlite_transient())
                    sqlite3_bind_int64(stmt, 3, Int64(i % 65536))
                    sqlite3_step(stmt)
                    sqlite3_reset(stmt)
                }
                sqlite3_exec(db, "COMMIT", nil, nil, nil)
            }
        }
    }
}
