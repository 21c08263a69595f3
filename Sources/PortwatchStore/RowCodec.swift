import PortwatchCore

/// The bindings table's columns, in the order every statement writes and reads them: the
/// one list the insert, the select and the positional reads are made from. A row's key and
/// owner come first, in the order `HistoryColumn` has them too.
enum BindingColumn: Int32, CaseIterable {
    // The key.
    case netns, transport, family, address, port
    // The owner.
    case pid, comm, uid, unit, containerID, pod, namespace, container, exe
    case state, holders, firstSeen, lastChange, cookie

    var name: String { ColumnName.of("\(self)") }

    static let key: [BindingColumn] = [.netns, .transport, .family, .address, .port]
    static let owner: [BindingColumn] = [.pid, .comm, .uid, .unit, .containerID, .pod, .namespace, .container, .exe]
}

/// A column's name in SQLite from its case's name: snake case, and `transport` is `protocol`
/// (a Swift keyword-like word kept out of the code).
enum ColumnName {
    static func of(_ swiftName: String) -> String {
        if swiftName == "transport" { return "protocol" }
        var out = ""
        var previousUpper = false
        for c in swiftName {
            if c.isUppercase {
                if !previousUpper { out += "_" }
                out += c.lowercased()
                previousUpper = true
            } else {
                out.append(c)
                previousUpper = false
            }
        }
        return out
    }
}

/// How the domain's values map to columns: each column list and its encoding and decoding
/// side by side, so that no query reads a column by a number written elsewhere.
enum RowCodec {
    // MARK: Key

    static let keyColumns = BindingColumn.key.map(\.name).joined(separator: ", ")

    static func bind(_ k: BindingKey, _ b: inout Statement.Binder) {
        b.add(Int64(k.netns))
        b.add(static: k.transport.name)
        b.add(static: k.family.name)
        b.add(k.address)
        b.add(Int64(k.port))
    }

    /// The key whose first column is at `i` (the key's columns in `BindingColumn.key`'s order).
    static func key(_ r: Statement.Row, at i: Int32) -> BindingKey? {
        func at(_ c: BindingColumn) -> Int32 { i + c.rawValue - BindingColumn.netns.rawValue }
        guard let transport = TransportProtocol(name: r.text(at(.transport))), let family = AddressFamily(name: r.text(at(.family))) else { return nil }
        return BindingKey(netns: UInt32(truncatingIfNeeded: r.int(at(.netns))), transport: transport, family: family,
                          address: r.text(at(.address)), port: UInt16(truncatingIfNeeded: r.int(at(.port))))
    }

    // MARK: Owner

    static func bind(_ o: Owner, _ b: inout Statement.Binder) {
        let a = o.attribution
        b.add(Int64(o.pid))
        b.add(o.comm)
        b.add(Int64(o.uid))
        b.add(a.unit)
        b.add(a.containerID)
        b.add(a.pod)
        b.add(a.namespace)
        b.add(a.container)
        b.add(o.exe)
    }

    /// The owner whose first column is at `i` (`BindingColumn.owner`'s order); its attribution
    /// and executable shared through `pool` with the other rows read, when rows are kept.
    static func owner(_ r: Statement.Row, at i: Int32, pool: inout RowPool?) -> Owner {
        func at(_ c: BindingColumn) -> Int32 { i + c.rawValue - BindingColumn.pid.rawValue }
        let attribution = Attribution(unit: r.text(at(.unit)), containerID: r.text(at(.containerID)), pod: r.text(at(.pod)),
                                      namespace: r.text(at(.namespace)), container: r.text(at(.container)))
        var owner = Owner(pid: Int32(truncatingIfNeeded: r.int(at(.pid))), comm: r.text(at(.comm)), uid: UInt32(truncatingIfNeeded: r.int(at(.uid))),
                          attribution: pool?.attribution(attribution) ?? attribution)
        let exe = r.text(at(.exe))
        owner.exe = pool?.text(exe) ?? exe
        return owner
    }

    // MARK: A table row

    static let bindingColumns = BindingColumn.allCases.map(\.name).joined(separator: ", ")

    /// The values of `bindingColumns`, in `BindingColumn`'s order.
    static func bind(_ row: Binding, _ b: inout Statement.Binder) {
        bind(row.key, &b)
        bind(row.owner, &b)
        b.add(static: row.state.name)
        b.add(Int64(row.holders))
        b.add(Int64(bitPattern: row.firstSeen))
        b.add(Int64(bitPattern: row.lastChange))
        b.add(Int64(bitPattern: row.socket))
    }

    static func binding(_ r: Statement.Row, pool: inout RowPool?) -> Binding? {
        func at(_ c: BindingColumn) -> Int32 { c.rawValue }
        guard let key = key(r, at: at(.netns)), let state = SocketState(name: r.text(at(.state))) else { return nil }
        return Binding(key: key, owner: owner(r, at: at(.pid), pool: &pool), state: state, holders: Int(r.int(at(.holders))),
                       firstSeen: UInt64(bitPattern: r.int(at(.firstSeen))), lastChange: UInt64(bitPattern: r.int(at(.lastChange))),
                       socket: UInt64(bitPattern: r.int(at(.cookie))))
    }

    // MARK: A history entry

    static let historyColumns = HistoryColumn.written.map(\.name).joined(separator: ", ")

    static func bind(_ change: RowChange, _ b: inout Statement.Binder) {
        bindHistory(time: change.time, action: change.action.rawValue, key: change.row.key, owner: change.row.owner, state: change.row.state,
                    opened: change.row.firstSeen, reason: change.reason?.rawValue ?? "", lifetime: 0, count: 1, held: nil, &b)
    }

    static func bind(_ t: TransientBinding, _ b: inout Statement.Binder) {
        bindHistory(time: t.opened, action: HistoryEntry.Kind.transient.stored, key: t.key, owner: t.owner, state: t.state,
                    opened: t.opened, reason: "", lifetime: t.lifetime, count: t.count, held: t.held, &b)
    }

    /// The values of `historyColumns`, in `HistoryColumn`'s order.
    private static func bindHistory(time: UInt64, action: String, key: BindingKey, owner: Owner, state: SocketState, opened: UInt64,
                                    reason: String, lifetime: UInt64, count: UInt64, held: HeldPorts?, _ b: inout Statement.Binder) {
        b.add(Int64(bitPattern: time))
        b.add(action)
        bind(key, &b)
        bind(owner, &b)
        b.add(static: state.name)
        b.add(Int64(bitPattern: opened))
        b.add(reason)
        b.add(Int64(bitPattern: lifetime))
        b.add(Int64(bitPattern: count))
        b.add(Int64(held?.high ?? key.port))
        b.add(blob: innerPorts(held))
        b.add(Int64(bitPattern: held?.unlisted ?? 0))
    }

    /// The listed ports between a record's two ends, 2 bytes each, big-endian (the `ports` column).
    static func innerPorts(_ held: HeldPorts?) -> [UInt8] {
        guard let held, held.ports.count > 2 else { return [] }
        return held.ports.dropFirst().dropLast().flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
    }

    /// A record's ports from its columns: `port`, the `ports` blob and `port_max` (the older
    /// ledgers' 0 stands for `port`), with `ports_unlisted`; nil when it used one port.
    static func heldPorts(port: Int64, portMax: Int64, inner: UnsafeRawBufferPointer, unlisted: Int64) -> HeldPorts? {
        let low = UInt16(truncatingIfNeeded: port), high = UInt16(truncatingIfNeeded: max(port, portMax))
        guard high > low || !inner.isEmpty else { return nil }
        var ports = [low]
        var i = 0
        while i + 1 < inner.count {
            ports.append(UInt16(inner[i]) << 8 | UInt16(inner[i + 1]))
            i += 2
        }
        if high > low { ports.append(high) }
        return HeldPorts(stored: ports, unlisted: UInt64(max(0, unlisted)))
    }

    static func heldPorts(_ r: Statement.Row) -> HeldPorts? {
        heldPorts(port: r.int(HistoryColumn.port.rawValue), portMax: r.int(HistoryColumn.portMax.rawValue),
                  inner: r.blob(HistoryColumn.ports.rawValue), unlisted: r.int(HistoryColumn.portsUnlisted.rawValue))
    }

    /// An entry is read to be handed on, not kept: its texts are its own.
    static func historyEntry(_ r: Statement.Row) -> HistoryEntry? {
        var none: RowPool?
        func at(_ c: HistoryColumn) -> Int32 { c.rawValue }
        guard let kind = HistoryEntry.Kind(stored: r.text(at(.action))), let key = key(r, at: at(.netns)),
              let state = SocketState(name: r.text(at(.state))) else { return nil }
        let time = UInt64(bitPattern: r.int(at(.time))), opened = UInt64(bitPattern: r.int(at(.opened)))
        let lifetime: UInt64? = switch kind {
        case .close: time &- opened
        case .transient: UInt64(bitPattern: r.int(at(.lifetime)))
        case .open, .holder: nil
        }
        return HistoryEntry(id: r.int(at(.id)), time: time, kind: kind,
                            row: Binding(key: key, owner: owner(r, at: at(.pid), pool: &none), state: state, holders: 1,
                                         firstSeen: opened, lastChange: opened),
                            opened: opened, reason: r.isEmpty(at(.reason)) ? nil : PortEvent.Reason(rawValue: r.text(at(.reason))), lifetime: lifetime,
                            count: UInt64(max(1, r.int(at(.count)))), held: kind == .transient ? heldPorts(r) : nil)
    }

    /// "?,?,…", one per column of a column list.
    static func placeholders(_ columns: String) -> String {
        Array(repeating: "?", count: columns.split(separator: ",").count).joined(separator: ",")
    }
}
