/// Who holds a port beyond the process: the systemd unit, the container and the Kubernetes
/// pod it runs in (cAdvisor's label names). Empty strings when unknown or not applicable.
public struct Attribution: Sendable, Hashable {
    public var unit: String
    public var containerID: String
    public var pod: String
    public var namespace: String
    public var container: String

    public init(unit: String = "", containerID: String = "", pod: String = "", namespace: String = "", container: String = "") {
        self.unit = unit
        self.containerID = containerID
        self.pod = pod
        self.namespace = namespace
        self.container = container
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
