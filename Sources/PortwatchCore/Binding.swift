/// The transport of a bound socket. Raw values are the IP protocol numbers.
public enum TransportProtocol: UInt8, Sendable, Hashable, Comparable, CaseIterable, CustomStringConvertible {
    case tcp = 6
    case udp = 17

    /// The name as stored and shown, static (bound to SQL without a copy).
    public var name: StaticString { self == .tcp ? "tcp" : "udp" }
    public var description: String { name.description }
    public init?(name: String) {
        switch name { case "tcp": self = .tcp; case "udp": self = .udp; default: return nil }
    }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// The address family of a bound socket. Raw values are Linux's AF_INET / AF_INET6.
public enum AddressFamily: UInt8, Sendable, Hashable, Comparable, CaseIterable, CustomStringConvertible {
    case ipv4 = 2
    case ipv6 = 10

    public var name: StaticString { self == .ipv4 ? "ipv4" : "ipv6" }
    public var description: String { name.description }
    public init?(name: String) {
        switch name { case "ipv4": self = .ipv4; case "ipv6": self = .ipv6; default: return nil }
    }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// Whether a bound socket accepts connections. UDP sockets are always `bound`.
public enum SocketState: UInt8, Sendable, Hashable, CustomStringConvertible {
    case bound = 1
    case listen = 2

    public var name: StaticString { self == .listen ? "listen" : "bound" }
    public var description: String { name.description }
    public init?(name: String) {
        switch name { case "bound": self = .bound; case "listen": self = .listen; default: return nil }
    }
}

/// What identifies a held port: one row of the reconciled table per key.
///
/// The address is held as its 16 bytes and the key has no reference in it: copying, hashing
/// and comparing a key touches no heap, which the capture path does several times per event.
public struct BindingKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Network namespace inode, as the link target of /proc/PID/ns/net shows it.
    public var netns: UInt32
    public var transport: TransportProtocol
    public var family: AddressFamily
    /// The local address as the kernel holds it.
    public var addressBytes: AddressBytes
    public var port: UInt16

    public init(netns: UInt32, transport: TransportProtocol, family: AddressFamily, addressBytes: AddressBytes, port: UInt16) {
        self.netns = netns
        self.transport = transport
        self.family = family
        self.addressBytes = addressBytes
        self.port = port
    }

    /// `address` in its canonical text form; text that is not an address of `family` is the
    /// unspecified address.
    public init(netns: UInt32, transport: TransportProtocol, family: AddressFamily, address: String, port: UInt16) {
        self.init(netns: netns, transport: transport, family: family,
                  addressBytes: AddressBytes(text: address, family: family) ?? AddressBytes(), port: port)
    }

    /// Local address in its canonical text form ("0.0.0.0", "::1", "::ffff:10.0.0.1"), as inet_ntop writes it.
    public var address: String {
        get { addressBytes.text(family) }
        set { addressBytes = AddressBytes(text: newValue, family: family) ?? AddressBytes() }
    }

    /// The key as three words: namespace, port, transport and family in the first.
    private var firstWord: UInt64 {
        UInt64(netns) << 32 | UInt64(port) << 16 | UInt64(transport.rawValue) << 8 | UInt64(family.rawValue)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(firstWord)
        hasher.combine(addressBytes.high)
        hasher.combine(addressBytes.low)
    }

    /// What dictionaries and sets of keys hash with: `FastHash` over the three words (a key
    /// is hashed several times per event: with SipHash the reconciler alone took 2.0 M events/s, 2.8 M now).
    public func _rawHashValue(seed: Int) -> Int {
        FastHash.hash(firstWord, addressBytes.high, addressBytes.low, seed: seed)
    }

    public var description: String {
        let host = family == .ipv6 ? "[\(address)]" : address
        return "\(transport)/\(host):\(port)@\(netns)"
    }

    /// Sorts by port first, the order in which people read a port list; addresses by value.
    public static func < (a: Self, b: Self) -> Bool {
        (a.port, a.transport, a.family, a.addressBytes, a.netns) < (b.port, b.transport, b.family, b.addressBytes, b.netns)
    }
}

/// The task that bound a socket (or last called listen on it), and the service, container
/// and pod it ran in.
public struct Owner: Sendable, Hashable {
    public var pid: Int32
    /// The process name, held in place (see `ProcessName`).
    public var name: ProcessName
    public var uid: UInt32
    public var attribution: Attribution
    /// The holder's executable as /proc/PID/exe names it when the row was written ("" when
    /// not known: the kernel, a process gone before it was read). A deleted or replaced one
    /// ends in " (deleted)", as the kernel says. Not part of the owner's identity: the table
    /// is compared with the kernel by pid, name, uid and attribution, which events carry.
    public var exe: String = ""

    /// The kernel's mark on the path of an executable deleted (or replaced) since it started.
    public static let deletedSuffix = " (deleted)"

    /// Whether the holder runs an executable deleted or replaced since it started.
    public var exeDeleted: Bool { exe.hasSuffix(Self.deletedSuffix) }

    public static func == (a: Owner, b: Owner) -> Bool {
        a.pid == b.pid && a.name == b.name && a.uid == b.uid && a.attribution == b.attribution
    }

    public func hash(into h: inout Hasher) {
        h.combine(pid)
        h.combine(name)
        h.combine(uid)
        h.combine(attribution)
    }

    public init(pid: Int32, name: ProcessName, uid: UInt32, attribution: Attribution = Attribution()) {
        self.pid = pid
        self.name = name
        self.uid = uid
        self.attribution = attribution
    }

    public init(pid: Int32, comm: String, uid: UInt32, attribution: Attribution = Attribution()) {
        self.init(pid: pid, name: ProcessName(comm), uid: uid, attribution: attribution)
    }

    /// The name a socket that no process holds is given: the kernel's own sockets (VXLAN,
    /// Geneve, WireGuard, nfsd) hold a port with no process and no descriptor in any process.
    public static let kernelName = "kernel"

    /// The holder of a socket that no process holds: pid 0, named `kernel`.
    public static func kernel(uid: UInt32 = 0) -> Owner { Owner(pid: 0, comm: kernelName, uid: uid) }

    /// Whether this is the kernel (no process) rather than a process.
    public var isKernel: Bool { pid == 0 && name == ProcessName(Self.kernelName) }

    /// The process name as text (the kernel's comm: at most 15 bytes).
    public var comm: String {
        get { name.text }
        set { name = ProcessName(newValue) }
    }
}

/// The process part of an owner, as a kernel event names it: no reference in it, so an event
/// is copied as plain bytes (its service, container and pod are looked up from its cgroup when
/// the reconciler makes a row of it: with a reference in every event, the daemon spent a
/// fifth more CPU per event).
public struct OwnerProcess: Sendable, Hashable {
    public var pid: Int32
    public var name: ProcessName
    public var uid: UInt32

    public init(pid: Int32, name: ProcessName, uid: UInt32) {
        self.pid = pid
        self.name = name
        self.uid = uid
    }
}

extension Owner {
    public init(_ process: OwnerProcess, attribution: Attribution = Attribution()) {
        self.init(pid: process.pid, name: process.name, uid: process.uid, attribution: attribution)
    }

    public var process: OwnerProcess { OwnerProcess(pid: pid, name: name, uid: uid) }
}

/// One row of the reconciled table: a port held now, by whom, by how many sockets.
public struct Binding: Sendable, Hashable {
    public var key: BindingKey
    public var owner: Owner
    public var state: SocketState
    /// Sockets holding the key (SO_REUSEPORT groups, sockets shared after fork).
    public var holders: Int
    /// Wall-clock nanoseconds since the Unix epoch.
    public var firstSeen: UInt64
    public var lastChange: UInt64
    /// The cookie of one socket known to hold the key, kept in the row itself (0: none is):
    /// the ledger lists a row's other known sockets apart. Most rows have one socket, so
    /// most openings and closings write the row alone.
    public var socket: UInt64

    public init(key: BindingKey, owner: Owner, state: SocketState, holders: Int, firstSeen: UInt64, lastChange: UInt64,
                socket: UInt64 = 0) {
        self.key = key
        self.owner = owner
        self.state = state
        self.holders = holders
        self.firstSeen = firstSeen
        self.lastChange = lastChange
        self.socket = socket
    }
}
