import PortwatchCore

/// What a scrape or a CLI command reads: the table and counters at one committed moment.
public struct StoreSnapshot: Sendable {
    public var rows: [Binding]
    public var counters: [CounterEntry]

    public init(rows: [Binding], counters: [CounterEntry]) {
        self.rows = rows
        self.counters = counters
    }

    public func counter(_ name: String, _ label: String = "") -> UInt64 {
        counters.first { $0.name == name && $0.label == label }?.value ?? 0
    }
}

/// A read-only connection (WAL lets it read while the daemon writes).
public final class StoreReader {
    public let path: String
    private let db: Connection

    public init(path: String) throws {
        self.path = path
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
