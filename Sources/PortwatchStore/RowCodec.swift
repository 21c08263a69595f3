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

    // MARK: Owner (8 columns)

    static let ownerColumns = "pid, comm, uid, unit, container_id, pod, namespace, container"
    static let ownerCount: Int32 = 8

    static func encode(_ o: Owner) -> [Value] {
        let a = o.attribution
        return [.int(Int64(o.pid)), .text(o.comm), .int(Int64(o.uid)),
                .text(a.unit), .text(a.containerID), .text(a.pod), .text(a.namespace), .text(a.container)]
    }

    static func owner(_ r: Statement.Row, at i: Int32) -> Owner {
        Owner(pid: Int32(truncatingIfNeeded: r.int(i)), comm: r.text(i + 1), uid: UInt32(truncatingIfNeeded: r.int(i + 2)),
              attribution: Attribution(unit: r.text(i + 3), containerID: r.text(i + 4), pod: r.text(i + 5),
                                       namespace: r.text(i + 6), container: r.text(i + 7)))
    }

    // MARK: A table row

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

    // MARK: A history entry

    static let historyColumns = "time, action, \(keyColumns), \(ownerColumns), state, opened, reason, lifetime, count, port_max"

    static func encode(_ change: RowChange) -> [Value] {
        [.int(Int64(bitPattern: change.time)), .text(change.action.rawValue)] + encode(change.row.key) + encode(change.row.owner)
            + [.text(change.row.state.description), .int(Int64(bitPattern: change.row.firstSeen)), .text(change.reason?.rawValue ?? ""),
               .int(0), .int(1), .int(Int64(change.row.key.port))]
    }

    static func encode(_ t: TransientBinding) -> [Value] {
        [.int(Int64(bitPattern: t.opened)), .text(HistoryEntry.Kind.transient.stored)] + encode(t.key) + encode(t.owner)
            + [.text(t.state.description), .int(Int64(bitPattern: t.opened)), .text(""),
               .int(Int64(bitPattern: t.lifetime)), .int(Int64(bitPattern: t.count)), .int(Int64(t.portMax))]
    }

    /// `id` is read after the history columns.
    static func historyEntry(_ r: Statement.Row) -> HistoryEntry? {
        let rest = 2 + keyCount + ownerCount
        guard let kind = HistoryEntry.Kind(stored: r.text(1)), let key = key(r, at: 2),
              let state = SocketState(name: r.text(rest)) else { return nil }
        let time = UInt64(bitPattern: r.int(0)), opened = UInt64(bitPattern: r.int(rest + 1))
        let lifetime: UInt64? = switch kind {
        case .close: time &- opened
        case .transient: UInt64(bitPattern: r.int(rest + 3))
        case .open, .holder: nil
        }
        let portMax = UInt16(truncatingIfNeeded: r.int(rest + 5))
        return HistoryEntry(id: r.int(rest + 6), time: time, kind: kind,
                            row: Binding(key: key, owner: owner(r, at: 2 + keyCount), state: state, holders: 1,
                                         firstSeen: opened, lastChange: opened),
                            opened: opened, reason: r.isEmpty(rest + 2) ? nil : PortEvent.Reason(rawValue: r.text(rest + 2)), lifetime: lifetime,
                            count: UInt64(max(1, r.int(rest + 4))), portMax: max(portMax, key.port))
    }

    /// "?,?,…", one per column of a column list.
    static func placeholders(_ columns: String) -> String {
        Array(repeating: "?", count: columns.split(separator: ",").count).joined(separator: ",")
    }
}
