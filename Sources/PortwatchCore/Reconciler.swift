/// Applies the truth table to kernel events, one key at a time, in kernel order.
///
/// | DB | events in window | result                                   |
/// |----|------------------|------------------------------------------|
/// | 0  | open             | insert                                   |
/// | 0  | close            | ignore, count an orphan close            |
/// | 0  | open ... close   | never inserted, count a transient binding |
/// | 0  | close ... open   | orphan close counted, then insert        |
/// | 1  | open             | update holder (pid, comm, state)         |
/// | 1  | close            | delete (the last holder) or update       |
/// | 1  | close ... open   | update with the new binding              |
///
/// "Transient" is decided by lifetime: a socket whose close comes less than `window` after
/// its first open is counted and never reaches the table. Every event is therefore held
/// for `window` before it is applied; `flush(now:)` applies the events that are due, folds
/// them per key, and reports the net change of each key as one insert, update or delete.
/// Pure: no kernel, no clock, no SQLite.
public struct Reconciler: Sendable {
    public let window: UInt64
    public private(set) var rows: [BindingKey: Binding]
    /// Sockets known to hold a row's key (by cookie).
    public var sockets: [UInt64: BindingKey] {
        Dictionary(uniqueKeysWithValues: held.lazy.map { ($0.key.value, $0.value) })
    }
    /// `sockets`, keyed by the cheaply hashed cookie: looked up for every event.
    private var held: [Cookie: BindingKey]
    /// How many of a row's holders are known sockets; the rest (from an older table or a
    /// lost open) are anonymous.
    private var knownHolders: [BindingKey: Int] = [:]

    private struct Pending: Sendable {
        var event: PortEvent
        var dropped = false
    }

    private var buffer = EventQueue<Pending>(retained: 4096)
    /// Absolute buffer positions of events of sockets whose first open is still buffered.
    private var young: [Cookie: Young] = [:]
    /// Sockets whose close is still buffered: if such a socket opens again (a client whose
    /// connect failed is a listener again), that is a new life, young like any other.
    private var closing: [Cookie: Int] = [:]
    /// What ingest counts per event, in plain fields, moved into the next batch's counters (a
    /// dictionary update per event hashed its key every time).
    private var tally = Tally()

    private struct Tally: Sendable {
        var open: UInt64 = 0, close: UInt64 = 0
        var transient = PerTransport(), client = PerTransport()
    }

    private struct PerTransport: Sendable {
        var tcp: UInt64 = 0, udp: UInt64 = 0

        subscript(transport: TransportProtocol) -> UInt64 {
            get { transport == .tcp ? tcp : udp }
            set { if transport == .tcp { tcp = newValue } else { udp = newValue } }
        }

        func add(to counts: inout [TransportProtocol: UInt64]) {
            for transport in TransportProtocol.allCases where self[transport] > 0 { counts[transport, default: 0] += self[transport] }
        }
    }

    /// A socket cookie as the key of the per-event dictionaries, hashed by `FastHash`.
    struct Cookie: Hashable, Sendable {
        let value: UInt64
        init(_ value: UInt64) { self.value = value }

        func hash(into hasher: inout Hasher) { hasher.combine(value) }

        func _rawHashValue(seed: Int) -> Int { FastHash.hash(value, seed: seed) }
    }

    /// Buffer positions of one young socket's first two events (a bind, then a listen); a third
    /// and later ones go to `youngMore`. Plain fields: kept and moved without reference counting.
    private struct Young: Sendable {
        var first = -1
        var second = -1
        var more = false
    }

    /// The young sockets opened last, not yet in `young`: in a flood a socket's close comes a
    /// few events after its open, so it is found here and the dictionary is not touched. The
    /// first of them moves to `young` when a newer one needs its place; all of them before
    /// anything else reads `young` (`settleYoung`).
    private var recentCookies: [UInt64] = []
    private var recentYoung: [Young] = []
    static var recentCapacity: Int { 8 }
    /// Positions of a young socket's third and later events (rare).
    private var youngMore: [Cookie: [Int]] = [:]

    /// Absolute position of the oldest buffered event that is not dropped (or the end): the
    /// events before it are all applied or dropped, so `nextDue` needs no scan.
    private var firstLive = 0
    private var counters = Counters()
    /// Transient listeners seen since the last batch, recorded in the next one.
    private var transients: [TransientSocket] = []
    /// Keys (and their rows before) that the event being folded changed besides its own.
    private var strays: [(BindingKey, Binding?)] = []

    /// - Parameters:
    ///   - window: nanoseconds; a socket that lives less than this is transient.
    ///   - rows: the table as stored.
    ///   - sockets: the socket cookies known to hold those rows (besides the one each row keeps).
    public init(window: UInt64, rows: [BindingKey: Binding] = [:], sockets: [UInt64: BindingKey] = [:]) {
        self.window = window
        self.rows = rows
        held = Dictionary(uniqueKeysWithValues: sockets.lazy.map { (Cookie($0.key), $0.value) })
        // The socket a row keeps is known too, listed in `sockets` or not.
        for (key, row) in rows where row.socket != 0 && held[Cookie(row.socket)] == nil { held[Cookie(row.socket)] = key }
        for key in held.values { knownHolders[key, default: 0] += 1 }
    }

    /// Takes events in kernel order. Nothing reaches the table before `flush`.
    public mutating func ingest<S: Sequence>(_ events: S) where S.Element == PortEvent {
        for event in events { ingest(event) }
    }

    /// The capture path's form: each event read in place, no copy of it made to hand over.
    public mutating func ingest(_ events: [PortEvent]) {
        for i in events.indices { ingest(events[i]) }
    }

    /// No service, container or pod for any cgroup.
    public static func unattributed(_ cgroup: UInt64) -> Attribution { Attribution() }

    public mutating func ingest(_ event: PortEvent) {
        let position = buffer.end
        switch event.kind {
        case .open:
            tally.open += 1
            if held[Cookie(event.cookie)] == nil || closing[Cookie(event.cookie)] != nil {
                addYoung(event.cookie, position)
            }
        case .close:
            tally.close += 1
            if let entry = takeYoung(event.cookie) {
                let more = entry.more ? youngMore.removeValue(forKey: Cookie(event.cookie)) ?? [] : []
                let opened = buffer.read(entry.first) { $0.event.time }
                if event.time &- opened < window || event.time < opened {
                    buffer.update(entry.first) { $0.dropped = true }
                    if entry.second >= 0 { buffer.update(entry.second) { $0.dropped = true } }
                    for p in more { buffer.update(p) { $0.dropped = true } }
                    // A socket that bound and connected at once was a client, never a listener.
                    if event.reason == .connected {
                        tally.client[event.key.transport] += 1
                    } else {
                        tally.transient[event.key.transport] += 1
                        let state = buffer.read(more.last ?? (entry.second >= 0 ? entry.second : entry.first)) { $0.event.state }
                        let transient = buffer.read(entry.first) {
                            TransientSocket(key: $0.event.key, process: $0.event.process, cgroup: $0.event.cgroup,
                                            state: state, opened: opened, lifetime: event.time > opened ? event.time - opened : 0)
                        }
                        transients.append(transient)
                    }
                    // Usually its events are the last ones in (a socket opened and closed
                    // between its neighbours' events): taken back, so that a flood of
                    // transients does not grow the buffer by its length for a window.
                    buffer.removeLast { $0.dropped }
                    firstLive = min(firstLive, buffer.end)
                    skipDropped()
                    return
                }
                // Lived long enough: its events are applied in order like any other.
            }
            closing[Cookie(event.cookie), default: 0] += 1
        }
        buffer.append(Pending(event: event))
    }

    /// Notes the event at `position` of a young socket: the first of a socket not seen young
    /// goes to the recent ones (one of them to `young` when they are full).
    @inline(__always)
    private mutating func addYoung(_ cookie: UInt64, _ position: Int) {
        if let i = recentCookies.lastIndex(of: cookie) {
            Self.add(position, to: &recentYoung[i], cookie, &youngMore)
        } else if !young.isEmpty, let index = young.index(forKey: Cookie(cookie)) {
            Self.add(position, to: &young.values[index], cookie, &youngMore)
        } else {
            if recentCookies.count == Self.recentCapacity {
                // The first one makes room (usually among the oldest).
                young[Cookie(recentCookies[0])] = recentYoung[0]
                recentCookies[0] = cookie
                recentYoung[0] = Young(first: position)
            } else {
                recentCookies.append(cookie)
                recentYoung.append(Young(first: position))
            }
        }
    }

    private static func add(_ position: Int, to entry: inout Young, _ cookie: UInt64, _ more: inout [Cookie: [Int]]) {
        if entry.second < 0 {
            entry.second = position
        } else {
            entry.more = true
            more[Cookie(cookie), default: []].append(position)
        }
    }

    /// Removes and returns a young socket's entry, nil when it is not young.
    @inline(__always)
    private mutating func takeYoung(_ cookie: UInt64) -> Young? {
        if let i = recentCookies.lastIndex(of: cookie) {
            // Their order does not matter (the cookies are distinct): the last takes its place.
            let entry = recentYoung[i]
            recentCookies[i] = recentCookies[recentCookies.count - 1]
            recentYoung[i] = recentYoung[recentYoung.count - 1]
            recentCookies.removeLast()
            recentYoung.removeLast()
            return entry
        }
        return young.isEmpty ? nil : young.removeValue(forKey: Cookie(cookie))
    }

    /// Moves the recent young sockets to `young`, for what reads it.
    private mutating func settleYoung() {
        for (cookie, entry) in zip(recentCookies, recentYoung) { young[Cookie(cookie)] = entry }
        recentCookies.removeAll(keepingCapacity: true)
        recentYoung.removeAll(keepingCapacity: true)
    }

    /// Hands `body` the transient listeners found since the last call or batch, and forgets
    /// them: a caller that takes them as they come keeps them out of the next batch.
    public mutating func drainTransients(_ body: ([TransientSocket]) -> Void) {
        guard !transients.isEmpty else { return }
        // Lent, then emptied in place: the array keeps its storage from poll to poll (handing
        // it out and emptying it after would copy it to a new one each time).
        body(transients)
        transients.removeAll(keepingCapacity: true)
    }

    /// Events held for the window (tests).
    var bufferedEvents: Int { buffer.end - buffer.start }

    /// Sockets (and rows) the dictionaries keep room for however few they hold (more is given
    /// back, see `giveBackRoom`).
    static let retainedRoom = 4096
    /// Room the per-event dictionaries keep, and the most any of the table's keeps (tests).
    var roomKept: (perEvent: Int, table: Int) {
        (young.capacity + closing.capacity, max(rows.capacity, held.capacity, knownHolders.capacity))
    }

    /// When the oldest buffered event is due (wall-clock ns), nil when none waits: the
    /// deadline at which the next `flush` publishes something.
    public var nextDue: UInt64? {
        firstLive < buffer.end ? buffer.read(firstLive) { $0.event.time } &+ window : nil
    }

    private mutating func skipDropped() {
        while firstLive < buffer.end, buffer.read(firstLive, { $0.dropped }) { firstLive += 1 }
    }

    /// Applies every event older than `window` at `now` (wall-clock nanoseconds). `attribute`
    /// names the service, container and pod of a cgroup id (an event's `cgroup`): for each row
    /// made or taken over by an event, and each transient listener recorded.
    /// Returns nil when there is nothing to write.
    public mutating func flush(now: UInt64, attribute: (UInt64) -> Attribution = Reconciler.unattributed) -> Batch? {
        var end = buffer.start
        while end < buffer.end {
            if buffer.read(end, { !$0.dropped && $0.event.time &+ window > now }) { break }
            end += 1
        }
        return apply(upTo: end, attribute: attribute)
    }

    /// Applies everything buffered, due or not (shutdown, tests).
    public mutating func flushAll(attribute: (UInt64) -> Attribution = Reconciler.unattributed) -> Batch? {
        apply(upTo: buffer.end, attribute: attribute)
    }

    private mutating func apply(upTo end: Int, attribute: (UInt64) -> Attribution) -> Batch? {
        // Read in place (no copy of the events): fold changes the table, not the buffer.
        settleYoung()
        let due = buffer.elements(buffer.start..<end).lazy.filter { !$0.dropped }.map(\.event)
        var applied = 0
        for p in buffer.start..<end {
            let (dropped, cookie, kind) = buffer.read(p) { ($0.dropped, $0.event.cookie, $0.event.kind) }
            if dropped { continue }
            applied += 1
            // Once its first open is applied, a socket is no longer young (a later life's entry stays).
            if young[Cookie(cookie)]?.first == p, let entry = young.removeValue(forKey: Cookie(cookie)), entry.more {
                youngMore.removeValue(forKey: Cookie(cookie))
            }
            if kind == .close, let n = closing[Cookie(cookie)] { closing[Cookie(cookie)] = n > 1 ? n - 1 : nil }
        }
        // A dictionary keeps its room when emptied: a burst's (10,000 listeners at once, half a
        // MiB here; the table's 4 MiB once they are gone) is given back once it is applied.
        young.giveBackRoom(keeping: Self.retainedRoom)
        youngMore.giveBackRoom(keeping: Self.retainedRoom)
        closing.giveBackRoom(keeping: Self.retainedRoom)
        // Sized for the events applied, not the dropped ones around them (a flood of transients
        // would have it reserve room for tens of thousands of changes that never come).
        var batch = fold(due, expected: applied) { attribute($0.cgroup) }
        rows.giveBackRoom(keeping: Self.retainedRoom)
        held.giveBackRoom(keeping: Self.retainedRoom)
        knownHolders.giveBackRoom(keeping: Self.retainedRoom)
        buffer.consume(upTo: end)
        firstLive = max(firstLive, end)
        skipDropped()
        if tally.open > 0 { counters.events[.open, default: 0] += tally.open }
        if tally.close > 0 { counters.events[.close, default: 0] += tally.close }
        tally.transient.add(to: &counters.transientBindings)
        tally.client.add(to: &counters.clientBindings)
        tally = Tally()
        batch.counters.add(counters)
        counters = Counters()
        // One record each, named after its cgroup (a caller that folds them takes them first).
        batch.transients = transients.map { TransientBinding($0, attribution: attribute($0.cgroup)) }
        transients.removeAll(keepingCapacity: true)
        return batch.isEmpty ? nil : batch
    }

    /// What one batch did to one key: the row before it, and the last event's time and reason.
    private struct Touch {
        var key: BindingKey
        var before: Binding?
        var lastTime: UInt64
        var lastReason: PortEvent.Reason?
        /// A row that lived longer than the window but was inserted and deleted within this batch.
        var insertedThenDeleted: (row: Binding, closed: UInt64)?
    }

    /// Applies events one at a time in order, then reports each touched key's net change, keys
    /// in the order the batch first touched them (one dictionary lookup per event for the
    /// bookkeeping; a resync's changes are sorted by key, as its events come from dictionaries).
    private mutating func fold<Events: Sequence<PortEvent>>(_ events: Events, expected: Int, resync: Bool = false,
                                                            attribution: (PortEvent) -> Attribution) -> Batch {
        var index: [BindingKey: Int] = [:]
        index.reserveCapacity(expected)
        var touches: [Touch] = []
        touches.reserveCapacity(expected)
        var batch = Batch()

        for event in events {
            let i: Int
            if let known = index[event.key] {
                i = known
                touches[i].lastTime = event.time
            } else {
                i = touches.count
                index[event.key] = i
                touches.append(Touch(key: event.key, before: rows[event.key], lastTime: event.time))
            }
            switch event.kind {
            case .open:
                open(event, attribution: attribution(event), batch: &batch)
            case .close:
                touches[i].lastReason = event.reason
                if let row = close(event, batch: &batch), touches[i].before == nil {
                    touches[i].insertedThenDeleted = (row, event.time)
                }
            }
            if !strays.isEmpty {
                for (key, before) in strays where index[key] == nil {
                    index[key] = touches.count
                    touches.append(Touch(key: key, before: before, lastTime: event.time))
                }
                strays.removeAll()
            }
        }

        batch.changes.reserveCapacity(touches.count)
        for touch in touches {
            let time = touch.lastTime
            switch (touch.before, rows[touch.key]) {
            case (nil, let new?):
                batch.changes.append(RowChange(action: .insert, row: new, time: time, reason: resync ? .resync : nil))
            case (let old?, nil):
                batch.changes.append(RowChange(action: .delete, row: old, time: time, reason: touch.lastReason))
            case (let old?, let new?) where old != new:
                batch.changes.append(RowChange(action: .update, row: new, time: time))
            case (nil, nil):
                // Lived longer than the window but opened and closed within one batch.
                if let (row, closed) = touch.insertedThenDeleted {
                    batch.changes.append(RowChange(action: .insert, row: row, time: row.firstSeen))
                    batch.changes.append(RowChange(action: .delete, row: row, time: closed, reason: touch.lastReason))
                }
            default:
                break
            }
        }
        if resync { batch.changes.sort { ($0.row.key, $0.time) < ($1.row.key, $1.time) } }
        // Counted here, then added once per action (not a dictionary update per change).
        var counts = (insert: UInt64(0), update: UInt64(0), delete: UInt64(0))
        for change in batch.changes {
            switch change.action {
            case .insert: counts.insert += 1
            case .update: counts.update += 1
            case .delete: counts.delete += 1
            }
        }
        for (action, n) in [(RowChange.Action.insert, counts.insert), (.update, counts.update), (.delete, counts.delete)] where n > 0 {
            batch.counters.actions[action, default: 0] += n
        }
        return batch
    }

    /// Repairs the table against the sockets the kernel holds now (a snapshot taken after
    /// the programs were attached). Sockets with events still buffered are left to those
    /// events. Applied at once, not windowed. Returns the batch (nil if nothing changed)
    /// and the corrections by action (insert: a port the table missed; delete: a port it
    /// held that is gone).
    ///
    /// `sees` says which rows a snapshot can show at all: a row it cannot see (TCP `bound`
    /// on kernels whose sock_diag does not dump bound sockets) is left to the event path.
    /// So is every row in a network namespace the snapshot did not list (`namespaces`; nil:
    /// all of them): a namespace it could not open is not a namespace whose ports closed.
    public mutating func resync(live: [LiveSocket], now: UInt64, attribute: (UInt64) -> Attribution = Reconciler.unattributed,
                                sees: (TransportProtocol, SocketState) -> Bool = { _, _ in true },
                                namespaces: Set<UInt32>? = nil)
    -> (batch: Batch?, corrections: [RowChange.Action: UInt64]) {
        settleYoung()
        var buffered = Set<UInt64>()
        for pending in buffer.elements(buffer.start..<buffer.end) where !pending.dropped { buffered.insert(pending.event.cookie) }
        for cookie in young.keys { buffered.insert(cookie.value) }

        var synthetic: [PortEvent] = []
        let liveCookies = Set(live.map(\.cookie))
        func visible(_ key: BindingKey) -> Bool {
            guard namespaces?.contains(key.netns) ?? true else { return false }
            return rows[key].map { sees(key.transport, $0.state) } ?? true
        }
        for (cookie, key) in held.lazy.map({ ($0.key.value, $0.value) }).sorted(by: { $0.0 < $1.0 })
        where !liveCookies.contains(cookie) && !buffered.contains(cookie) && visible(key) {
            let row = rows[key]
            synthetic.append(PortEvent(kind: .close, cookie: cookie, time: now, key: key,
                                       process: row?.owner.process ?? OwnerProcess(pid: 0, name: ProcessName(""), uid: 0), state: row?.state ?? .bound,
                                       reason: .resync))
        }
        // Rows no known socket holds (e.g. written before a crash lost their sockets).
        let heldKeys = Set(held.values)
        for (key, row) in rows where !heldKeys.contains(key) && visible(key) {
            for _ in 0..<max(row.holders, 1) {
                synthetic.append(PortEvent(kind: .close, cookie: 0, time: now, key: key, process: row.owner.process, state: row.state,
                                           reason: .resync))
            }
        }
        // A live socket's owner comes attributed (from its process); the events made of them carry none.
        var attributions: [UInt64: Attribution] = [:]
        for socket in live where !buffered.contains(socket.cookie) && held[Cookie(socket.cookie)] != socket.key {
            synthetic.append(PortEvent(kind: .open, cookie: socket.cookie, time: now, key: socket.key,
                                       process: socket.owner.process, state: socket.state))
            attributions[socket.cookie] = socket.owner.attribution
        }
        var batch = synthetic.isEmpty ? Batch()
            : fold(synthetic, expected: synthetic.count, resync: true) { attributions[$0.cookie] ?? attribute($0.cgroup) }
        var corrections: [RowChange.Action: UInt64] = [:]
        for change in batch.changes where change.action != .update { corrections[change.action, default: 0] += 1 }
        batch.counters.orphanCloses = [:]
        for change in refreshHolders(live, skipping: buffered, now: now) {
            batch.changes.append(change)
            batch.counters.actions[.update, default: 0] += 1
        }
        return (batch.isEmpty ? nil : batch, corrections)
    }

    /// Names who holds each listed port now, without a resync's inserts and deletes: what an
    /// owner's exit or exec asks for (the sockets of its rows, from a snapshot of their
    /// namespaces). Sockets with events still buffered are left to those events.
    public mutating func refreshHolders(live: [LiveSocket], now: UInt64) -> Batch? {
        settleYoung()
        var buffered = Set<UInt64>()
        for pending in buffer.elements(buffer.start..<buffer.end) where !pending.dropped { buffered.insert(pending.event.cookie) }
        for cookie in young.keys { buffered.insert(cookie.value) }
        var batch = Batch()
        for change in refreshHolders(live, skipping: buffered, now: now) {
            batch.changes.append(change)
            batch.counters.actions[.update, default: 0] += 1
        }
        return batch.isEmpty ? nil : batch
    }

    /// Names the process that holds each port now. When the recorded owner (pid and name)
    /// holds none of a row's live sockets any more (it exited after a fork, handed the
    /// socket over, or exec'd another program), the row takes the owner of its oldest live
    /// socket a process holds, or the kernel when no process holds any (a VXLAN socket once
    /// the `ip` that made it exited), and the change is an update with reason `holder`.
    /// Sockets whose holder could not be told (pid 0, not the kernel) change nothing.
    private mutating func refreshHolders(_ live: [LiveSocket], skipping buffered: Set<UInt64>, now: UInt64) -> [RowChange] {
        var holding: [BindingKey: [LiveSocket]] = [:]
        for socket in live where (socket.owner.pid > 0 || socket.owner.isKernel) && held[Cookie(socket.cookie)] == socket.key
            && !buffered.contains(socket.cookie) {
            holding[socket.key, default: []].append(socket)
        }
        var changes: [RowChange] = []
        for (key, sockets) in holding.sorted(by: { $0.key < $1.key }) {
            let processes = sockets.filter { $0.owner.pid > 0 }
            guard var row = rows[key],
                  !sockets.contains(where: { $0.owner.pid == row.owner.pid && $0.owner.name == row.owner.name }),
                  let current = (processes.isEmpty ? sockets : processes).min(by: { $0.cookie < $1.cookie }) else { continue }
            row.owner = current.owner
            row.lastChange = now
            rows[key] = row
            changes.append(RowChange(action: .update, row: row, time: now, reason: .holder))
        }
        return changes
    }

    private mutating func open(_ event: PortEvent, attribution: Attribution, batch: inout Batch) {
        let previous = held[Cookie(event.cookie)]
        if let previous, previous != event.key {
            // The socket moved (should not happen for one socket): release the old key first.
            var moved = event
            moved.key = previous
            strayed(previous)
            _ = release(moved, batch: &batch)
        }
        let known = previous == event.key
        var inline = false
        if var row = rows[event.key] {
            if !known {
                row.holders += 1
                if row.socket == 0 { row.socket = event.cookie; inline = true }
            }
            row.owner = Owner(event.process, attribution: attribution)
            row.state = event.state
            row.lastChange = event.time
            rows[event.key] = row
        } else {
            rows[event.key] = Binding(key: event.key, owner: Owner(event.process, attribution: attribution), state: event.state,
                                      holders: 1, firstSeen: event.time, lastChange: event.time, socket: event.cookie)
            inline = true
        }
        if !known { remember(event.cookie, event.key, inline: inline, batch: &batch) }
    }

    /// Returns the row as it was when this close deleted it.
    ///
    /// A close counts as an orphan when no row holds its key, and also when the row exists
    /// but every holder it counts is a known socket other than this one: a socket the table
    /// never saw cannot take a holder away from one it did see.
    private mutating func close(_ event: PortEvent, batch: inout Batch) -> Binding? {
        let isHolder = held[Cookie(event.cookie)] == event.key
        guard let row = rows[event.key], isHolder || row.holders > knownHolders[event.key, default: 0] else {
            batch.counters.orphanCloses[event.key.transport, default: 0] += 1
            forget(event.cookie, closing: event.key, batch: &batch)
            return nil
        }
        return release(event, batch: &batch)
    }

    private mutating func release(_ event: PortEvent, batch: inout Batch) -> Binding? {
        forget(event.cookie, closing: event.key, batch: &batch)
        guard var row = rows[event.key] else { return nil }
        row.holders -= 1
        if row.holders <= 0 {
            rows[event.key] = nil
            return row
        }
        row.lastChange = event.time
        rows[event.key] = row
        return nil
    }

    /// A socket that holds `key` from now on: kept in the row when the row has none there
    /// (`inline`), else listed with the batch's sockets.
    private mutating func remember(_ cookie: UInt64, _ key: BindingKey, inline: Bool, batch: inout Batch) {
        held[Cookie(cookie)] = key
        knownHolders[key, default: 0] += 1
        if inline { return }
        batch.socketsAdded[cookie] = key
        batch.socketsRemoved.remove(cookie)
    }

    /// A socket that holds nothing from now on; `closing` is the key of the event that says
    /// so. A socket kept in its row leaves the row with it (the row is written anyway: its
    /// holders change); one kept in another key's row changes that row too.
    private mutating func forget(_ cookie: UInt64, closing: BindingKey, batch: inout Batch) {
        guard let key = held.removeValue(forKey: Cookie(cookie)) else { return }
        knownHolders[key, default: 1] -= 1
        if knownHolders[key] == 0 { knownHolders[key] = nil }
        if rows[key]?.socket == cookie {
            if key != closing { strayed(key) }
            rows[key]?.socket = 0
        } else {
            // Removed even when this batch listed it: the ledger may list it from before (a
            // socket closed, bound again and closed within one batch).
            batch.socketsAdded.removeValue(forKey: cookie)
            batch.socketsRemoved.insert(cookie)
        }
    }

    /// Notes that an event changes the row of a key other than its own, so that the batch
    /// reports that row's change too.
    private mutating func strayed(_ key: BindingKey) {
        strays.append((key, rows[key]))
    }
}
