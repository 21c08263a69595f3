import FoundationEssentials
import Glibc
import PortwatchCore

/// What a scrape or a CLI command reads: the table and counters at one committed moment.
public struct StoreSnapshot: Sendable {
    public var rows: [Binding]
    public var counters: [CounterEntry]

    public init(rows: [Binding], counters: [CounterEntry]) {
        self.rows = rows
        self.counters = counters
    }

    public func counter(_ name: CounterName, _ label: String = "") -> UInt64 {
        counters.first { $0.name == name && $0.label == label }?.value ?? 0
    }
}

/// A read-only connection (WAL lets it read while the daemon writes).
public final class StoreReader {
    public let path: String
    let db: Connection
    /// The texts of the rows read, shared between them, from read to read.
    private var pool: RowPool? = RowPool()
    /// `PRAGMA data_version`, asked at every scrape: prepared once.
    private var dataVersionQuery: Statement?

    /// The page cache of the daemon's own readers (scrapes, listener health).
    public static let daemonCacheKiB = 256

    /// `cacheKiB`: the most SQLite's page cache of this connection keeps (its default is about
    /// 2 MiB): the daemon's readers, which read the changed rows by key, keep little.
    public init(path: String, cacheKiB: Int? = nil) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError("no portwatch database at \(path): start the daemon first, or point --db.path at its database")
        }
        do {
            db = try Connection(path: path, readOnly: true)
            if let cacheKiB { try db.execute("PRAGMA cache_size = -\(cacheKiB)") }
        } catch let error as StoreError {
            throw StoreError(Store.explain(error.description, path: path, what: "cannot open for reading"))
        }
    }

    /// Rows (sorted by key) and counters from one read transaction.
    public func snapshot() throws -> StoreSnapshot {
        do {
            try db.execute("BEGIN")
            defer { try? db.execute("COMMIT") }
            return StoreSnapshot(rows: try StoreQueries.rows(db, pool: &pool), counters: try StoreQueries.counters(db))
        } catch let error as StoreError {
            throw StoreError(Store.explain(error.description, path: path, what: "cannot read"))
        }
    }
}

/// What changed in the table since a reader last looked (see `StoreReader.read(since:)`).
public struct TableRead: Sendable {
    public enum Rows: Sendable {
        /// The whole table, sorted by key: the first read, or the reader fell behind the row log.
        case whole([Binding])
        /// The rows written since, by key, in no order: the row as it is now, nil when deleted.
        case changed([(key: BindingKey, row: Binding?)])
    }

    public var rows: Rows
    public var counters: [CounterEntry]
    /// The row log's position these rows are at: pass it to the next `read(since:)`.
    public var position: Int64
}

extension StoreReader {
    /// The row log's first and last positions. Two subqueries: SQLite reads a lone min() or
    /// max() off the key's ends, both in one SELECT by a scan of the whole log.
    static let rowLogEnds = "SELECT coalesce((SELECT min(seq) FROM row_log), 0), coalesce((SELECT max(seq) FROM row_log), 0)"
    static let rowLogSince = "SELECT \(RowCodec.keyColumns) FROM row_log WHERE seq > ?"
    static let rowByKey = "SELECT \(RowCodec.bindingColumns) FROM bindings WHERE (\(RowCodec.keyColumns)) = (\(RowCodec.placeholders(RowCodec.keyColumns)))"

    /// The table's rows written since `position` (nil: the whole table) and all counters, from
    /// one read transaction. The whole table comes back when the row log no longer reaches
    /// back to `position` (more than `Store.rowLogKept` changes ago) or was never at it.
    public func read(since position: Int64?) throws -> TableRead {
        do {
            try db.execute("BEGIN")
            defer { try? db.execute("COMMIT") }
            var first: Int64 = 0, last: Int64 = 0
            try db.prepare(Self.rowLogEnds).query {
                first = $0.int(0)
                last = $0.int(1)
            }
            let counters = try StoreQueries.counters(db)
            guard let position, position <= last, position >= first - 1 || position == last else {
                return TableRead(rows: .whole(try StoreQueries.rows(db, pool: &pool)), counters: counters, position: last)
            }
            var keys = Set<BindingKey>()
            if position < last {
                try db.prepare(Self.rowLogSince).query(.int(position)) { r in
                    if let key = RowCodec.key(r, at: 0) { keys.insert(key) }
                }
            }
            let lookup = try db.prepare(Self.rowByKey)
            var changed: [(key: BindingKey, row: Binding?)] = []
            for key in keys {
                var row: Binding?
                try lookup.query(fill: { RowCodec.bind(key, &$0) }) { row = RowCodec.binding($0, pool: &pool) }
                changed.append((key, row))
            }
            return TableRead(rows: .changed(changed), counters: counters, position: last)
        } catch let error as StoreError {
            throw StoreError(Store.explain(error.description, path: path, what: "cannot read"))
        }
    }
}

extension StoreReader {
    /// Entries since `since` (wall-clock ns), oldest first, optionally for one port.
    public func history(port: UInt16? = nil, since: UInt64 = 0) throws -> [HistoryEntry] {
        var out: [HistoryEntry] = []
        try history(HistoryQuery(ports: port.map { $0...$0 }, since: since)) { out.append($0) }
        return out
    }

    /// Hands each matching entry to `body` as it is read: constant memory whatever the history's size.
    public func history(_ q: HistoryQuery, _ body: (HistoryEntry) throws -> Void) throws {
        let (sql, values) = Self.historyQuery(q)
        do {
            try db.prepare(sql).query(values) { r in
                if let entry = RowCodec.historyEntry(r), q.match(entry.held, port: entry.row.key.port) != nil { try body(entry) }
            }
        } catch let error as StoreError {
            throw StoreError(Store.explain(error.description, path: path, what: "cannot read the history"))
        }
    }

    /// Hands each matching row to `body` in place, for output at the speed of the ledger:
    /// numbers and text bytes straight from SQLite, no entry built (`HistoryRow.entry` builds one).
    public func historyRows(_ q: HistoryQuery, _ body: (HistoryRow) throws -> Void) throws {
        let (sql, values) = Self.historyQuery(q)
        do {
            try db.prepare(sql).query(values) { r in
                let row = HistoryRow(row: r)
                guard q.ports == nil || q.match(row.held, port: UInt16(truncatingIfNeeded: row.int(.port))) != nil else { return }
                try body(row)
            }
        } catch let error as StoreError {
            throw StoreError(Store.explain(error.description, path: path, what: "cannot read the history"))
        }
    }

    /// The SQL and parameters that select `q`'s entries.
    static func historyQuery(_ q: HistoryQuery) -> (sql: String, values: [Statement.Value]) {
        var conditions = ["time >= ?"]
        var values: [Statement.Value] = [.int(Int64(bitPattern: q.since))]
        if let ports = q.ports {
            // The entries whose range meets the ports; a group's listed ports are looked at as it is read.
            conditions.append("port <= ? AND max(port_max, port) >= ?")
            values += [.int(Int64(ports.upperBound)), .int(Int64(ports.lowerBound))]
        }
        if let kinds = q.kinds {
            // One kind as `=`, so that a transient query can use the index only transients enter.
            let words = kinds.map { "'\($0.stored)'" }.sorted()
            conditions.append(words.count == 1 ? "action = \(words[0])" : "action IN (\(words.joined(separator: ",")))")
        }
        if let after = q.afterID {
            conditions.append("id > ?")
            values.append(.int(after))
        }
        if let through = q.throughID {
            conditions.append("id <= ?")
            values.append(.int(through))
        }
        if let part = q.partition, part.count > 1 {
            // Tested on the time index's entries before any row is read (SQLite defers the seek).
            conditions.append("(id / ?) % ? = ?")
            values += [.int(HistoryQuery.partitionBlock), .int(Int64(part.count)), .int(Int64(part.index))]
        }
        let order = q.afterID == nil ? "time, id" : "id"
        return ("SELECT \(HistoryColumn.selected) FROM history WHERE \(conditions.joined(separator: " AND ")) ORDER BY \(order)", values)
    }

    /// The id of the newest history entry (0 when there is none).
    public func lastHistoryID() throws -> Int64 {
        var id: Int64 = 0
        try db.prepare("SELECT coalesce(max(id), 0) FROM history").query { id = $0.int(0) }
        return id
    }
}

extension StoreReader {
    /// The transient listeners recorded since `since` (wall-clock ns), one summary per owner
    /// (protocol, exposure, comm, unit, pod), the `limit` with the most first; and how many
    /// owners were left out. Reads the index only transient records enter: a scrape pays for the period's
    /// records only, which the per-minute cap bounds. Each record is read (not summed by
    /// SQLite) so that the owners' ports are merged as the records' exact ports say.
    static let recentTransientsQuery = """
        SELECT \(HistoryColumn.selected)
        FROM history WHERE action = '\(HistoryEntry.Kind.transient.stored)' AND time >= ?
        """

    public func recentTransients(since: UInt64, limit: Int) throws -> (top: [TransientSummary], dropped: Int) {
        var parts: [TransientSummary] = []
        do {
            let statement = try db.prepare(Self.recentTransientsQuery)
            try statement.query([.int(Int64(bitPattern: since))]) { r in
                guard let e = RowCodec.historyEntry(r) else { return }
                let owner = e.row.owner
                parts.append(TransientSummary(
                    transport: e.row.key.transport, exposure: Exposure(address: e.row.key.address, family: e.row.key.family),
                    comm: owner.comm, unit: owner.attribution.unit, namespace: owner.attribution.namespace, pod: owner.attribution.pod,
                    count: e.count, held: e.heldPorts, longestLifetime: e.lifetime ?? 0, last: e.time))
            }
        } catch let error as StoreError {
            throw StoreError(Store.explain(error.description, path: path, what: "cannot read the history"))
        }
        return TransientSummary.top(parts, limit: limit)
    }
}

extension StoreReader {
    /// Changes whenever another connection (the daemon's writer) commits to the ledger: a
    /// reader whose value has not moved has nothing new to read.
    public func dataVersion() throws -> Int64 {
        var version: Int64 = 0
        if dataVersionQuery == nil { dataVersionQuery = try db.prepare("PRAGMA data_version") }
        try dataVersionQuery!.query { version = $0.int(0) }
        return version
    }
}
