import CSQLite

/// A failure of the store, phrased for the person running portwatch.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One SQLite connection; the only place that calls sqlite3_* for connections.
final class Connection {
    let path: String
    private var handle: OpaquePointer?

    /// Bytes this connection's page cache holds now.
    var cacheUsed: Int {
        var used: Int32 = 0, highwater: Int32 = 0
        sqlite3_db_status(handle, SQLITE_DBSTATUS_CACHE_USED, &used, &highwater, 0)
        return Int(used)
    }

    /// Process-wide settings, applied before the first connection opens.
    private static let configured: Void = { _ = pw_sqlite_without_memory_statistics() }()

    init(path: String, readOnly: Bool) throws {
        _ = Self.configured
        self.path = path
        let flags = readOnly
            ? SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX
            : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        handle = db
        guard rc == SQLITE_OK else {
            let reason = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            handle = nil
            throw StoreError("cannot open database \(path): \(reason)")
        }
        sqlite3_busy_timeout(db, 2000)
        sqlite3_extended_result_codes(db, 1)
    }

    deinit { sqlite3_close_v2(handle) }

    var errorMessage: String { String(cString: sqlite3_errmsg(handle)) }

    /// Rows the last statement changed.
    var changes: Int { Int(sqlite3_changes(handle)) }

    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? errorMessage
            sqlite3_free(message)
            throw StoreError(text)
        }
    }

    func prepare(_ sql: String) throws -> Statement {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil) == SQLITE_OK, let stmt else {
            throw StoreError(errorMessage)
        }
        return Statement(stmt, connection: self)
    }

    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }
}

/// A prepared statement, reset after each use; finalized when released.
final class Statement {
    private let stmt: OpaquePointer
    private unowned let connection: Connection

    init(_ stmt: OpaquePointer, connection: Connection) {
        self.stmt = stmt
        self.connection = connection
    }

    deinit { sqlite3_finalize(stmt) }

    enum Value {
        case int(Int64)
        case text(String)
    }

    private func bind(_ values: [Value]) {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
        var binder = Binder(stmt: stmt)
        for value in values {
            switch value {
            case .int(let v): binder.add(v)
            case .text(let s): binder.add(s)
            }
        }
    }

    /// Runs a statement that returns no rows.
    func run(_ values: Value...) throws { try run(values) }

    func run(_ values: [Value]) throws {
        bind(values)
        try step()
    }

    /// Runs a statement that returns no rows, its parameters bound in order by `fill` (no
    /// array of values per call: the write path's statements run once per change).
    func run(_ fill: (inout Binder) -> Void) throws {
        sqlite3_reset(stmt)
        var binder = Binder(stmt: stmt)
        fill(&binder)
        try step()
    }

    private func step() throws {
        let rc = sqlite3_step(stmt)
        sqlite3_reset(stmt)
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else { throw StoreError(connection.errorMessage) }
    }

    /// Binds parameters left to right.
    struct Binder {
        let stmt: OpaquePointer
        private var index: Int32 = 1

        init(stmt: OpaquePointer) { self.stmt = stmt }

        mutating func add(_ value: Int64) {
            sqlite3_bind_int64(stmt, index, value)
            index += 1
        }

        mutating func add(_ text: String) {
            // An empty string is text of length 0, not NULL (a null pointer would bind NULL);
            // most attribution columns are empty, and need no copy.
            guard !text.isEmpty else { return add(static: "") }
            var text = text
            let position = index
            text.withUTF8 { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in
                    _ = sqlite3_bind_text(stmt, position, chars.baseAddress, Int32(chars.count), pw_sqlite_transient())
                }
            }
            index += 1
        }

        /// Bytes, copied; NULL when empty.
        mutating func add(blob: [UInt8]) {
            if blob.isEmpty {
                sqlite3_bind_null(stmt, index)
            } else {
                let position = index
                blob.withUnsafeBytes { _ = sqlite3_bind_blob(stmt, position, $0.baseAddress, Int32($0.count), pw_sqlite_transient()) }
            }
            index += 1
        }

        /// Text that lives as long as the program: bound without a copy.
        mutating func add(static text: StaticString) {
            guard text.hasPointerRepresentation else { return add(text.description) }
            let position = index
            _ = text.utf8Start.withMemoryRebound(to: CChar.self, capacity: text.utf8CodeUnitCount + 1) {
                sqlite3_bind_text(stmt, position, $0, Int32(text.utf8CodeUnitCount), nil)
            }
            index += 1
        }
    }

    /// Runs a query and hands each row to `body`.
    func query(_ values: Value..., body: (Row) throws -> Void) throws { try query(values, body: body) }

    func query(_ values: [Value], body: (Row) throws -> Void) throws {
        bind(values)
        try rows(body)
    }

    /// Runs a query, its parameters bound in order by `fill`, and hands each row to `body`.
    func query(fill: (inout Binder) -> Void, body: (Row) throws -> Void) throws {
        sqlite3_reset(stmt)
        var binder = Binder(stmt: stmt)
        fill(&binder)
        try rows(body)
    }

    private func rows(_ body: (Row) throws -> Void) throws {
        defer { sqlite3_reset(stmt) }
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else { throw StoreError(connection.errorMessage) }
            try body(Row(stmt: stmt))
        }
    }

    struct Row {
        let stmt: OpaquePointer
        func int(_ i: Int32) -> Int64 { sqlite3_column_int64(stmt, i) }
        func isEmpty(_ i: Int32) -> Bool { sqlite3_column_bytes(stmt, i) == 0 }
        /// A text column's bytes in place: valid until the next step, no String made.
        func bytes(_ i: Int32) -> UnsafeBufferPointer<UInt8> {
            guard let p = sqlite3_column_text(stmt, i) else { return UnsafeBufferPointer(start: nil, count: 0) }
            return UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(stmt, i)))
        }
        /// A blob column's bytes in place (empty for NULL): valid until the next step.
        func blob(_ i: Int32) -> UnsafeRawBufferPointer {
            guard let p = sqlite3_column_blob(stmt, i) else { return UnsafeRawBufferPointer(start: nil, count: 0) }
            return UnsafeRawBufferPointer(start: p, count: Int(sqlite3_column_bytes(stmt, i)))
        }
        func text(_ i: Int32) -> String {
            guard let p = sqlite3_column_text(stmt, i) else { return "" }
            let count = Int(sqlite3_column_bytes(stmt, i))
            return count == 0 ? "" : String(decoding: UnsafeBufferPointer(start: p, count: count), as: UTF8.self)
        }
    }
}
