/// Who holds a port beyond the process: the systemd unit, the container and the Kubernetes
/// pod it runs in (cAdvisor's label names). Empty strings when unknown or not applicable.
///
/// Every event and row carries one, and the resolver hands out one per cgroup: the five
/// names live in one shared, immutable box, so a copy is one reference (not five strings to
/// retain and 80 bytes to move), and two attributions from the same box compare equal
/// without reading a name. No attribution at all is no box.
public struct Attribution: Sendable, Hashable {
    private final class Names: Sendable {
        let unit: String, containerID: String, pod: String, namespace: String, container: String
        /// Of the names' bytes, so that equal boxes hash alike: the dictionaries keyed by an
        /// owner hash one word, not five strings.
        let fingerprint: UInt64

        init(unit: String, containerID: String, pod: String, namespace: String, container: String) {
            self.unit = unit
            self.containerID = containerID
            self.pod = pod
            self.namespace = namespace
            self.container = container
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for name in [unit, containerID, pod, namespace, container] {
                for byte in name.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
                h = (h ^ 0xff) &* 0x100_0000_01b3
            }
            fingerprint = h
        }

        func same(_ other: Names) -> Bool {
            self === other || (fingerprint == other.fingerprint && unit == other.unit && containerID == other.containerID
                && pod == other.pod && namespace == other.namespace && container == other.container)
        }
    }

    private var names: Names?

    /// No unit, container or pod.
    public init() { names = nil }

    public init(unit: String = "", containerID: String = "", pod: String = "", namespace: String = "", container: String = "") {
        names = unit.isEmpty && containerID.isEmpty && pod.isEmpty && namespace.isEmpty && container.isEmpty ? nil
            : Names(unit: unit, containerID: containerID, pod: pod, namespace: namespace, container: container)
    }

    public var unit: String {
        get { names?.unit ?? "" }
        set { self = Attribution(unit: newValue, containerID: containerID, pod: pod, namespace: namespace, container: container) }
    }

    public var containerID: String {
        get { names?.containerID ?? "" }
        set { self = Attribution(unit: unit, containerID: newValue, pod: pod, namespace: namespace, container: container) }
    }

    public var pod: String {
        get { names?.pod ?? "" }
        set { self = Attribution(unit: unit, containerID: containerID, pod: newValue, namespace: namespace, container: container) }
    }

    public var namespace: String {
        get { names?.namespace ?? "" }
        set { self = Attribution(unit: unit, containerID: containerID, pod: pod, namespace: newValue, container: container) }
    }

    public var container: String {
        get { names?.container ?? "" }
        set { self = Attribution(unit: unit, containerID: containerID, pod: pod, namespace: namespace, container: newValue) }
    }

    public static func == (a: Attribution, b: Attribution) -> Bool {
        switch (a.names, b.names) {
        case (nil, nil): true
        case let (x?, y?): x.same(y)
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

    /// The exposure of an address in canonical text form (as inet_ntop writes it).
    public init(address: String, family: AddressFamily) {
        if family == .ipv6 {
            if address == "::" { self = .wildcard; return }
            if address == "::1" { self = .loopback; return }
            if address.hasPrefix("::ffff:"), address.contains(".") {
                self.init(address: String(address.dropFirst(7)), family: .ipv4)
                return
            }
            let first = address.prefix { $0 != ":" }
            let hextet = first.isEmpty ? 0 : (UInt16(first, radix: 16) ?? 0)
            self = hextet & 0xfe00 == 0xfc00 || hextet & 0xffc0 == 0xfe80 ? .private : .public
            return
        }
        let octets = address.split(separator: ".").compactMap { UInt8($0) }
        guard octets.count == 4 else { self = .public; return }
        switch (octets[0], octets[1]) {
        case (0, _) where octets == [0, 0, 0, 0]: self = .wildcard
        case (127, _): self = .loopback
        case (10, _), (192, 168), (169, 254): self = .private
        case (172, 16...31): self = .private
        default: self = .public
        }
    }
}

extension BindingKey {
    public var exposure: Exposure { Exposure(address: address, family: family) }
}
