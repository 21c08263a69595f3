/// The ports a folded transient record stands for, exactly where it can: the lowest and the
/// highest always, and up to `capacity` distinct ports in all. Transients on ports beyond
/// that are counted in `unlisted`: they held some port inside the range, which one is not
/// kept. So a query can say "held exactly" or "held somewhere in this range", and the
/// ledger's growth stays bounded (at most `capacity` ports per record).
public struct HeldPorts: Sendable, Hashable {
    public static let capacity = 64

    /// Distinct and ascending: the first is the lowest port held, the last the highest.
    public private(set) var ports: [UInt16]
    /// Transients per listed port, so that a port pushed out of the list is counted in
    /// `unlisted` by its transients (1 each for a list read back from the ledger).
    private var counts: [UInt64]
    /// Transients whose port is not listed (somewhere between `low` and `high`).
    public private(set) var unlisted: UInt64

    /// `count` transients on one port.
    public init(_ port: UInt16, count: UInt64 = 1) {
        ports = [port]
        counts = [count]
        unlisted = 0
    }

    /// A list as the ledger keeps it: `ports` ascending (the range's ends among them).
    public init(stored ports: [UInt16], unlisted: UInt64) {
        self.ports = ports.isEmpty ? [0] : ports
        counts = Array(repeating: 1, count: self.ports.count)
        self.unlisted = unlisted
    }

    public var low: UInt16 { ports[0] }
    public var high: UInt16 { ports[ports.count - 1] }
    /// Whether every transient's port is listed.
    public var isExact: Bool { unlisted == 0 }

    /// Records `count` more transients on `port`. When the list is full, a new lowest or
    /// highest port takes the place of the old one (which becomes unlisted): the range's
    /// ends are always listed.
    public mutating func add(_ port: UInt16, count: UInt64 = 1) {
        // Where `port` goes (the first listed port not below it), without a branch per step: a
        // flood's random ports make each such branch a coin toss. The steps are written out
        // (64 ports take 6): in a loop the compiler turns the select of each step back into a
        // branch (x86's cmov conversion acts on loops). `ports` is never empty.
        let lo = ports.withUnsafeBufferPointer { listed in
            var base = 0, length = listed.count
            @inline(__always) func step() {
                let half = length >> 1
                base = listed[base &+ half] < port ? base &+ half : base
                length &-= half
            }
            if length > 1 { step() }
            if length > 1 { step() }
            if length > 1 { step() }
            if length > 1 { step() }
            if length > 1 { step() }
            if length > 1 { step() }
            while length > 1 { step() }
            return base &+ (listed[base] < port ? 1 : 0)
        }
        if lo < ports.count, ports[lo] == port {
            counts[lo] += count
        } else if ports.count < Self.capacity {
            ports.insert(port, at: lo)
            counts.insert(count, at: lo)
        } else if lo == 0 || lo == ports.count {
            let end = lo == 0 ? 0 : ports.count - 1
            unlisted += counts[end]
            ports[end] = port
            counts[end] = count
        } else {
            unlisted += count
        }
    }

    /// Folds `other` in: its listed ports (by their transients) and its unlisted ones.
    public mutating func merge(_ other: HeldPorts) {
        for (port, count) in zip(other.ports, other.counts) { add(port, count: count) }
        unlisted += other.unlisted
    }

    /// `row` once per listed port, for policy checks: a group is allowed when each port it is
    /// known to have held is.
    public func bindings(of row: Binding) -> [Binding] {
        ports.map { port in
            var b = row
            b.key.port = port
            return b
        }
    }

    /// How these ports meet `range`: a listed port inside it (held exactly), only the range of
    /// unlisted ones (held somewhere in it, perhaps), or not at all.
    public func match(_ range: ClosedRange<UInt16>) -> PortMatch? {
        if ports.contains(where: range.contains) { return .exact }
        return unlisted > 0 && range.overlaps(low...high) ? .range : nil
    }

    /// "4444"; the ports themselves when every one is listed and they are few
    /// ("41001,41500,42000"); otherwise the range ("32768-60999").
    public var text: String {
        if ports.count == 1 { return "\(low)" }
        if isExact && ports.count <= Self.listedInText { return ports.map(String.init).joined(separator: ",") }
        return PortRange.text(low, high)
    }

    /// Ports written one by one in `text` at most.
    public static let listedInText = 4

    public static func == (a: HeldPorts, b: HeldPorts) -> Bool { a.ports == b.ports && a.unlisted == b.unlisted }
    public func hash(into h: inout Hasher) {
        h.combine(ports)
        h.combine(unlisted)
    }
}

/// How a record's ports meet the ports a query asks for.
public enum PortMatch: String, Sendable, Hashable {
    /// One of the ports asked for was held, exactly.
    case exact
    /// The record's range meets the ports asked for, but which of its ports were held is not kept.
    case range
}
