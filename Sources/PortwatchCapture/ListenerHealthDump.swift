import CSystem
import Glibc
import PortwatchCore
import PortwatchSystem

/// The accept queues and drop counters of the sockets that hold ports, from one sock_diag
/// dump per protocol and family in each network namespace asked for (SK_MEMINFO from
/// INET_DIAG_SKMEMINFO; the queue of a listener is `idiag_rqueue`, its limit `idiag_wqueue`).
/// No /proc scan: the caller names each namespace's handles.
public enum ListenerHealthDump {
    /// INET_DIAG_SKMEMINFO, and SK_MEMINFO_DROPS's index in its array of u32 (Linux 4.6+).
    static let skMeminfo = UInt16(INET_DIAG_SKMEMINFO)
    static let dropsIndex = Int(SK_MEMINFO_DROPS)

    /// The sockets of each namespace (inode -> the handles to enter it by, tried in order),
    /// and the namespaces that could be listed.
    public static func take(_ namespaces: [UInt32: [String]]) -> (sockets: [SocketHealth], listed: Set<UInt32>) {
        var sockets: [SocketHealth] = []
        var listed = Set<UInt32>()
        for (inode, handles) in namespaces.sorted(by: { $0.key < $1.key }) {
            guard let netlink = NetlinkSocket(namespace: inode, handles: handles) else { continue }
            defer { netlink.socket.close() }
            do {
                for family in [AF_INET, AF_INET6] {
                    try netlink.dump(family: UInt8(family), protocol: UInt8(IPPROTO_TCP), states: 1 << SocketSnapshot.tcpListen,
                                     extensions: UInt8(1 << (skMeminfo - 1))) { m, attributes in
                        if let s = health(m, attributes, netns: inode, transport: .tcp) { sockets.append(s) }
                    }
                    try netlink.dump(family: UInt8(family), protocol: UInt8(IPPROTO_UDP), states: 1 << SocketSnapshot.tcpClose,
                                     extensions: UInt8(1 << (skMeminfo - 1))) { m, attributes in
                        if let s = health(m, attributes, netns: inode, transport: .udp) { sockets.append(s) }
                    }
                }
                listed.insert(inode)
            } catch {
                continue
            }
        }
        return (sockets, listed)
    }

    private static func health(_ m: inet_diag_msg, _ attributes: UnsafeRawBufferPointer, netns: UInt32,
                               transport: TransportProtocol) -> SocketHealth? {
        let port = UInt16(bigEndian: m.id.idiag_sport)
        guard port != 0, let family = AddressFamily(rawValue: m.idiag_family) else { return nil }
        // A connected UDP socket is a client's, not a binding.
        if transport == .udp && m.id.idiag_dport != 0 { return nil }
        var src = m.id.idiag_src
        let address = withUnsafeBytes(of: &src) { AddressBytes($0, family: family) }
        let cookie = UInt64(m.id.idiag_cookie.0) | UInt64(m.id.idiag_cookie.1) << 32
        var health = SocketHealth(key: BindingKey(netns: netns, transport: transport, family: family, addressBytes: address, port: port),
                                  cookie: cookie, drops: drops(attributes))
        if transport == .tcp {
            health.queue = m.idiag_rqueue
            health.queueLimit = m.idiag_wqueue
        }
        return health
    }

    /// SK_MEMINFO_DROPS from the attributes, when the kernel gave it.
    static func drops(_ attributes: UnsafeRawBufferPointer) -> UInt64? {
        var offset = 0
        while offset + 4 <= attributes.count {
            let length = Int(attributes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let type = attributes.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self)
            guard length >= 4, offset + length <= attributes.count else { return nil }
            if type == skMeminfo {
                let payload = length - 4
                guard payload >= (dropsIndex + 1) * 4 else { return nil }
                return UInt64(attributes.loadUnaligned(fromByteOffset: offset + 4 + dropsIndex * 4, as: UInt32.self))
            }
            offset += (length + 3) & ~3
        }
        return nil
    }
}
