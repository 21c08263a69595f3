import CSQLite
import PortwatchCore

/// Row decoding shared by the writer and the read-only readers.
enum StoreQueries {
    static func key(_ r: Statement.Row, from i: Int32) -> BindingKey? {
        guard let transport = TransportProtocol(name: r.text(i + 1)),
              let family = AddressFamily(name: r.text(i + 2)) else { return nil }
        return BindingKey(netns: UInt32(truncatingIfNeeded: r.int(i)), transport: transport, family: family,
                          address: r.text(i + 3), port: UInt16(truncatingIfNeeded: r.int(i + 4)))
    }

    static func rows(_ db: Connection) throws -> [Binding] {
        var out: [Binding] = []
        try db.prepare("""
            SELECT netns, protocol, family, address, port, pid, comm, uid, state, holders, first_seen, last_change
            FROM bindings
            """).query { r in
            guard let key = key(r, from: 0), let state = SocketState(name: r.text(8)) else { return }
            out.append(Binding(key: key,
                               owner: Owner(pid: Int32(truncatingIfNeeded: r.int(5)), comm: r.text(6), uid: UInt32(truncatingIfNeeded: r.int(7))),
                               state: state, holders: Int(r.int(9)),
                               firstSeen: UInt64(bitPattern: r.int(10)), lastChange: UInt64(bitPattern: r.int(11))))
        }
        return out.sorted { $0.key < $1.key }
    }

    static func counters(_ db: Connection) throws -> [CounterEntry] {
        var out: [CounterEntry] = []
        try db.prepare("SELECT name, label, value FROM counters ORDER BY name, label").query { r in
            out.append(CounterEntry(name: r.text(0), label: r.text(1), value: UInt64(bitPattern: r.int(2))))
        }
        return out
    }

    static func changes(_ db: Connection) -> Int32 { sqlite3_changes(db.handle) }
}
