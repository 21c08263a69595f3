import CSQLite
import Foundation
import Glibc
import PortwatchStore

/// `portwatch history --since 24h` over a large ledger against `sqlite3` selecting the same
/// rows: rows printed per second, time to the first line, and peak memory of each process.
enum HistoryBench {
    struct Run {
        var seconds: Double
        var firstByte: Double
        var lines: Int
        var maxRSS: Double
    }

    static func run(report: Report, rows: Int, repeats: Int) throws {
        let dir = NSTemporaryDirectory() + "pw-bench-history-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/ledger.db"
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        try fill(path: path, rows: rows, older: rows / 10, now: now)
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("portwatch").path
        let since = Int64(now - 24 * 3_600_000_000_000)
        let sql = "SELECT time, action, netns, protocol, family, address, port, pid, comm, uid, unit, container_id, pod, namespace, container, state, opened, reason, lifetime, count, port_max, id FROM history WHERE time >= \(since) ORDER BY time, id"

        var table: [Run] = [], json: [Run] = [], sqlite: [Run] = [], floor: [Double] = []
        for run in 0..<repeats {
            Progress.step("history, \(rows) rows", run: run, of: repeats)
            // Interleaved, so a slow moment of the machine falls on all three alike.
            table.append(try spawn([binary, "history", "--db.path", path, "--since", "24h"]))
            json.append(try spawn([binary, "history", "--db.path", path, "--since", "24h", "--output", "json"]))
            sqlite.append(try spawn(["/usr/bin/sqlite3", "-readonly", path, sql]))
            floor.append(try readAll(path: path, sql: sql, expected: rows))
        }
        // Every row of the period printed (plus the table's header), none of the older ones.
        for (name, runs, extra) in [("table", table, 1), ("json", json, 0), ("sqlite3", sqlite, 0)] {
            for r in runs where r.lines != rows + extra {
                throw BenchError("history bench: \(name) printed \(r.lines) lines, expected \(rows + extra)")
            }
        }
        func rate(_ runs: [Run]) -> [Double] { runs.map { Double(rows) / $0.seconds } }
        let figures = [
            Figure(name: "portwatch history --since 24h (table)", unit: "rows/s", runs: rate(table)),
            Figure(name: "portwatch history --since 24h --output json", unit: "rows/s", runs: rate(json)),
            Figure(name: "baseline: sqlite3 selecting the same rows and columns", unit: "rows/s", runs: rate(sqlite)),
            Figure(name: "floor: the same rows and columns read through SQLite's C API, nothing printed", unit: "rows/s", runs: floor),
            Figure(name: "time to the first line (table)", unit: "ms", runs: table.map { $0.firstByte * 1000 }),
            Figure(name: "time to the first line (sqlite3)", unit: "ms", runs: sqlite.map { $0.firstByte * 1000 }),
            Figure(name: "peak RSS of portwatch history (table)", unit: "MiB", runs: table.map { $0.maxRSS / 1_048_576 }),
            Figure(name: "peak RSS of portwatch history (json)", unit: "MiB", runs: json.map { $0.maxRSS / 1_048_576 }),
            Figure(name: "peak RSS of sqlite3", unit: "MiB", runs: sqlite.map { $0.maxRSS / 1_048_576 }),
        ]
        report.add("Ledger history: \(rows) rows in the last 24 h (and \(rows / 10) older ones left out), printed to a pipe", figures, notes: [
            "table / sqlite3: \(Report.format(figures[0].median / figures[2].median)); json / sqlite3: \(Report.format(figures[1].median / figures[2].median)); "
                + "table / C API floor: \(Report.format(figures[0].median / figures[3].median)) (goal: >= 1,000,000 rows/s)",
        ])
    }

    /// Rows per second of `sql` stepped through and every column read (integers as integers,
    /// text as text) in this process: what any reader of this ledger pays before printing.
    static func readAll(path: String, sql: String, expected: Int) throws -> Double {
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK else { throw BenchError("cannot open \(path)") }
        defer { sqlite3_close(db) }
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else { throw BenchError("cannot prepare: \(String(cString: sqlite3_errmsg(db)))") }
        defer { sqlite3_finalize(stmt) }
        var rows = 0, bytes = 0
        let seconds = Measure.time {
            let columns = sqlite3_column_count(stmt)
            while sqlite3_step(stmt) == SQLITE_ROW {
                rows += 1
                for i in 0..<columns {
                    if sqlite3_column_type(stmt, i) == SQLITE_INTEGER {
                        bytes &+= Int(truncatingIfNeeded: sqlite3_column_int64(stmt, i))
                    } else {
                        _ = sqlite3_column_text(stmt, i)
                        bytes &+= Int(sqlite3_column_bytes(stmt, i))
                    }
                }
            }
        }
        guard rows == expected else { throw BenchError("history bench: the C API read \(rows) rows, expected \(expected)") }
        return Double(rows) / seconds
    }

    /// A ledger with `rows` history entries spread over the last 20 hours and `older` entries
    /// from three days ago: opens and closes of many owners, some with a unit or a pod.
    static func fill(path: String, rows: Int, older: Int, now: UInt64) throws {
        _ = try Store(path: path)
        var db: OpaquePointer?
        guard sqlite3_open(path, &db) == SQLITE_OK else { throw BenchError("cannot open \(path)") }
        defer { sqlite3_close(db) }
        let recent = Int64(now - 20 * 3_600_000_000_000), old = Int64(now - 72 * 3_600_000_000_000)
        let step = Int64(20 * 3_600_000_000_000) / Int64(max(1, rows))
        func insert(_ count: Int, from start: Int64, step: Int64) -> String {
            """
            WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < \(count - 1))
            INSERT INTO history (time, action, netns, protocol, family, address, port, pid, comm, uid, state, opened, reason,
                                 unit, container_id, pod, namespace, container, lifetime, count, port_max)
            SELECT \(start) + i * \(step), CASE i % 2 WHEN 0 THEN 'insert' ELSE 'delete' END, 4026531840,
                   CASE i % 3 WHEN 0 THEN 'udp' ELSE 'tcp' END, CASE i % 4 WHEN 0 THEN 'ipv6' ELSE 'ipv4' END,
                   CASE i % 4 WHEN 0 THEN '::' ELSE '10.0.' || (i % 200) || '.1' END, 1024 + i % 50000, 1000 + i % 30000,
                   'server-' || (i % 97), i % 1000, 'listen', \(start) + i * \(step) - 5000000000,
                   CASE i % 2 WHEN 0 THEN '' ELSE 'released' END,
                   CASE i % 5 WHEN 0 THEN 'web-' || (i % 13) || '.service' ELSE '' END, '',
                   CASE i % 7 WHEN 0 THEN 'api-' || (i % 31) ELSE '' END, CASE i % 7 WHEN 0 THEN 'prod' ELSE '' END, '', 0, 1, 1024 + i % 50000
            FROM n
            """
        }
        for sql in ["BEGIN", insert(older, from: old, step: 1_000_000), insert(rows, from: recent, step: step), "COMMIT"] {
            guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw BenchError("filling the ledger: \(String(cString: sqlite3_errmsg(db)))") }
        }
    }

    /// Runs `argv` with stdout on a pipe read here: wall time to EOF and exit, time to the first
    /// byte, lines read, and the child's peak RSS: its VmHWM, sampled every 20 ms while it writes
    /// (wait4's ru_maxrss would report this process's, which a spawned child inherits across exec).
    static func spawn(_ argv: [String]) throws -> Run {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw BenchError("pipe: \(errno)") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
        posix_spawn_file_actions_addclose(&actions, pipeFDs[1])
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let start = Measure.now()
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ)
        close(pipeFDs[1])
        defer { close(pipeFDs[0]) }
        guard rc == 0 else { throw BenchError("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var firstByte = 0.0, lines = 0, peak = 0.0, sampled = 0.0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if firstByte == 0 { firstByte = Measure.now() - start }
            for i in 0..<n where buffer[i] == 10 { lines += 1 }
            if Measure.now() - sampled > 0.02 {
                sampled = Measure.now()
                peak = max(peak, Measure.statusField(pid: pid, "VmHWM:"))
            }
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let seconds = Measure.now() - start
        guard status == 0 else { throw BenchError("\(argv.prefix(2).joined(separator: " ")) exited with status \(status)") }
        return Run(seconds: seconds, firstByte: firstByte, lines: lines, maxRSS: peak)
    }
}
