/// Who holds a port beyond the process: the systemd unit, the container and the Kubernetes
/// pod it runs in (cAdvisor's label names). Empty strings when unknown or not applicable.
///
/// Every event and row carries one, and the resolver hands out one per cgroup: the five
/// names live in one shared, immutable box, so a copy is one reference (not five strings to
/// retain and 80 bytes to move), and two attributions from the same box compare equal
/// without reading a name. No attribution at all is no box.
public struct Attribution: Sendable, Hashable {
    private struct Fields: Sendable, Equatable {
        var unit = "", containerID = "", pod = "", namespace = "", container = ""

        var isEmpty: Bool { self == Fields() }
    }

    private final class Names: Sendable {
        let fields: Fields
        /// Of the names' bytes, so that equal boxes hash alike: the dictionaries keyed by an
        /// owner hash one word, not five strings.
        let fingerprint: UInt64

        init(_ fields: Fields) {
            self.fields = fields
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for name in [fields.unit, fields.containerID, fields.pod, fields.namespace, fields.container] {
                for byte in name.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
                h = (h ^ 0xff) &* 0x100_0000_01b3
            }
            fingerprint = h
        }
    }

    private var names: Names?

    private init(_ fields: Fields) { names = fields.isEmpty ? nil : Names(fields) }

    /// No unit, container or pod.
    public init() { names = nil }

    public init(unit: String = "", containerID: String = "", pod: String = "", namespace: String = "", container: String = "") {
        self.init(Fields(unit: unit, containerID: containerID, pod: pod, namespace: namespace, container: container))
    }

    private var fields: Fields {
        get { names?.fields ?? Fields() }
        set { self = Attribution(newValue) }
    }

    public var unit: String {
        get { fields.unit }
        set { fields.unit = newValue }
    }

    public var containerID: String {
        get { fields.containerID }
        set { fields.containerID = newValue }
    }

    public var pod: String {
        get { fields.pod }
        set { fields.pod = newValue }
    }

    public var namespace: String {
        get { fields.namespace }
        set { fields.namespace = newValue }
    }

    public var container: String {
        get { fields.container }
        set { fields.container = newValue }
    }

    public static func == (a: Attribution, b: Attribution) -> Bool {
        switch (a.names, b.names) {
        case (nil, nil): true
        case let (x?, y?): x === y || (x.fingerprint == y.fingerprint && x.fields == y.fields)
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(names?.fingerprint ?? 0)
    }
}

/// How far a listener can be reached, from the address it is bound to.
public enum Exposure: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// 127.0.0.0/8, ::1 (and v4-mapped loopback).
    case loopback
    /// RFC 1918, IPv4 link-local 169.254/16, IPv6 ULA fc00::/7 and link-local fe80::/10.
    case `private`
    /// Any other unicast address.
    case `public`
    /// 0.0.0.0 or ::, every address of the host.
    case wildcard

    public var description: String { rawValue }

    /// The exposure of an address in text form (as the ledger stores it); text that is not
    /// an address of `family` is public.
    public init(address: String, family: AddressFamily) {
        guard let bytes = AddressBytes(text: address, family: family) else { self = .public; return }
        self.init(bytes, family: family)
    }
}

extension BindingKey {
    public var exposure: Exposure { Exposure(addressBytes, family: family) }
}

extension Exposure {
    /// The exposure of an address as the kernel holds it.
    public init(_ address: AddressBytes, family: AddressFamily) {
        var bytes = (address.high, address.low)
        self = withUnsafeBytes(of: &bytes) { raw in
            func word(_ i: Int) -> UInt16 { UInt16(raw[2 * i]) << 8 | UInt16(raw[2 * i + 1]) }
            var v4 = 0
            if family == .ipv6 {
                if address.high == 0 && address.low == 0 { return .wildcard }
                if (0..<7).allSatisfy({ word($0) == 0 }) && word(7) == 1 { return .loopback }
                // An IPv4-mapped address (::ffff:a.b.c.d) is exposed as its IPv4 address.
                guard (0..<5).allSatisfy({ word($0) == 0 }) && word(5) == 0xffff else {
                    let first = word(0)
                    return first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80 ? .private : .public
                }
                v4 = 12
            }
            switch (raw[v4], raw[v4 + 1]) {
            case (0, 0) where raw[v4 + 2] == 0 && raw[v4 + 3] == 0: return .wildcard
            case (127, _): return .loopback
            case (10, _), (192, 168), (169, 254): return .private
            case (172, 16...31): return .private
            default: return .public
            }
        }
    }
}
