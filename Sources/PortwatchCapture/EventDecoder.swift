import CBPF
import Glibc
import PortwatchCore
import PortwatchSystem

/// Turns the kernel's `struct pw_event` into a `PortEvent`.
/// Keys and owners hold the kernel's bytes (no text is made per event); process names are
/// read once per distinct name.
public struct EventDecoder {
    /// Added to CLOCK_MONOTONIC nanoseconds to get wall-clock nanoseconds.
    public let monotonicToWall: Int64
    private var names: [CommBytes: ProcessName] = [:]
    /// The previous event's name: bursts come from one process.
    private var lastRaw = CommBytes(high: 0, low: 0)
    private var lastName: ProcessName?

    private struct CommBytes: Hashable {
        var high: UInt64, low: UInt64
    }

    public init(clock: TimeSource = SystemClock()) {
        monotonicToWall = clock.monotonicToWall()
    }

    /// Whether a record says a watched owner exited or exec'd (not a port event).
    public static func isOwnerChange(_ raw: UnsafeRawPointer, size: Int) -> Bool {
        size >= MemoryLayout<pw_event>.size && raw.loadUnaligned(as: pw_event.self).kind == PW_EVENT_OWNER.rawValue
    }

    /// A listen() on a socket no program saw bind: an open whose `cookie` is the socket's inode
    /// and whose key has no port yet (the kernel picks it after the state change); nil for any
    /// other record. `KernelCapture` finds the socket and its port with sock_diag.
    public mutating func decodeUnboundListen(_ raw: UnsafeRawPointer, size: Int) -> PortEvent? {
        guard size >= MemoryLayout<pw_event>.size else { return nil }
        let e = raw.loadUnaligned(as: pw_event.self)
        guard e.kind == PW_EVENT_LISTEN_UNBOUND.rawValue, let key = key(e.binding) else { return nil }
        return PortEvent(kind: .open, cookie: e.cookie, time: UInt64(Int64(e.ts_ns) &+ monotonicToWall), key: key,
                         process: process(e.binding), state: .listen, cgroup: e.binding.cgroup)
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
        guard let key = key(e.binding) else { return nil }
        return PortEvent(kind: kind, cookie: e.cookie, time: UInt64(Int64(e.ts_ns) &+ monotonicToWall),
                         key: key, process: process(e.binding),
                         state: e.binding.state == UInt8(PW_STATE_LISTEN.rawValue) ? .listen : .bound, reason: reason,
                         cgroup: e.binding.cgroup)
    }

    private func key(_ b: pw_binding) -> BindingKey? {
        guard let transport = TransportProtocol(rawValue: b.protocol), let family = AddressFamily(rawValue: b.family) else { return nil }
        let address = withUnsafeBytes(of: b.addr) { AddressBytes($0, family: family) }
        return BindingKey(netns: b.netns, transport: transport, family: family, addressBytes: address, port: b.port)
    }

    private mutating func process(_ b: pw_binding) -> OwnerProcess {
        let raw = withUnsafeBytes(of: b.comm) { CommBytes(high: $0.load(as: UInt64.self), low: $0.load(fromByteOffset: 8, as: UInt64.self)) }
        let name: ProcessName
        if let last = lastName, lastRaw == raw { name = last } else if let known = names[raw] { name = known } else {
            name = withUnsafeBytes(of: b.comm) { ProcessName(kernel: $0) }
            if names.count > 65_536 { names.removeAll() }
            names[raw] = name
        }
        lastRaw = raw
        lastName = name
        return OwnerProcess(pid: Int32(bitPattern: b.pid), name: name, uid: b.uid)
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
        withUnsafeMutableBytes(of: &b.addr) { out in
            withUnsafeBytes(of: key.addressBytes) { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(out.count))) }
        }
        withUnsafeMutableBytes(of: &b.comm) { out in
            for (i, byte) in owner.comm.utf8.prefix(out.count - 1).enumerated() { out[i] = byte }
        }
        return b
    }
}
