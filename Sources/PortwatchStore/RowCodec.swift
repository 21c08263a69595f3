import PortwatchCore

/// How the domain's values map to columns: each column list and its encoding and decoding
/// side by side, so that no query reads a column by a number written elsewhere.
enum RowCodec {
    typealias Value = Statement.Value

    // MARK: Key (5 columns)

    static let keyColumns = "netns, protocol, family, address, port"
    static let keyCount: Int32 = 5

    static func encode(_ k: BindingKey) -> [Value] {
        [.int(Int64(k.netns)), .text(k.transport.description), .text(k.family.description), .text(k.address), .int(Int64(k.port))]
    }

    static func key(_ r: Statement.Row, at i: Int32) -> BindingKey? {
        guard let transport = TransportProtocol(name: r.text(i + 1)), let family = AddressFamily(name: r.text(i + 2)) else { return nil }
        return BindingKey(netns: UInt32(truncatingIfNeeded: r.int(i)), transport: transport, family: family,
                          address: r.text(i + 3), port: UInt16(truncatingIfNeeded: r.int(i + 4)))
    }

    // MARK: Owner (3 columns)

    static let ownerColumns = "pid, comm, uid"
    static let ownerCount: Int32 = 3

    static func encode(_ o: Owner) -> [Value] { [.int(Int64(o.pid)), .text(o.comm), .int(Int64(o.uid))] }

    static func owner(_ r: Statement.Row, at i: Int32) -> Owner {
        Owner(pid: Int32(truncatingIfNeeded: r.int(i)), comm: r.text(i + 1), uid: UInt32(truncatingIfNeeded: r.int(i + 2)))
    }

    // MARK: A table row (12 columns)

    static let bindingColumns = "\(keyColumns), \(ownerColumns), state, holders, first_seen, last_change"

    static func encode(_ b: Binding) -> [Value] {
        encode(b.key) + encode(b.owner) + [.text(b.state.description), .int(Int64(b.holders)),
                                           .int(Int64(bitPattern: b.firstSeen)), .int(Int64(bitPattern: b.lastChange))]
    }

    static func binding(_ r: Statement.Row, at i: Int32 = 0) -> Binding? {
        let rest = i + keyCount + ownerCount
        guard let key = key(r, at: i), let state = SocketState(name: r.text(rest)) else { return nil }
        return Binding(key: key, owner: owner(r, at: i + keyCount), state: state, holders: Int(r.int(rest + 1)),
                       firstSeen: UInt64(bitPattern: r.int(rest + 2)), lastChange: UInt64(bitPattern: r.int(rest + 3)))
    }

    // MARK: A history entry (13 columns)

    static let historyColumns = "time, action, \(keyColumns), \(ownerColumns), state, opened, reason"

    static func encode(_ change: RowChange) -> [Value] {
        [.int(Int64(bitPattern: change.time)), .text(change.action.rawValue)] + encode(change.row.key) + encode(change.row.owner)
            + [.text(change.row.state.description), .int(Int64(bitPattern: change.row.firstSeen)), .text(change.reason?.rawValue ?? "")]
    }

    static func historyEntry(_ r: Statement.Row) -> HistoryEntry? {
        let rest = 2 + keyCount + ownerCount
        guard let action = RowChange.Action(rawValue: r.text(1)), let key = key(r, at: 2),
              let state = SocketState(name: r.text(rest)) else { return nil }
        let opened = UInt64(bitPattern: r.int(rest + 1))
        return HistoryEntry(time: UInt64(bitPattern: r.int(0)), action: action,
                            row: Binding(key: key, owner: owner(r, at: 2 + keyCount), state: state, holders: 1,
                                         firstSeen: opened, lastChange: opened),
                            opened: opened, reason: PortEvent.Reason(rawValue: r.text(rest + 2)))
    }

    /// "?,?,…" for `count` values.
    static func placeholders(_ count: Int) -> String { Array(repeating: "?", count: count).joined(separator: ",") }
}
