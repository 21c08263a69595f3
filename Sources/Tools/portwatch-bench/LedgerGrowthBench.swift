import CSQLite
import Foundation
import PortwatchCore
import PortwatchStore

/// How fast transient records grow the ledger at 1,000 random-port transients per second, through
/// the daemon's own path (TransientLog folding and its per-minute cap, then Store.apply every
/// 50 ms tick), on a simulated clock. Baseline in the same run: one record per transient (what
/// per-key coalescing writes when every port is new).
enum LedgerGrowthBench {
    /// The owners: a resolver (random UDP source ports), a DNS client run by scripts, and 20
    /// batch jobs opening short TCP listeners; 1,000 transients per second in all.
    struct Source {
        var comm: String
        var transport: TransportProtocol
        var address: String
        var perSecond: Int
    }

    static let sources: [Source] = [
        Source(comm: "unbound", transport: .udp, address: "127.0.0.1", perSecond: 700),
        Source(comm: "dig", transport: .udp, address: "0.0.0.0", perSecond: 200),
    ] + (0..<20).map { Source(comm: "job-\($0)", transport: .tcp, address: "0.0.0.0", perSecond: 5) }

    static func run(report: Report, repeats: Int, minutes: Int) throws {
        var folded: [Double] = [], unfolded: [Double] = [], recordsPerDay: [Double] = [], everyOwnerNew: [Double] = []
        var accounting = "", worstAccounting = ""
        for run in 0..<repeats {
            Progress.step("ledger growth", run: run, of: repeats)
            let r = try simulate(minutes: minutes, fold: true)
            guard r.represented + r.dropped == r.generated else {
                throw BenchError("ledger growth: \(r.generated) transients generated but \(r.represented) recorded + \(r.dropped) counted as dropped")
            }
            accounting = "\(r.generated) transients in \(minutes) simulated minutes: \(r.records) records stand for \(r.represented), \(r.dropped) counted as dropped"
            folded.append(r.bytes * (1440 / Double(minutes)) / 1_048_576)
            recordsPerDay.append(Double(r.records) * (1440 / Double(minutes)))
            let base = try simulate(minutes: 1, fold: false)
            unfolded.append(base.bytes * 1440 / 1_048_576)
            let worst = try simulate(minutes: minutes, fold: true, everyOwnerNew: true)
            guard worst.represented + worst.dropped == worst.generated else {
                throw BenchError("ledger growth, every owner new: \(worst.generated) generated but \(worst.represented) recorded + \(worst.dropped) dropped")
            }
            worstAccounting = "every owner new: \(worst.records) records stand for \(worst.represented), \(worst.dropped) counted in portwatch_transient_records_dropped_total"
            everyOwnerNew.append(worst.bytes * (1440 / Double(minutes)) / 1_048_576)
        }
        let figures = [
            Figure(name: "ledger growth, transients folded per owner and capped (the daemon)", unit: "MiB/day", runs: folded),
            Figure(name: "history records written", unit: "records/day", runs: recordsPerDay),
            Figure(name: "baseline: one record per transient", unit: "MiB/day", runs: unfolded),
            Figure(name: "worst case: every transient a new process name (the per-minute cap bounds it)", unit: "MiB/day", runs: everyOwnerNew),
        ]
        report.add("Ledger growth at 1,000 random-port transients/s (22 owners)", figures, notes: [
            accounting, worstAccounting,
            "one record per transient writes \(Report.format(figures[2].median / figures[0].median))x what the daemon writes",
            "vs the 50 MiB/day goal: \(Report.format(figures[0].median / 50)), worst case \(Report.format(figures[3].median / 50)); the ledger keeps --db.history-retention (7d) of it",
        ])
    }

    struct Result {
        var bytes: Double
        var records = 0
        var generated: UInt64 = 0
        var represented: UInt64 = 0
        var dropped: UInt64 = 0
    }

    /// Simulated `minutes` of transients written to a fresh ledger; the bytes it grew by
    /// (database pages after a checkpoint, indexes included).
    static func simulate(minutes: Int, fold: Bool, everyOwnerNew: Bool = false) throws -> Result {
        let dir = NSTemporaryDirectory() + "pw-growth-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/pw.db"
        var result = Result(bytes: 0)
        var log = TransientLog()
        var g = SystemRandomNumberGenerator()
        do {
            let store = try Store(path: path)
            let before = try databaseBytes(path)
            let tick: UInt64 = 50_000_000
            var now: UInt64 = 1_767_225_600_000_000_000
            let ticks = minutes * 60 * 20
            var cookiePid: Int32 = 1000
            for i in 0..<ticks {
                now += tick
                var found: [TransientSocket] = []
                for s in sources {
                    // Spread over the 20 ticks of a second, so 5 per second is 5, not 0.
                    for _ in 0..<(s.perSecond * (i + 1) / 20 - s.perSecond * i / 20) {
                        cookiePid += 1
                        found.append(TransientSocket(
                            key: BindingKey(netns: 4026531840, transport: s.transport, family: .ipv4, address: s.address,
                                            port: UInt16.random(in: 32768...60999, using: &g)),
                            process: OwnerProcess(pid: s.comm == "unbound" ? 800 : cookiePid, name: ProcessName(everyOwnerNew ? "w\(cookiePid)" : s.comm), uid: 100),
                            state: s.transport == .tcp ? .listen : .bound, opened: now - UInt64.random(in: 1_000_000...40_000_000, using: &g),
                            lifetime: UInt64.random(in: 100_000...5_000_000, using: &g)))
                    }
                }
                result.generated += UInt64(found.count)
                var batch = Batch()
                batch.transients = fold ? log.add(found, now: now) + log.due(now: now) : found.map { TransientBinding($0, attribution: Attribution()) }
                if !batch.transients.isEmpty { try store.apply(batch) }
                result.records += batch.transients.count
                result.represented += batch.transients.reduce(0) { $0 + $1.count }
            }
            var last = Batch()
            last.transients = fold ? log.drain(now: now) : []
            if !last.transients.isEmpty { try store.apply(last) }
            result.records += last.transients.count
            result.represented += last.transients.reduce(0) { $0 + $1.count }
            result.dropped = fold ? log.dropped : 0
            result.bytes = try databaseBytes(path) - before
        }
        return result
    }

    /// The database's size once its write-ahead log is checkpointed into it.
    static func databaseBytes(_ path: String) throws -> Double {
        var db: OpaquePointer?
        guard sqlite3_open(path, &db) == SQLITE_OK else { throw BenchError("cannot open \(path)") }
        defer { sqlite3_close(db) }
        sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", nil, nil, nil)
        var stmt: OpaquePointer?
        sqlite3_prepare_v2(db, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()", -1, &stmt, nil)
        defer { sqlite3_finalize(stmt) }
        guard sqlite3_step(stmt) == SQLITE_ROW else { throw BenchError("cannot read the size of \(path)") }
        return Double(sqlite3_column_int64(stmt, 0))
    }
}
