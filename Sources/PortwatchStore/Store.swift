import FoundationEssentials
import Glibc
import PortwatchCore
import PortwatchSystem

/// The reconciled table and counters on disk. One writer (the capture thread); readers open
/// their own read-only `StoreReader`. Rows, sockets, counters and history of one batch are
/// written in one transaction, so gauges and counters always agree and survive restarts.
public final class Store {
    public let path: String
    let db: Connection
    private let insertRow, deleteRow, insertSocket, deleteSocket, addCounter, appendHistory, appendHistoryRows, logRow, pruneRowLog: Statement
    /// Row changes logged since the row log was last pruned.
    private var loggedSincePrune = 0

    /// Entries of the row log kept: a scrape that last looked more row changes ago than this
    /// reads the whole table again.
    public static let rowLogKept: Int64 = 16_384

    /// History entries per INSERT when a batch has many: each statement run has its own
    /// setup (32 to a statement: 8% more events/s in the core benchmark's (a) and (b)).
    static let historyRowsPerStatement = 32

    /// Held while this store writes: one writer per ledger (see `init(path:exclusive:)`).
    private let writerLock: FileDescriptor?

    /// The page cache of the daemon's writer. SQLite's default (about 2 MiB) fills as the
    /// ledger grows, and stays; the writer's statements reach rows by key, and pages it no
    /// longer keeps are read again from the kernel's page cache.
    public static let daemonCacheKiB = 512

    /// Opens (creating if needed) and migrates the database at `path`.
    /// Never deletes or overwrites a file it cannot use: it says why and throws.
    /// `exclusive` (the daemon) takes the ledger for this store alone, before anything is
    /// written: while another writer holds it, this throws naming that process. `cacheKiB`: the
    /// most this connection's page cache keeps (SQLite's default when nil).
    public init(path: String, exclusive: Bool = false, cacheKiB: Int? = nil) throws {
        self.path = path
        try Self.checkPlace(path)
        let db = try Self.wrap(path, "cannot open") { try Connection(path: path, readOnly: false) }
        writerLock = exclusive ? try Self.takeWriterLock(path) : nil
        try Self.migrate(db, path: path)
        try Self.wrap(path, "cannot switch to WAL") { try db.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL") }
        if let cacheKiB { try Self.wrap(path, "cannot size the page cache") { try db.execute("PRAGMA cache_size = -\(cacheKiB)") } }
        self.db = db
        insertRow = try db.prepare(SQL.insertRow.text)
        deleteRow = try db.prepare(SQL.deleteRow.text)
        insertSocket = try db.prepare(SQL.insertSocket.text)
        deleteSocket = try db.prepare(SQL.deleteSocket.text)
        addCounter = try db.prepare("""
            INSERT INTO counters (name, label, value) VALUES (?,?,?)
            ON CONFLICT (name, label) DO UPDATE SET value = value + excluded.value
            """)
        appendHistory = try db.prepare(SQL.appendHistory.text)
        appendHistoryRows = try db.prepare(SQL.appendHistory.text + String(repeating: ",\(SQL.historyValues)", count: Self.historyRowsPerStatement - 1))
        logRow = try db.prepare(SQL.logRow.text)
        // Never the newest entry: the next seq goes on from it (rowids restart only in an empty table).
        pruneRowLog = try db.prepare("DELETE FROM row_log WHERE seq <= (SELECT max(seq) FROM row_log) - \(Self.rowLogKept)")
    }

    /// A statement of the write path and the columns it binds, in order.
    public struct SQL: Sendable {
        public let text: String
        public let columns: [String]

        init(_ text: String, columns: String) {
            self.text = text
            self.columns = columns.split(separator: ",").map(\.trimmingBlanks)
        }

        static let historyValues = "(\(RowCodec.placeholders(RowCodec.historyColumns)))"

        // What a row change runs (public for the benchmark that runs them without the store).
        public static let insertRow = SQL("INSERT OR REPLACE INTO bindings (\(RowCodec.bindingColumns)) VALUES (\(RowCodec.placeholders(RowCodec.bindingColumns)))",
                                          columns: RowCodec.bindingColumns)
        public static let deleteRow = SQL("DELETE FROM bindings WHERE (\(RowCodec.keyColumns)) = (\(RowCodec.placeholders(RowCodec.keyColumns)))",
                                          columns: RowCodec.keyColumns)
        static let insertSocket = SQL("INSERT OR REPLACE INTO sockets (cookie, \(RowCodec.keyColumns)) VALUES (\(RowCodec.placeholders("cookie, " + RowCodec.keyColumns)))",
                                             columns: "cookie, " + RowCodec.keyColumns)
        static let deleteSocket = SQL("DELETE FROM sockets WHERE cookie=?", columns: "cookie")
        public static let logRow = SQL("INSERT INTO row_log (\(RowCodec.keyColumns)) VALUES (\(RowCodec.placeholders(RowCodec.keyColumns)))",
                                       columns: RowCodec.keyColumns)
        public static let appendHistory = SQL("INSERT INTO history (\(RowCodec.historyColumns)) VALUES \(historyValues)", columns: RowCodec.historyColumns)
    }

    deinit { writerLock?.close() }

    private static func takeWriterLock(_ path: String) throws -> FileDescriptor {
        do {
            return try FileLock.exclusive(path)
        } catch let held as FileLock.Held {
            let who = held.holder.map { "another portwatch (pid \($0))" } ?? "another process"
            throw StoreError("database \(path) is already written by \(who): one daemon writes a ledger; stop that one first, or give this one its own --db.path (readers such as `portwatch ls` need no lock)")
        } catch {
            throw StoreError("cannot lock database \(path) for writing: \(error)")
        }
    }

    private static func checkPlace(_ path: String) throws {
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
            throw StoreError("database path \(path) is a directory; give --db.path a file name, e.g. \(path)/portwatch.db")
        }
        // Every missing directory above the file, as `mkdir -p` makes them.
        var parent = ""
        for component in path.split(separator: "/").dropLast() {
            parent = parent.isEmpty ? (path.hasPrefix("/") ? "/" : "") + component : parent + "/" + component
            if mkdir(parent, 0o755) != 0 && errno != EEXIST {
                throw StoreError("cannot create the directory \(parent) for database \(path): \(SystemError.text(errno))")
            }
        }
    }

    private static func wrap<T>(_ path: String, _ what: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as StoreError {
            throw StoreError(explain(error.description, path: path, what: what))
        }
    }

    /// Turns SQLite's words into what the user should do.
    static func explain(_ message: String, path: String, what: String) -> String {
        if message.contains("not a database") || message.contains("malformed") {
            return "database \(path) is not a portwatch SQLite database (\(message)); it was left untouched: move it away or choose another --db.path"
        }
        if message.contains("locked") || message.contains("busy") {
            return "database \(path) is locked by another process (another portwatch daemon?): stop it or choose another --db.path"
        }
        if message.contains("readonly") || message.contains("read-only") || message.contains("unable to open") {
            return "database \(path) cannot be written (\(message)): check the permissions of the file and its directory, or choose another --db.path"
        }
        return "database \(path): \(what): \(message)"
    }

    private static func migrate(_ db: Connection, path: String) throws {
        let version = try wrap(path, "cannot read the schema version") { () -> Int in
            var v = 0
            try db.prepare("PRAGMA user_version").query { v = Int($0.int(0)) }
            return v
        }
        if version > Schema.version {
            throw StoreError("database \(path) has schema version \(version), newer than this portwatch understands (\(Schema.version)); upgrade portwatch or choose another --db.path (the file was left untouched)")
        }
        guard version < Schema.version else { return }
        try wrap(path, "cannot migrate the schema") {
            try db.transaction {
                for step in version..<Schema.version {
                    try db.execute(Schema.migrations[step])
                }
                try db.execute("PRAGMA user_version = \(Schema.version)")
            }
        }
    }

    // MARK: Reading the state back (start-up)

    /// The table and socket map as last committed.
    public func loadState() throws -> (rows: [BindingKey: Binding], sockets: [UInt64: BindingKey]) {
        var rows: [BindingKey: Binding] = [:]
        var pool: RowPool? = RowPool()
        for row in try StoreQueries.rows(db, pool: &pool) { rows[row.key] = row }
        return (rows, try StoreQueries.sockets(db))
    }

    public func counters() throws -> [CounterEntry] { try StoreQueries.counters(db) }

    // MARK: Writing

    /// Applies one reconcile batch (and any extra counters) in one transaction.
    public func apply(_ batch: Batch, extra: [CounterEntry] = []) throws {
        try Self.wrap(path, "cannot write a batch") {
            try db.transaction {
                for change in batch.changes { try write(change) }
                // History in the batch's order: its changes, then its transients.
                try appendHistory(batch.changes.filter(\.isHistory), RowCodec.bind)
                try appendHistory(batch.transients, RowCodec.bind)
                for (cookie, key) in batch.socketsAdded {
                    try insertSocket.run { b in
                        b.add(Int64(bitPattern: cookie))
                        RowCodec.bind(key, &b)
                    }
                }
                for cookie in batch.socketsRemoved { try deleteSocket.run(.int(Int64(bitPattern: cookie))) }
                for entry in batch.counters.entries + extra where entry.value > 0 {
                    try addCounter.run(.text(entry.name.rawValue), .text(entry.label), .int(Int64(bitPattern: entry.value)))
                }
                if loggedSincePrune >= Int(Self.rowLogKept / 4) {
                    try pruneRowLog.run()
                    loggedSincePrune = 0
                }
            }
        }
    }

    private func write(_ change: RowChange) throws {
        switch change.action {
        case .insert, .update: try insertRow.run { RowCodec.bind(change.row, &$0) }
        case .delete: try deleteRow.run { RowCodec.bind(change.row.key, &$0) }
        }
        try logRow.run { RowCodec.bind(change.row.key, &$0) }
        loggedSincePrune += 1
    }

    /// Appends entries in order, `historyRowsPerStatement` per statement, the rest one by one.
    private func appendHistory<Entry>(_ entries: [Entry], _ bind: (Entry, inout Statement.Binder) -> Void) throws {
        var start = 0
        while entries.count - start >= Self.historyRowsPerStatement {
            let chunk = entries[start..<start + Self.historyRowsPerStatement]
            try appendHistoryRows.run { b in for entry in chunk { bind(entry, &b) } }
            start += Self.historyRowsPerStatement
        }
        for entry in entries[start...] { try appendHistory.run { bind(entry, &$0) } }
    }

    /// Deletes history older than `cutoff` (wall-clock ns). Returns how many entries went.
    @discardableResult
    public func pruneHistory(before cutoff: UInt64) throws -> Int {
        try Self.wrap(path, "cannot prune history") {
            try db.execute("DELETE FROM history WHERE time < \(Int64(bitPattern: cutoff))")
            return db.changes
        }
    }
}

private extension RowChange {
    /// Updates are state changes of one binding (bound -> listen); a new holder is history.
    var isHistory: Bool { action != .update || reason == .holder }
}
