import CBPF
import Glibc
import PortwatchCore

/// Turns the kernel's `struct pw_event` into a `PortEvent`.
/// Keeps the text of addresses and process names it has seen: a node has few of each,
/// and formatting them per event was a measurable share of the consumer's time.
public struct EventDecoder {
    /// Added to CLOCK_MONOTONIC nanoseconds to get wall-clock nanoseconds.
    public let monotonicToWall: Int64
    private var addresses: [AddressBytes: String] = [:]
    private var names: [CommBytes: String] = [:]
    /// The previous event's address and name: bursts come from one process on one address.
    private var lastAddress: (AddressBytes, String)?
    private var lastName: (CommBytes, String)?

    private struct AddressBytes: Hashable {
        var high: UInt64, low: UInt64, family: UInt8
    }

    private struct CommBytes: Hashable {
        var high: UInt64, low: UInt64
    }

    public init() {
        var mono = timespec(), wall = timespec()
        clock_gettime(CLOCK_MONOTONIC, &mono)
        clock_gettime(CLOCK_REALTIME, &wall)
        monotonicToWall = Int64(wall.tv_sec - mono.tv_sec) * 1_000_000_000 + Int64(wall.tv_nsec - mono.tv_nsec)
    }

    /// Whether a record says a watched owner exited or exec'd (not a port event).
    public static func isOwnerChange(_ raw: UnsafeRawPointer, size: Int) -> Bool {
        size >= MemoryLayout<pw_event>.size && raw.loadUnaligned(as: pw_event.self).kind == PW_EVENT_OWNER.rawValue
    }

    public mutating func decode(_ raw: UnsafeRawPointer, size: Int) -> PortEvent? {
        guard size >= MemoryLayout<pw_event>.size else { return nil }
        let e = raw.loadUnaligned(as: pw_event.self)
        let kind: PortEvent.Kind
        switch Int(e.kind) {
        case Int(PW_EVENT_OPEN.rawValue): kind = .open
        case Int(PW_EVENT_CLOSE.rawValue): kind = .close
        default: return nil
        }
        let reason: PortEvent.Reason
        switch Int(e.reason) {
        case Int(PW_REASON_RELEASED.rawValue): reason = .released
        case Int(PW_REASON_CONNECTED.rawValue): reason = .connected
        case Int(PW_REASON_SHUTDOWN.rawValue): reason = .shutdown
        default: return nil
        }
        guard let key = cachedKey(e.binding) else { return nil }
        return PortEvent(kind: kind, cookie: e.cookie, time: UInt64(Int64(e.ts_ns) &+ monotonicToWall),
                         key: key, owner: cachedOwner(e.binding),
                         state: e.binding.state == UInt8(PW_STATE_LISTEN.rawValue) ? .listen : .bound, reason: reason,
                         cgroup: e.binding.cgroup)
    }

    private mutating func cachedKey(_ b: pw_binding) -> BindingKey? {
        guard let transport = TransportProtocol(rawValue: b.protocol), let family = AddressFamily(rawValue: b.family) else { return nil }
        let raw = withUnsafeBytes(of: b.addr) { AddressBytes(high: $0.load(as: UInt64.self), low: $0.load(fromByteOffset: 8, as: UInt64.self), family: b.family) }
        let text: String
        if let last = lastAddress, last.0 == raw { text = last.1 } else if let known = addresses[raw] { text = known; lastAddress = (raw, known) } else {
            text = withUnsafeBytes(of: b.addr) { AddressText.format(family: family, bytes: $0) }
            if addresses.count > 65_536 { addresses.removeAll() }
            addresses[raw] = text
            lastAddress = (raw, text)
        }
        return BindingKey(netns: b.netns, transport: transport, family: family, address: text, port: b.port)
    }

    private mutating func cachedOwner(_ b: pw_binding) -> Owner {
        let raw = withUnsafeBytes(of: b.comm) { CommBytes(high: $0.load(as: UInt64.self), low: $0.load(fromByteOffset: 8, as: UInt64.self)) }
        let name: String
        if let last = lastName, last.0 == raw { name = last.1 } else if let known = names[raw] { name = known; lastName = (raw, known) } else {
            name = Self.name(b)
            if names.count > 65_536 { names.removeAll() }
            names[raw] = name
            lastName = (raw, name)
        }
        return Owner(pid: Int32(bitPattern: b.pid), comm: name, uid: b.uid)
    }

    /// The NUL-terminated process name from the kernel.
    static func name(_ b: pw_binding) -> String {
        withUnsafeBytes(of: b.comm) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// The kernel's view of a key, to seed the `bindings` map for a socket found by a snapshot.
    static func binding(for key: BindingKey, owner: Owner, state: SocketState) -> pw_binding {
        var b = pw_binding()
        b.netns = key.netns
        b.protocol = key.transport.rawValue
        b.family = key.family.rawValue
        b.port = key.port
        b.state = state.rawValue
        b.pid = UInt32(bitPattern: owner.pid)
        b.uid = owner.uid
        withUnsafeMutableBytes(of: &b.addr) { AddressText.parse(key.address, family: key.family, into: $0) }
        withUnsafeMutableBytes(of: &b.comm) { out in
            for (i, byte) in owner.comm.utf8.prefix(out.count - 1).enumerated() { out[i] = byte }
        }
        return b
    }
}

/// Text form of addresses, as inet_ntop writes them.
public enum AddressText {
    public static func format(family: AddressFamily, bytes: UnsafeRawBufferPointer) -> String {
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let af = family == .ipv4 ? AF_INET : AF_INET6
        guard inet_ntop(af, bytes.baseAddress, &out, socklen_t(out.count)) != nil else { return "?" }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func parse(_ text: String, family: AddressFamily, into out: UnsafeMutableRawBufferPointer) {
        _ = inet_pton(family == .ipv4 ? AF_INET : AF_INET6, text, out.baseAddress)
    }
}
