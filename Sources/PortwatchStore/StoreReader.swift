import Foundation
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

    public init(path: String) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError("no portwatch database at \(path): start the daemon first, or point --db.path at its database")
        }
        do { db = try Connection(path: path, readOnly: true) } catch let error as StoreError {
            throw StoreError(Store.explain(error.description, path: path, what: "cannot open for reading"))
        }
    }

    /// Rows (sorted by key) and counters from one read transaction.
    public func snapshot() throws -> StoreSnapshot {
        do {
            try db.execute("BEGIN")
            defer { try? db.execute("COMMIT") }
            return StoreSnapshot(rows: try StoreQueries.rows(db), counters: try StoreQueries.counters(db))
        } catch let error as StoreError {
            throw StoreError(Store.explain(error.description, path: path, what: "cannot read"))
        }
    }
}

/// One open or close from the history table.
public struct HistoryEntry: Sendable, Equatable {
    public var time: UInt64
    public var action: RowChange.Action
    public var row: Binding
    /// When the binding opened (wall-clock ns): for a delete, lifetime = time - opened.
    public var opened: UInt64
    /// For a delete: why the port stopped being held; for an open, `resync` when a resync
    /// found it. Nil otherwise (and in ledgers older than the reason column).
    public var reason: PortEvent.Reason?
}

extension StoreReader {
    /// Inserts and deletes since `since` (wall-clock ns), oldest first, optionally for one port.
    public func history(port: UInt16? = nil, since: UInt64 = 0) throws -> [HistoryEntry] {
        var out: [HistoryEntry] = []
        do {
            let sql = """
                SELECT \(RowCodec.historyColumns)
                FROM history WHERE time >= ? \(port == nil ? "" : "AND port = ?") ORDER BY time, id
                """
            let statement = try db.prepare(sql)
            let body: (Statement.Row) throws -> Void = { r in
                if let entry = RowCodec.historyEntry(r) { out.append(entry) }
            }
            if let port {
                try statement.query(.int(Int64(bitPattern: since)), .int(Int64(port)), body: body)
            } else {
                try statement.query(.int(Int64(bitPattern: since)), body: body)
            }
        } catch let error as StoreError {
            throw StoreError(Store.explain(error.description, path: path, what: "cannot read the history"))
        }
        return out
    }
}
