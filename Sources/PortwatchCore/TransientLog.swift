/// Decides which transient listeners become history records, so that a flood can neither
/// slow capture nor fill the disk.
///
/// The first transient of an owner (network namespace, protocol, family, address, process
/// name and cgroup, which has one unit, container and pod) is recorded at once, exactly.
/// Further transients of that owner within `interval` are folded into one record, written
/// when the interval ends: their count, their ports (`HeldPorts`), the longest
/// lifetime. A resolver binding a random source port per query therefore writes one record
/// per interval, not one per query. On top, at most `recordsPerMinute` records are written per minute, and at most
/// `maxOwners` owners are followed at once; what either limit refuses is counted in
/// `dropped` (transients, not records). Pure: the caller passes the time.
public struct TransientLog: Sendable {
    public struct Limits: Sendable, Equatable {
        /// Nanoseconds an owner's later transients are folded for.
        public var interval: UInt64
        /// Records written per minute at most; 0 records none.
        public var recordsPerMinute: Int
        public var maxOwners: Int

        public init(interval: UInt64 = 60_000_000_000, recordsPerMinute: Int = 120, maxOwners: Int = 10_000) {
            self.interval = interval
            self.recordsPerMinute = recordsPerMinute
            self.maxOwners = maxOwners
        }
    }

    struct TransientOwner: Hashable, Sendable {
        var netns: UInt32
        var transport: TransportProtocol
        var family: AddressFamily
        var address: AddressBytes
        var name: ProcessName
        /// Stands for the service, container and pod: one cgroup has one of each.
        var cgroup: UInt64

        /// Whether `t` has this owner (as `TransientOwner(t) == self`, without making the key).
        func matches(_ t: TransientSocket) -> Bool {
            netns == t.key.netns && transport == t.key.transport && family == t.key.family && address == t.key.addressBytes
                && name == t.process.name && cgroup == t.cgroup
        }

        init(_ t: TransientSocket) {
            netns = t.key.netns
            transport = t.key.transport
            family = t.key.family
            address = t.key.addressBytes
            name = t.process.name
            cgroup = t.cgroup
        }
    }

    struct Folding: Sendable {
        var until: UInt64
        var pending: TransientBinding?
    }

    public let limits: Limits
    private var owners: [TransientOwner: Folding] = [:]
    private var minuteStart: UInt64 = 0
    private var writtenThisMinute = 0
    /// Transients no record stands for (refused by the per-minute cap or the owner limit).
    public private(set) var dropped: UInt64 = 0

    public init(limits: Limits = Limits()) { self.limits = limits }

    /// Owners being folded now.
    public var followed: Int { owners.count }

    /// No interval ends before this (wall-clock ns): `due` is called every tick and looks at
    /// the owners only when one may have ended.
    private var earliestEnd = UInt64.max

    /// When `due` next has something to do (wall-clock ns), nil when no owner is followed.
    public var nextDue: UInt64? { earliestEnd == .max ? nil : earliestEnd }

    /// Takes transients as the reconciler found them; returns the records to write now.
    /// `attribute` names the service, container and pod of a cgroup id, once per run of one
    /// owner's transients.
    public mutating func add(_ transients: [TransientSocket], now: UInt64,
                             attribute: (UInt64) -> Attribution = Reconciler.unattributed) -> [TransientBinding] {
        var out: [TransientBinding] = []
        var i = 0
        while i < transients.count {
            // A flood is long runs of one owner: the rest of a run is folded here, compared
            // field by field, and goes to the owner's slot in one lookup.
            let key = TransientOwner(transients[i])
            let first = TransientBinding(transients[i], attribution: attribute(transients[i].cgroup))
            var j = i + 1
            // The rest of the run, folded in plain fields: one record is made of them at the end
            // (a record per socket, copied with its attribution, was a tenth of a flood's CPU).
            var fold = RunFold()
            while j < transients.count, key.matches(transients[j]) {
                fold.add(transients[j])
                j += 1
            }
            let rest = j > i + 1 ? fold.record(transients[i + 1], attribution: first.owner.attribution) : nil
            add(first, then: rest, of: key, now: now, into: &out)
            i = j
        }
        return out
    }

    /// One owner's transient `first`, then `rest` (the others of its run, folded), as if
    /// each were taken in turn.
    private mutating func add(_ first: TransientBinding, then rest: TransientBinding?, of key: TransientOwner, now: UInt64,
                              into out: inout [TransientBinding]) {
        var run = first
        if let rest { Self.fold(&run, rest) }
        let index = owners.index(forKey: key)
        if let index, now < owners.values[index].until {
            // Folded in place: one lookup, no copy of the record.
            if owners.values[index].pending == nil { owners.values[index].pending = run } else { Self.fold(&owners.values[index].pending!, run) }
            return
        }
        if let index, let ended = owners.values[index].pending {
            // Its interval ended with transients folded: still busy, so this run starts the next fold.
            admit(ended, now: now, into: &out)
            owners[key] = Folding(until: now &+ limits.interval, pending: run)
            earliestEnd = min(earliestEnd, now &+ limits.interval)
            return
        }
        owners[key] = nil
        guard owners.count < limits.maxOwners else {
            dropped += run.count
            return
        }
        // A quiet owner's first transient is recorded at once; the rest of its run is folded.
        owners[key] = Folding(until: now &+ limits.interval, pending: rest)
        earliestEnd = min(earliestEnd, now &+ limits.interval)
        admit(first, now: now, into: &out)
    }

    /// The folded records whose interval has ended. An owner still busy keeps being folded
    /// for another interval; a quiet one is forgotten (its next transient is recorded at once).
    public mutating func due(now: UInt64) -> [TransientBinding] {
        guard now >= earliestEnd else { return [] }
        var ended: [TransientBinding] = []
        for (key, folding) in owners where folding.until <= now {
            if let pending = folding.pending {
                ended.append(pending)
                owners[key] = Folding(until: now &+ limits.interval)
            } else {
                owners[key] = nil
            }
        }
        earliestEnd = owners.values.map(\.until).min() ?? .max
        return admitInOrder(ended, now: now)
    }

    /// Every folded record, due or not (at shutdown).
    public mutating func drain(now: UInt64) -> [TransientBinding] {
        let out = admitInOrder(owners.values.compactMap(\.pending), now: now)
        owners.removeAll()
        earliestEnd = .max
        return out
    }

    /// Admits records oldest first (ties by port, key and name), not in the order the owners
    /// happen to be kept: when the cap is reached, which records are left out does not depend
    /// on how a dictionary hashed them.
    private mutating func admitInOrder(_ records: [TransientBinding], now: UInt64) -> [TransientBinding] {
        var out: [TransientBinding] = []
        for record in records.sorted(by: { ($0.opened, $0.key, $0.owner.comm) < ($1.opened, $1.key, $1.owner.comm) }) {
            admit(record, now: now, into: &out)
        }
        return out
    }

    private mutating func admit(_ record: TransientBinding, now: UInt64, into out: inout [TransientBinding]) {
        if now >= minuteStart &+ 60_000_000_000 || now < minuteStart {
            minuteStart = now
            writtenThisMinute = 0
        }
        guard writtenThisMinute < limits.recordsPerMinute else {
            dropped += record.count
            return
        }
        writtenThisMinute += 1
        out.append(record)
    }

    /// Sockets of one owner folded as `fold(_:_:)` folds their records: their ports, the
    /// earliest open, the longest lifetime, the count. The list of ports is made when a
    /// second port turns up: a run on one port (a retrying client) allocates nothing.
    private struct RunFold {
        var port: UInt16 = 0
        var held: HeldPorts?
        var opened = UInt64.max, lifetime: UInt64 = 0
        var count: UInt64 = 0

        mutating func add(_ t: TransientSocket) {
            if held != nil {
                held!.add(t.key.port)
            } else if count == 0 || t.key.port == port {
                port = t.key.port
            } else {
                held = HeldPorts(port, count: count)
                held!.add(t.key.port)
            }
            opened = min(opened, t.opened)
            lifetime = max(lifetime, t.lifetime)
            count += 1
        }

        /// The record of the folded sockets; `first` is the first of them (its key and state).
        func record(_ first: TransientSocket, attribution: Attribution) -> TransientBinding {
            var record = TransientBinding(first, attribution: attribution)
            record.key.port = held?.low ?? port
            record.held = held
            record.opened = opened
            record.lifetime = lifetime
            record.count = count
            return record
        }
    }

    /// Folds `b` into `a`: their ports, the earliest open, the longest lifetime, the count.
    static func fold(_ a: inout TransientBinding, _ b: TransientBinding) {
        if a.held != nil || b.held != nil || a.key.port != b.key.port {
            var held = a.heldPorts
            held.merge(b.heldPorts)
            a.held = held
            a.key.port = held.low
        }
        a.opened = min(a.opened, b.opened)
        a.lifetime = max(a.lifetime, b.lifetime)
        a.count += b.count
    }
}
