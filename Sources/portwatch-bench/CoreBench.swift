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
        let store = try Store(path: path)
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
        var rawSQLiteRate: [Double] = []
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
        }
        let figures = [
            Figure(name: "reconciler alone, realistic mix", unit: "events/s", runs: reconcilerRate),
            Figure(name: "baseline: a dictionary of live sockets", unit: "events/s", runs: baselineRate),
            Figure(name: "(a) reconciler + SQLite store, realistic mix", unit: "events/s", runs: mixRate),
            Figure(name: "(b) reconciler + SQLite store, every binding long-lived (every event a row change)", unit: "events/s", runs: longRate),
            Figure(name: "baseline: raw SQLite inserts of as many rows, same transaction size", unit: "rows/s", runs: rawSQLiteRate),
        ]
        report.add("Reconciler and store (200 ms window; (a) 1,000,000 events on 10,000 keys, (b) 400,000 events)", figures, notes: [
            "(a) transient share measured: \(Report.format(transientShare * 100))% of opens were transient",
            "(b) \(longChanges) row changes for \(longLived.count) events",
            "share of the time in Store.apply (the rest is the reconciler): (a) \(Report.format(Measure.percentile(mixStoreShare, 0.5) * 100))%, (b) \(Report.format(Measure.percentile(longStoreShare, 0.5) * 100))%",
            "reconciler / dictionary baseline: \(Report.format(figures[0].median / figures[1].median))",
            "(b) / raw SQLite: \(Report.format(figures[3].median / figures[4].median)) (goal >= 0.45); vs 200 k events/s: \(Report.format(figures[3].median / 200_000))",
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
