/// Decides which transient listeners become history records, so that a flood can neither
/// slow capture nor fill the disk.
///
/// The first transient of an owner (network namespace, protocol, family, address, process
/// name and cgroup, which has one unit, container and pod) is recorded at once, exactly.
/// Further transients of that owner within `interval` are folded into one record, written
/// when the interval ends: their count, the port range when ports vary, the longest
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

    struct OwnerKey: Hashable, Sendable {
        var netns: UInt32
        var transport: TransportProtocol
        var family: AddressFamily
        var address: AddressBytes
        var name: ProcessName
        /// Stands for the service, container and pod: one cgroup has one of each.
        var cgroup: UInt64

        /// Whether `t` has this owner (as `OwnerKey(t) == self`, without making the key).
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
    private var owners: [OwnerKey: Folding] = [:]
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
            let key = OwnerKey(transients[i])
            let first = TransientBinding(transients[i], attribution: attribute(transients[i].cgroup))
            var rest: TransientBinding?
            var j = i + 1
            while j < transients.count, key.matches(transients[j]) {
                if rest == nil {
                    rest = TransientBinding(transients[j], attribution: first.owner.attribution)
                } else {
                    Self.fold(&rest!, transients[j])
                }
                j += 1
            }
            add(first, then: rest, of: key, now: now, into: &out)
            i = j
        }
        return out
    }

    /// One owner's transient `first`, then `rest` (the others of its run, folded), as if
    /// each were taken in turn.
    private mutating func add(_ first: TransientBinding, then rest: TransientBinding?, of key: OwnerKey, now: UInt64,
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

    /// Folds one socket into `a`, as `fold(_:_:)` a record of it.
    static func fold(_ a: inout TransientBinding, _ b: TransientSocket) {
        a.portMax = max(a.portMax, a.key.port, b.key.port)
        if b.key.port < a.key.port { a.key.port = b.key.port }
        a.opened = min(a.opened, b.opened)
        a.lifetime = max(a.lifetime, b.lifetime)
        a.count += 1
    }

    /// Folds `b` into `a`: the port range, the earliest open, the longest lifetime, the count.
    static func fold(_ a: inout TransientBinding, _ b: TransientBinding) {
        a.portMax = max(a.portMax, b.portMax, a.key.port, b.key.port)
        if b.key.port < a.key.port { a.key.port = b.key.port }
        a.opened = min(a.opened, b.opened)
        a.lifetime = max(a.lifetime, b.lifetime)
        a.count += b.count
    }
}
