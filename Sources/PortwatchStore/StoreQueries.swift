import PortwatchCore

/// Reads shared by the writer and the read-only readers.
enum StoreQueries {
    static func rows(_ db: Connection, pool: inout RowPool?) throws -> [Binding] {
        var out: [Binding] = []
        try db.prepare("SELECT \(RowCodec.bindingColumns) FROM bindings").query { r in
            if let binding = RowCodec.binding(r, pool: &pool) { out.append(binding) }
        }
        return out.sorted { $0.key < $1.key }
    }

    static func sockets(_ db: Connection) throws -> [UInt64: BindingKey] {
        var out: [UInt64: BindingKey] = [:]
        // The sockets rows keep, and the others.
        try db.prepare("SELECT cookie, \(RowCodec.keyColumns) FROM bindings WHERE cookie != 0 UNION ALL SELECT cookie, \(RowCodec.keyColumns) FROM sockets").query { r in
            if let key = RowCodec.key(r, at: 1) { out[UInt64(bitPattern: r.int(0))] = key }
        }
        return out
    }

    static func counters(_ db: Connection) throws -> [CounterEntry] {
        var out: [CounterEntry] = []
        try db.prepare("SELECT name, label, value FROM counters ORDER BY name, label").query { r in
            // A name this version does not know (a newer ledger's) is not shown.
            guard let name = CounterName(rawValue: r.text(0)) else { return }
            out.append(CounterEntry(name: name, label: r.text(1), value: UInt64(bitPattern: r.int(2))))
        }
        return out
    }
}
