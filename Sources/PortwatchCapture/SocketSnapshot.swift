import CBPF
import Foundation
import Glibc
import PortwatchCore
import PortwatchSystem

/// Lists the sockets that hold ports now in every network namespace: TCP listeners and
/// bound UDP sockets, over NETLINK_SOCK_DIAG, owners found through /proc/PID/fd.
public enum SocketSnapshot {
    private static let tcpListen: UInt32 = 10 // TCP_LISTEN
    /// TCP_BOUND_INACTIVE: bound, not listening (dumped by kernels >= 6.7; older ones ignore the bit).
    private static let tcpBoundInactive: UInt32 = 13
    private static let tcpClose: UInt32 = 7   // TCP_CLOSE, the state of unconnected UDP sockets

    /// Whether this kernel's sock_diag dumps TCP sockets that are bound but neither
    /// listening nor connected (TCP_BOUND_INACTIVE, Linux 6.7+). Probed with a real socket.
    public static func dumpsBoundTCP() -> Bool {
        guard let probe = try? FileDescriptor.socket(AF_INET, Int32(SOCK_STREAM.rawValue)) else { return false }
        defer { probe.close() }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bound: Bool = (try? withUnsafePointer(to: &sa) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try probe.bind($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }) != nil
        guard bound, let netlink = try? NetlinkSocket(namespaceOf: getpid()) else { return false }
        defer { netlink.socket.close() }
        let port = probe.localPort
        let listed = (try? netlink.dump(family: UInt8(AF_INET), protocol: UInt8(IPPROTO_TCP), states: 1 << tcpBoundInactive)) ?? []
        return listed.contains { UInt16(bigEndian: $0.id.idiag_sport) == port && UInt32($0.idiag_state) != tcpListen }
    }

    public static func take() throws -> [LiveSocket] {
        let owners = SocketOwners.scan()
        var result: [LiveSocket] = []
        var seen = Set<UInt32>()
        for (inode, pid) in owners.namespaces.sorted(by: { $0.key < $1.key }) where seen.insert(inode).inserted {
            guard let fd = try? NetlinkSocket(namespaceOf: pid) else { continue }
            defer { fd.socket.close() }
            for family in [AF_INET, AF_INET6] {
                result += try fd.dump(family: UInt8(family), protocol: UInt8(IPPROTO_TCP), states: 1 << tcpListen | 1 << tcpBoundInactive)
                    .compactMap { live($0, netns: inode, transport: .tcp, owners: owners) }
                result += try fd.dump(family: UInt8(family), protocol: UInt8(IPPROTO_UDP), states: 1 << tcpClose)
                    .compactMap { live($0, netns: inode, transport: .udp, owners: owners) }
            }
        }
        return result
    }

    private static func live(_ m: inet_diag_msg, netns: UInt32, transport: TransportProtocol, owners: SocketOwners) -> LiveSocket? {
        let port = UInt16(bigEndian: m.id.idiag_sport)
        guard port != 0 else { return nil }
        // A connected UDP socket is a client's implicit port, not a binding.
        if transport == .udp && m.id.idiag_dport != 0 { return nil }
        guard let family = AddressFamily(rawValue: m.idiag_family) else { return nil }
        var src = m.id.idiag_src
        let address = withUnsafeBytes(of: &src) { AddressBytes($0, family: family) }
        let cookie = UInt64(m.id.idiag_cookie.0) | UInt64(m.id.idiag_cookie.1) << 32
        let pid = owners.pidBySocket[UInt64(m.idiag_inode)] ?? 0
        let owner = Owner(pid: pid, comm: owners.comm(pid), uid: m.idiag_uid)
        return LiveSocket(cookie: cookie,
                          key: BindingKey(netns: netns, transport: transport, family: family, addressBytes: address, port: port),
                          owner: owner, state: transport == .tcp && UInt32(m.idiag_state) == tcpListen ? .listen : .bound)
    }
}

/// Which process holds which socket inode, and one process in each network namespace.
struct SocketOwners {
    var pidBySocket: [UInt64: Int32] = [:]
    /// netns inode -> a pid living in it.
    var namespaces: [UInt32: Int32] = [:]
    private var comms: [Int32: String] = [:]

    func comm(_ pid: Int32) -> String { comms[pid] ?? "" }

    static func scan() -> SocketOwners {
        var owners = SocketOwners()
        let fm = FileManager.default
        let pids = ((try? fm.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }.sorted()
        for pid in pids {
            if let ns = try? fm.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/net"), let inode = namespaceInode(ns),
               owners.namespaces[inode] == nil {
                owners.namespaces[inode] = pid
            }
            guard let fds = try? fm.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
            var holdsSocket = false
            for fd in fds {
                guard let target = try? fm.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                      target.hasPrefix("socket:["), let inode = UInt64(target.dropFirst(8).dropLast()) else { continue }
                // The lowest pid that holds a socket is its owner (the parent, after fork), except
                // init: with systemd socket activation pid 1 keeps its copy, and the service it
                // handed the socket to is the one that serves it.
                if owners.pidBySocket[inode] == nil || owners.pidBySocket[inode] == 1 { owners.pidBySocket[inode] = pid }
                holdsSocket = true
            }
            if holdsSocket, let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) {
                owners.comms[pid] = comm.trimmingCharacters(in: .newlines)
            }
        }
        return owners
    }

    /// "net:[4026531840]" -> 4026531840
    static func namespaceInode(_ link: String) -> UInt32? {
        guard link.hasPrefix("net:[") else { return nil }
        return UInt32(link.dropFirst(5).dropLast())
    }
}

/// A NETLINK_SOCK_DIAG socket created inside a given network namespace. Its descriptor is
/// owned by `socket`: the caller closes it.
struct NetlinkSocket {
    let socket: FileDescriptor

    /// Creates the socket inside the namespace of `pid` from a short-lived thread, since
    /// setns changes only the calling thread and a socket keeps the namespace it was made in.
    init(namespaceOf pid: Int32) throws {
        let namespace = try FileDescriptor.open("/proc/\(pid)/ns/net", O_RDONLY)
        defer { namespace.close() }
        let box = ResultBox()
        let thread = Thread {
            box.result = Result {
                try Syscall.valueOrErrno("setns") { pw_enter_netns(namespace.rawValue) }
                return try FileDescriptor.socket(AF_NETLINK, Int32(SOCK_RAW.rawValue), NETLINK_SOCK_DIAG)
            }
            box.done.signal()
        }
        thread.start()
        box.done.wait()
        do { socket = try box.result!.get() } catch {
            throw CaptureError("cannot open a sock_diag socket in the network namespace of pid \(pid): \(error)")
        }
    }

    private final class ResultBox: @unchecked Sendable {
        var result: Result<FileDescriptor, Error>?
        let done = DispatchSemaphore(value: 0)
    }

    /// One SOCK_DIAG_BY_FAMILY dump.
    func dump(family: UInt8, protocol proto: UInt8, states: UInt32) throws -> [inet_diag_msg] {
        struct Request {
            var header: nlmsghdr
            var body: inet_diag_req_v2
        }
        var request = Request(header: nlmsghdr(), body: inet_diag_req_v2())
        request.header.nlmsg_len = UInt32(MemoryLayout<Request>.size)
        request.header.nlmsg_type = UInt16(SOCK_DIAG_BY_FAMILY)
        request.header.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
        request.body.sdiag_family = family
        request.body.sdiag_protocol = proto
        request.body.idiag_states = states
        do { _ = try withUnsafeBytes(of: &request) { try socket.send($0) } } catch {
            throw CaptureError("sock_diag request failed: \(error)")
        }

        var out: [inet_diag_msg] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n: Int
            do { n = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) } } catch {
                throw CaptureError("sock_diag read failed: \(error)")
            }
            guard n > 0 else { throw CaptureError("sock_diag read failed: the kernel closed the socket") }
            var offset = 0
            let headerSize = MemoryLayout<nlmsghdr>.size
            while offset + headerSize <= n {
                let header = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: nlmsghdr.self) }
                let length = Int(header.nlmsg_len)
                guard length >= headerSize, offset + length <= n else { break }
                switch Int32(header.nlmsg_type) {
                case NLMSG_DONE: return out
                case NLMSG_ERROR:
                    let code = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + headerSize, as: Int32.self) }
                    // A protocol the kernel has no diag module for lists nothing.
                    if code == -ENOENT { return out }
                    throw CaptureError("sock_diag dump failed: \(SystemError.text(-code))")
                default:
                    if length - headerSize >= MemoryLayout<inet_diag_msg>.size {
                        out.append(buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + headerSize, as: inet_diag_msg.self) })
                    }
                }
                offset += (length + 3) & ~3
            }
        }
    }
}
