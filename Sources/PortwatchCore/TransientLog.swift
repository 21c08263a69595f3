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
            // A flood is long runs of one owner: a run is found comparing field by field, and
            // goes to the owner's slot in one lookup.
            let key = TransientOwner(transients[i])
            var j = i + 1
            while j < transients.count, key.matches(transients[j]) { j += 1 }
            add(transients, i..<j, of: key, attribution: attribute(transients[i].cgroup), now: now, into: &out)
            i = j
        }
        return out
    }

    /// One owner's run of transients, as if each were taken in turn: folded straight into the
    /// record its slot is folding (whose list of ports, full in a flood, takes each port in
    /// place), not into a record of the run merged into it afterwards.
    private mutating func add(_ transients: [TransientSocket], _ run: Range<Int>, of key: TransientOwner, attribution: Attribution,
                              now: UInt64, into out: inout [TransientBinding]) {
        let index = owners.index(forKey: key)
        if let index, now < owners.values[index].until {
            // Taken out of the slot, folded, put back: one lookup, no copy of the record.
            var pending: TransientBinding?
            swap(&pending, &owners.values[index].pending)
            Self.fold(&pending, transients, run, attribution: attribution)
            swap(&pending, &owners.values[index].pending)
            return
        }
        if let index, let ended = owners.values[index].pending {
            // Its interval ended with transients folded: still busy, so this run starts the next fold.
            admit(ended, now: now, into: &out)
            var pending: TransientBinding?
            Self.fold(&pending, transients, run, attribution: attribution)
            owners.values[index] = Folding(until: now &+ limits.interval, pending: pending)
            earliestEnd = min(earliestEnd, now &+ limits.interval)
            return
        }
        if let index { owners.remove(at: index) }
        guard owners.count < limits.maxOwners else {
            dropped += UInt64(run.count)
            return
        }
        // A quiet owner's first transient is recorded at once; the rest of its run is folded.
        var pending: TransientBinding?
        Self.fold(&pending, transients, run.dropFirst(), attribution: attribution)
        owners[key] = Folding(until: now &+ limits.interval, pending: pending)
        earliestEnd = min(earliestEnd, now &+ limits.interval)
        admit(TransientBinding(transients[run.lowerBound], attribution: attribution), now: now, into: &out)
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

    /// Folds `run` of `transients` into `record` (made of the first when nil): their ports,
    /// the earliest open, the longest lifetime, the count. The list of ports is made when a
    /// second port turns up: a run on one port (a retrying client) allocates nothing.
    static func fold(_ record: inout TransientBinding?, _ transients: [TransientSocket], _ run: Range<Int>, attribution: Attribution) {
        var k = run.lowerBound
        if record == nil, k < run.upperBound {
            record = TransientBinding(transients[k], attribution: attribution)
            k += 1
        }
        while k < run.upperBound {
            absorb(&record!, transients[k])
            k += 1
        }
    }

    /// One transient more in `record`.
    @inline(__always)
    private static func absorb(_ record: inout TransientBinding, _ t: TransientSocket) {
        if record.held != nil {
            record.held!.add(t.key.port)
            record.key.port = record.held!.low
        } else if t.key.port != record.key.port {
            var held = HeldPorts(record.key.port, count: record.count)
            held.add(t.key.port)
            record.key.port = held.low
            record.held = held
        }
        record.opened = min(record.opened, t.opened)
        record.lifetime = max(record.lifetime, t.lifetime)
        record.count += 1
    }
}
