import CSQLite
import Foundation
import PortwatchCore
import PortwatchStore

/// Reconciler and store on their own, each against the simplest code doing the same work.
enum CoreBench {
    /// A realistic mix: 10,000 keys, sockets that live long and sockets that are transient,
    /// a few SO_REUSEPORT groups, 1 µs apart.
    static func events(count: Int) -> [PortEvent] {
        var g = SystemRandomNumberGenerator()
        var out: [PortEvent] = []
        out.reserveCapacity(count)
        var live: [(UInt64, BindingKey)] = []
        var cookie: UInt64 = 1
        var t: UInt64 = 1_700_000_000_000_000_000
        let owner = Owner(pid: 1234, comm: "server", uid: 0)
        while out.count < count {
            t += 1_000
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

    static func run(report: Report, repeats: Int) throws {
        let events = Self.events(count: 1_000_000)
        var reconcilerRate: [Double] = [], baselineRate: [Double] = [], withStoreRate: [Double] = []
        var storeRate: [Double] = [], rawSQLiteRate: [Double] = []
        for _ in 0..<repeats {
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

            // Reconciler plus store: every batch written in its transaction.
            let dir = NSTemporaryDirectory() + "pw-bench-\(UUID().uuidString)"
            let store = try Store(path: dir + "/pw.db")
            var r2 = Reconciler(window: 200_000_000)
            var changes = 0
            let full = try Measure.time {
                for chunk in stride(from: 0, to: events.count, by: 4096) {
                    let part = events[chunk..<min(events.count, chunk + 4096)]
                    r2.ingest(part)
                    if let batch = r2.flush(now: part.last!.time) { changes += batch.changes.count; try store.apply(batch) }
                }
                if let batch = r2.flushAll() { changes += batch.changes.count; try store.apply(batch) }
            }
            withStoreRate.append(Double(events.count) / full)

            // Store alone: row changes per second in batches of 1,000, against raw SQLite inserts.
            var rows = Reconciler(window: 0)
            var batches: [Batch] = []
            let opens = events.filter { $0.kind == .open }
            for chunk in stride(from: 0, to: 200_000, by: 1000) {
                rows.ingest(opens[chunk..<chunk + 1000])
                batches.append(rows.flush(now: .max)!)
            }
            let rowCount = batches.reduce(0) { $0 + $1.changes.count }
            let store2 = try Store(path: dir + "/store.db")
            storeRate.append(Double(rowCount) / (try Measure.time { for b in batches { try store2.apply(b) } }))
            rawSQLiteRate.append(Double(rowCount) / (try rawInserts(path: dir + "/raw.db", rows: rowCount, perTransaction: 1000)))
            try? FileManager.default.removeItem(atPath: dir)
        }
        let figures = [
            Figure(name: "reconciler", unit: "events/s", runs: reconcilerRate),
            Figure(name: "baseline: a dictionary of live sockets", unit: "events/s", runs: baselineRate),
            Figure(name: "reconciler + SQLite store", unit: "events/s", runs: withStoreRate),
            Figure(name: "store: row changes in batches of 1,000", unit: "rows/s", runs: storeRate),
            Figure(name: "baseline: raw SQLite inserts, 1,000 per transaction", unit: "rows/s", runs: rawSQLiteRate),
        ]
        report.add("Reconciler and store (1,000,000 events, 10,000 keys, 20% transient)", figures, notes: [
            "reconciler / dictionary baseline: \(Report.format(figures[0].median / figures[1].median))",
            "store / raw SQLite: \(Report.format(figures[3].median / figures[4].median))",
            "reconciler + store vs the 1,000,000 events/s goal: \(Report.format(figures[2].median / 1_000_000))",
        ])
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
