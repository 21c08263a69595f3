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

/// One entry of the history table: a port opened or closed, taken over by another holder,
/// or a transient listener (one that lived less than the window).
public struct HistoryEntry: Sendable, Equatable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case open, close, holder, transient

        /// The `action` column's word.
        public var stored: String {
            switch self {
            case .open: RowChange.Action.insert.rawValue
            case .close: RowChange.Action.delete.rawValue
            case .holder: RowChange.Action.update.rawValue
            case .transient: "transient"
            }
        }

        /// `stored` of every case, in `allCases` order, as bytes.
        static let storedBytes = allCases.map { Array($0.stored.utf8) }

        public init?(stored: String) {
            switch stored {
            case Self.open.stored: self = .open
            case Self.close.stored: self = .close
            case Self.holder.stored: self = .holder
            case Self.transient.stored: self = .transient
            default: return nil
            }
        }
    }

    /// Increases with every entry written: a reader that follows the history asks for ids above the last it saw.
    public var id: Int64
    public var time: UInt64
    public var kind: Kind
    public var row: Binding
    /// When the binding opened (wall-clock ns).
    public var opened: UInt64
    /// For a close: why the port stopped being held; for an open, `resync` when a resync
    /// found it; `holder` for a holder change. Nil otherwise (and in ledgers older than the reason column).
    public var reason: PortEvent.Reason?
    /// Nanoseconds the binding was held: for a close and a transient (the longest of a group).
    public var lifetime: UInt64?
    /// Transients this entry stands for (1 for every other kind).
    public var count: UInt64
    /// The highest port of a transient group; `row.key.port` otherwise.
    public var portMax: UInt16

    /// Its ports as text: "4444" or "32768-60999".
    public var ports: String { PortRange.text(row.key.port, portMax) }
}

/// One history row as SQLite holds it, for `StoreReader.historyRows`: valid only inside the
/// call that hands it over (its texts point into SQLite's row).
public struct HistoryRow {
    let row: Statement.Row

    /// The columns in the order `historyRows` selects them.
    public enum Field: Int32, CaseIterable {
        case time, action, netns, transport, family, address, port, pid, comm, uid, unit, containerID, pod, namespace, container
        case state, opened, reason, lifetime, count, portMax, id

        /// Its column in the history table.
        public var column: String {
            switch self {
            case .transport: "protocol"
            case .containerID: "container_id"
            case .portMax: "port_max"
            default: "\(self)"
            }
        }
    }

    public func int(_ field: Field) -> Int64 { row.int(field.rawValue) }
    public func uint(_ field: Field) -> UInt64 { UInt64(bitPattern: row.int(field.rawValue)) }
    /// A text column's UTF-8 bytes, in place.
    public func bytes(_ field: Field) -> UnsafeBufferPointer<UInt8> { row.bytes(field.rawValue) }

    /// The kind, from the action word's bytes (nil for a word this version does not know).
    public var kind: HistoryEntry.Kind? {
        let word = bytes(.action)
        for (kind, stored) in zip(HistoryEntry.Kind.allCases, HistoryEntry.Kind.storedBytes) where stored.count == word.count {
            if stored.withUnsafeBytes({ memcmp($0.baseAddress!, word.baseAddress!, word.count) }) == 0 { return kind }
        }
        return nil
    }

    /// The whole entry, decoded.
    public var entry: HistoryEntry? { RowCodec.historyEntry(row) }
}

/// Which history entries to read.
public struct HistoryQuery: Sendable {
    public var port: UInt16?
    /// Wall-clock ns: entries at or after this time.
    public var since: UInt64
    /// Only these kinds (nil: all).
    public var kinds: Set<HistoryEntry.Kind>?
    /// Only entries written after this id, in the order they were written (following);
    /// nil: in time order.
    public var afterID: Int64?
    /// Only entries written up to this id (a consistent cut while the daemon writes).
    public var throughID: Int64?
    /// Only this share of the entries: blocks of `HistoryQuery.partitionBlock` consecutive ids,
    /// every `count`-th one from `index`. Readers of all `count` parts together read every
    /// entry once, each from its own pages of the ledger.
    public var partition: (index: Int, count: Int)?

    /// Ids per block of a partition (about 30 pages of history rows).
    public static let partitionBlock: Int64 = 1024

    public init(port: UInt16? = nil, since: UInt64 = 0, kinds: Set<HistoryEntry.Kind>? = nil, afterID: Int64? = nil) {
        self.port = port
        self.since = since
        self.kinds = kinds
        self.afterID = afterID
    }
}

extension StoreReader {
    /// Entries since `since` (wall-clock ns), oldest first, optionally for one port.
    public func history(port: UInt16? = nil, since: UInt64 = 0) throws -> [HistoryEntry] {
        var out: [HistoryEntry] = []
        try history(HistoryQuery(port: port, since: since)) { out.append($0) }
        return out
    }

    /// Hands each matching entry to `body` as it is read: constant memory whatever the history's size.
    public func history(_ q: HistoryQuery, _ body: (HistoryEntry) throws -> Void) throws {
        let (sql, values) = Self.historyQuery(q)
        do {
            try db.prepare(sql).query(values) { r in
                if let entry = RowCodec.historyEntry(r) { try body(entry) }
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
            try db.prepare(sql).query(values) { try body(HistoryRow(row: $0)) }
        } catch let error as StoreError {
            throw StoreError(Store.explain(error.description, path: path, what: "cannot read the history"))
        }
    }

    /// The SQL and parameters that select `q`'s entries.
    static func historyQuery(_ q: HistoryQuery) -> (sql: String, values: [Statement.Value]) {
        var conditions = ["time >= ?"]
        var values: [Statement.Value] = [.int(Int64(bitPattern: q.since))]
        if let port = q.port {
            conditions.append("port = ?")
            values.append(.int(Int64(port)))
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
        return ("SELECT \(RowCodec.historySelectColumns) FROM history WHERE \(conditions.joined(separator: " AND ")) ORDER BY \(order)", values)
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
    /// records only, which the per-minute cap bounds.
    static let recentTransientsQuery = """
        SELECT protocol, family, address, comm, unit, namespace, pod, sum(count), min(port), max(max(port_max, port)), max(lifetime), max(time)
        FROM history WHERE action = '\(HistoryEntry.Kind.transient.stored)' AND time >= ?
        GROUP BY protocol, family, address, comm, unit, namespace, pod
        """

    public func recentTransients(since: UInt64, limit: Int) throws -> (top: [TransientSummary], dropped: Int) {
        var parts: [TransientSummary] = []
        do {
            let statement = try db.prepare(Self.recentTransientsQuery)
            try statement.query([.int(Int64(bitPattern: since))]) { r in
                guard let transport = TransportProtocol(name: r.text(0)), let family = AddressFamily(name: r.text(1)) else { return }
                parts.append(TransientSummary(
                    transport: transport, exposure: Exposure(address: r.text(2), family: family), comm: r.text(3), unit: r.text(4),
                    namespace: r.text(5), pod: r.text(6), count: UInt64(max(0, r.int(7))),
                    portMin: UInt16(truncatingIfNeeded: r.int(8)), portMax: UInt16(truncatingIfNeeded: r.int(9)),
                    longestLifetime: UInt64(max(0, r.int(10))), last: UInt64(bitPattern: r.int(11))))
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
        try db.prepare("PRAGMA data_version").query { version = $0.int(0) }
        return version
    }
}
