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
        size >= MemoryLayout<pw_event>.size && raw.loadUnaligned(fromByteOffset: Field.kind, as: UInt32.self) == PW_EVENT_OWNER.rawValue
    }

    /// A listen() on a socket no program saw bind: an open whose `cookie` is the socket's inode
    /// and whose key has no port yet (the kernel picks it after the state change); nil for any
    /// other record. `KernelCapture` finds the socket and its port with sock_diag.
    public mutating func decodeUnboundListen(_ raw: UnsafeRawPointer, size: Int) -> PortEvent? {
        guard size >= MemoryLayout<pw_event>.size else { return nil }
        guard raw.loadUnaligned(fromByteOffset: Field.kind, as: UInt32.self) == PW_EVENT_LISTEN_UNBOUND.rawValue,
              let key = key(raw) else { return nil }
        return PortEvent(kind: .open, cookie: raw.loadUnaligned(fromByteOffset: Field.cookie, as: UInt64.self), time: time(raw),
                         key: key, process: process(raw), state: .listen,
                         cgroup: raw.loadUnaligned(fromByteOffset: Field.cgroup, as: UInt64.self))
    }

    /// Where each field of a record is: the decoder reads them in place, each with its width
    /// (a copy of the whole record first, stored and reloaded, cost more than the fields).
    private enum Field {
        static var cookie: Int { MemoryLayout<pw_event>.offset(of: \.cookie)! }
        static var time: Int { MemoryLayout<pw_event>.offset(of: \.ts_ns)! }
        static var kind: Int { MemoryLayout<pw_event>.offset(of: \.kind)! }
        static var reason: Int { MemoryLayout<pw_event>.offset(of: \.reason)! }
        static var binding: Int { MemoryLayout<pw_event>.offset(of: \.binding)! }
        static var cgroup: Int { binding + MemoryLayout<pw_binding>.offset(of: \.cgroup)! }
        static var addr: Int { binding + MemoryLayout<pw_binding>.offset(of: \.addr)! }
        static var netns: Int { binding + MemoryLayout<pw_binding>.offset(of: \.netns)! }
        static var pid: Int { binding + MemoryLayout<pw_binding>.offset(of: \.pid)! }
        static var uid: Int { binding + MemoryLayout<pw_binding>.offset(of: \.uid)! }
        static var port: Int { binding + MemoryLayout<pw_binding>.offset(of: \.port)! }
        static var transport: Int { binding + MemoryLayout<pw_binding>.offset(of: \.protocol)! }
        static var family: Int { binding + MemoryLayout<pw_binding>.offset(of: \.family)! }
        static var state: Int { binding + MemoryLayout<pw_binding>.offset(of: \.state)! }
        static var comm: Int { binding + MemoryLayout<pw_binding>.offset(of: \.comm)! }
    }

    @inline(__always)
    public mutating func decode(_ raw: UnsafeRawPointer, size: Int) -> PortEvent? {
        guard size >= MemoryLayout<pw_event>.size else { return nil }
        let kind: PortEvent.Kind
        switch raw.loadUnaligned(fromByteOffset: Field.kind, as: UInt32.self) {
        case PW_EVENT_OPEN.rawValue: kind = .open
        case PW_EVENT_CLOSE.rawValue: kind = .close
        default: return nil
        }
        let reason: PortEvent.Reason
        switch raw.loadUnaligned(fromByteOffset: Field.reason, as: UInt32.self) {
        case PW_REASON_RELEASED.rawValue: reason = .released
        case PW_REASON_CONNECTED.rawValue: reason = .connected
        case PW_REASON_SHUTDOWN.rawValue: reason = .shutdown
        default: return nil
        }
        guard let key = key(raw) else { return nil }
        let state = raw.load(fromByteOffset: Field.state, as: UInt8.self)
        return PortEvent(kind: kind, cookie: raw.loadUnaligned(fromByteOffset: Field.cookie, as: UInt64.self),
                         time: time(raw),
                         key: key, process: process(raw),
                         state: state == UInt8(PW_STATE_LISTEN.rawValue) ? .listen : .bound, reason: reason,
                         cgroup: raw.loadUnaligned(fromByteOffset: Field.cgroup, as: UInt64.self))
    }

    /// The wall-clock time of the record at `raw` (the kernel's is CLOCK_MONOTONIC).
    @inline(__always)
    private func time(_ raw: UnsafeRawPointer) -> UInt64 {
        UInt64(Int64(raw.loadUnaligned(fromByteOffset: Field.time, as: UInt64.self)) &+ monotonicToWall)
    }

    /// The key of the record at `raw`.
    @inline(__always)
    private func key(_ raw: UnsafeRawPointer) -> BindingKey? {
        guard let transport = TransportProtocol(rawValue: raw.load(fromByteOffset: Field.transport, as: UInt8.self)),
              let family = AddressFamily(rawValue: raw.load(fromByteOffset: Field.family, as: UInt8.self)) else { return nil }
        let address = AddressBytes(UnsafeRawBufferPointer(start: raw + Field.addr, count: 16), family: family)
        return BindingKey(netns: raw.loadUnaligned(fromByteOffset: Field.netns, as: UInt32.self), transport: transport, family: family,
                          addressBytes: address, port: raw.loadUnaligned(fromByteOffset: Field.port, as: UInt16.self))
    }

    /// The process of the record at `raw`; its name made once per distinct name.
    @inline(__always)
    private mutating func process(_ raw: UnsafeRawPointer) -> OwnerProcess {
        let comm = CommBytes(high: raw.loadUnaligned(fromByteOffset: Field.comm, as: UInt64.self),
                              low: raw.loadUnaligned(fromByteOffset: Field.comm + 8, as: UInt64.self))
        let name: ProcessName
        if let last = lastName, lastRaw == comm { name = last } else if let known = names[comm] { name = known } else {
            name = ProcessName(kernel: UnsafeRawBufferPointer(start: raw + Field.comm, count: Int(PW_COMM_LEN)))
            if names.count > 65_536 { names.removeAll() }
            names[comm] = name
        }
        lastRaw = comm
        lastName = name
        return OwnerProcess(pid: raw.loadUnaligned(fromByteOffset: Field.pid, as: Int32.self), name: name,
                            uid: raw.loadUnaligned(fromByteOffset: Field.uid, as: UInt32.self))
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
