import CSystem
import Glibc
import PortwatchSystem

/// The tunnel devices of a network namespace by the UDP port they listen on (VXLAN, Geneve),
/// from one RTM_GETLINK dump: what holds a port the kernel holds, as `ip -d link` shows it
/// ("vxlan vx0"). WireGuard keeps its port out of rtnetlink, so its sockets stay unnamed.
enum TunnelDevices {
    // rtnetlink numbers (linux/rtnetlink.h, linux/if_link.h), stable kernel ABI.
    private static let rtmGetLink: UInt16 = 18, rtmNewLink: UInt16 = 16
    private static let iflaIfname: UInt16 = 3, iflaLinkinfo: UInt16 = 18
    private static let iflaInfoKind: UInt16 = 1, iflaInfoData: UInt16 = 2
    /// The destination port attribute of each kind (IFLA_VXLAN_PORT, IFLA_GENEVE_PORT), network order.
    private static let portAttribute: [String: UInt16] = ["vxlan": 15, "geneve": 5]

    static func byPort(namespacePath path: String, inode: UInt32) throws -> [UInt16: String] {
        let netlink = try NetlinkSocket(namespacePath: path, inode: inode, protocol: NETLINK_ROUTE)
        defer { netlink.socket.close() }
        // nlmsghdr + ifinfomsg (16 bytes, all zero: every family, every device).
        var request = [UInt8](repeating: 0, count: 32)
        put32(&request, 0, 32)
        put16(&request, 4, rtmGetLink)
        put16(&request, 6, UInt16(NLM_F_REQUEST | NLM_F_DUMP))
        _ = try request.withUnsafeBytes { try netlink.socket.send($0) }
        var devices: [UInt16: String] = [:]
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try netlink.socket.receive(into: $0) }
            guard n > 0 else { return devices }
            var offset = 0
            while offset + 16 <= n {
                let length = Int(get32(buffer, offset)), type = get16(buffer, offset + 4)
                guard length >= 16, offset + length <= n else { break }
                if Int32(type) == NLMSG_DONE { return devices }
                if Int32(type) == NLMSG_ERROR { throw CaptureError("RTM_GETLINK dump failed") }
                if type == rtmNewLink, length >= 32, let (port, name) = tunnel(buffer, from: offset + 32, to: offset + length) {
                    devices[port] = name
                }
                offset += (length + 3) & ~3
            }
        }
    }

    /// The (port, "kind name") of one RTM_NEWLINK's attributes, if it is a tunnel with a port.
    private static func tunnel(_ b: [UInt8], from start: Int, to end: Int) -> (UInt16, String)? {
        var name: String?, kind: String?, port: UInt16?
        for (type, range) in attributes(b, start, end) {
            if type == iflaIfname { name = text(b, range) }
            guard type == iflaLinkinfo else { continue }
            var data: Range<Int>?
            for (infoType, infoRange) in attributes(b, range.lowerBound, range.upperBound) {
                if infoType == iflaInfoKind { kind = text(b, infoRange) }
                if infoType == iflaInfoData { data = infoRange }
            }
            if let kind, let data, let wanted = portAttribute[kind] {
                for (dataType, dataRange) in attributes(b, data.lowerBound, data.upperBound) where dataType == wanted && dataRange.count >= 2 {
                    port = UInt16(b[dataRange.lowerBound]) << 8 | UInt16(b[dataRange.lowerBound + 1])
                }
            }
        }
        guard let name, let kind, let port else { return nil }
        return (port, "\(kind) \(name)")
    }

    /// The (type, payload) of each rtattr in [start, end); the nested flag is masked off.
    private static func attributes(_ b: [UInt8], _ start: Int, _ end: Int) -> [(UInt16, Range<Int>)] {
        var out: [(UInt16, Range<Int>)] = []
        var at = start
        while at + 4 <= end {
            let length = Int(get16(b, at)), type = get16(b, at + 2) & 0x3fff
            guard length >= 4, at + length <= end else { break }
            out.append((type, (at + 4)..<(at + length)))
            at += (length + 3) & ~3
        }
        return out
    }

    private static func text(_ b: [UInt8], _ range: Range<Int>) -> String {
        String(decoding: b[range].prefix { $0 != 0 }, as: UTF8.self)
    }

    private static func get16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
    private static func get32(_ b: [UInt8], _ at: Int) -> UInt32 { UInt32(get16(b, at)) | UInt32(get16(b, at + 2)) << 16 }
    private static func put16(_ b: inout [UInt8], _ at: Int, _ v: UInt16) { b[at] = UInt8(v & 0xff); b[at + 1] = UInt8(v >> 8) }
    private static func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) { put16(&b, at, UInt16(v & 0xffff)); put16(&b, at + 2, UInt16(v >> 16)) }
}
