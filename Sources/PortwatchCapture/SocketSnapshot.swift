import CSystem
import FoundationEssentials
import Dispatch
import Glibc
import PortwatchCore
import PortwatchSystem

/// Lists the sockets that hold ports now in every network namespace: TCP listeners and
/// bound UDP sockets, over NETLINK_SOCK_DIAG, owners found through /proc/PID/fd.
public enum SocketSnapshot {
    static let tcpListen: UInt32 = 10 // TCP_LISTEN
    /// TCP_BOUND_INACTIVE: bound, not listening (dumped by kernels >= 6.7; older ones ignore the bit).
    private static let tcpBoundInactive: UInt32 = 13
    static let tcpClose: UInt32 = 7   // TCP_CLOSE, the state of unconnected UDP sockets

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

    /// The sockets holding ports in every network namespace that exists (or in `only`), and
    /// the namespaces listed. Namespaces are found through processes, descriptors that hold
    /// one open, and nsfs bind mounts (`ip netns add`, CNI plugins, Docker); each is entered
    /// through the first of its handles that still names it, so one whose first process just
    /// exited is still listed. A namespace that cannot be entered, or whose dump fails, is
    /// left out of `namespaces`, and nothing in it may be taken for closed.
    public static func take(only: Set<UInt32>? = nil) throws -> SocketListing {
        let owners = SocketOwners.scan()
        let kernelWhenUnheld = SocketOwners.seesEveryProcess()
        var result: [LiveSocket] = []
        var listed = Set<UInt32>()
        for (inode, handles) in owners.namespaces.sorted(by: { $0.key < $1.key }) where only?.contains(inode) ?? true {
            guard let netlink = NetlinkSocket(namespace: inode, handles: handles) else { continue }
            defer { netlink.socket.close() }
            var found: [LiveSocket] = []
            do {
                for family in [AF_INET, AF_INET6] {
                    found += try netlink.dump(family: UInt8(family), protocol: UInt8(IPPROTO_TCP), states: 1 << tcpListen | 1 << tcpBoundInactive)
                        .compactMap { live($0, netns: inode, transport: .tcp, owners: owners, kernelWhenUnheld: kernelWhenUnheld) }
                    found += try netlink.dump(family: UInt8(family), protocol: UInt8(IPPROTO_UDP), states: 1 << tcpClose)
                        .compactMap { live($0, netns: inode, transport: .udp, owners: owners, kernelWhenUnheld: kernelWhenUnheld) }
                }
            } catch {
                continue
            }
            // The kernel's own UDP sockets: the tunnel device that uses the port, where one does.
            if found.contains(where: { $0.owner.isKernel && $0.key.transport == .udp }),
               let devices = try? TunnelDevices.byPort(namespacePath: netlink.path, inode: inode) {
                for i in found.indices where found[i].owner.isKernel && found[i].key.transport == .udp {
                    if let device = devices[found[i].key.port] { found[i].owner.attribution = Attribution(unit: device) }
                }
            }
            listed.insert(inode)
            result += found
        }
        return SocketListing(sockets: result, namespaces: listed, handles: owners.namespaces.filter { listed.contains($0.key) })
    }

    /// The TCP listeners of `family` in namespace `netns` whose socket inodes are among
    /// `inodes` (sock_diag's 32 bits of them), from one dump, entered through the first of the
    /// listening processes' `pids` that still opens it: cookie and key by inode. A socket not
    /// listening (yet, or any more) is absent; nil when the namespace cannot be entered or the
    /// dump fails (nothing is known then).
    static func listeners(inodes: Set<UInt32>, netns: UInt32, family: AddressFamily, pids: [Int32]) -> [UInt32: (cookie: UInt64, key: BindingKey)]? {
        guard let netlink = NetlinkSocket(namespace: netns, handles: pids.map { "/proc/\($0)/ns/net" }) else { return nil }
        defer { netlink.socket.close() }
        guard let listed = try? netlink.dump(family: family == .ipv4 ? UInt8(AF_INET) : UInt8(AF_INET6), protocol: UInt8(IPPROTO_TCP),
                                             states: 1 << tcpListen) else { return nil }
        var out: [UInt32: (cookie: UInt64, key: BindingKey)] = [:]
        for m in listed where inodes.contains(m.idiag_inode) {
            if let live = live(m, netns: netns, transport: .tcp, owners: SocketOwners(), kernelWhenUnheld: false) {
                out[m.idiag_inode] = (live.cookie, live.key)
            }
        }
        return out
    }

    /// `kernelWhenUnheld`: this process sees every process (the initial pid namespace), so a
    /// socket no descriptor holds is the kernel's; elsewhere its holder is unknown (pid 0, no name).
    private static func live(_ m: inet_diag_msg, netns: UInt32, transport: TransportProtocol, owners: SocketOwners,
                             kernelWhenUnheld: Bool) -> LiveSocket? {
        let port = UInt16(bigEndian: m.id.idiag_sport)
        guard port != 0 else { return nil }
        // A connected UDP socket is a client's implicit port, not a binding.
        if transport == .udp && m.id.idiag_dport != 0 { return nil }
        guard let family = AddressFamily(rawValue: m.idiag_family) else { return nil }
        var src = m.id.idiag_src
        let address = withUnsafeBytes(of: &src) { AddressBytes($0, family: family) }
        let cookie = UInt64(m.id.idiag_cookie.0) | UInt64(m.id.idiag_cookie.1) << 32
        let owner: Owner
        if let pid = owners.pidBySocket[UInt64(m.idiag_inode)] {
            owner = Owner(pid: pid, comm: owners.comm(pid), uid: m.idiag_uid)
        } else {
            owner = kernelWhenUnheld ? .kernel(uid: m.idiag_uid) : Owner(pid: 0, comm: "", uid: m.idiag_uid)
        }
        return LiveSocket(cookie: cookie,
                          key: BindingKey(netns: netns, transport: transport, family: family, addressBytes: address, port: port),
                          owner: owner, state: transport == .tcp && UInt32(m.idiag_state) == tcpListen ? .listen : .bound)
    }
}

/// Which process holds which socket inode, and the handles of each network namespace.
struct SocketOwners {
    var pidBySocket: [UInt64: Int32] = [:]
    /// netns inode -> paths that open it: /proc/PID/ns/net of a few of its processes,
    /// /proc/PID/fd/N of descriptors that hold it open, and its nsfs bind mounts.
    var namespaces: [UInt32: [String]] = [:]
    private var comms: [Int32: String] = [:]
    /// Handles kept per namespace: enough to outlive a few exits between scan and dump.
    static let handlesPerNamespace = 4

    /// Whether this process is in the initial pid namespace, where /proc shows every process.
    static func seesEveryProcess() -> Bool {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid")) == "pid:[4026531836]"
    }

    private mutating func add(_ inode: UInt32, _ path: String) {
        if namespaces[inode, default: []].count < Self.handlesPerNamespace { namespaces[inode, default: []].append(path) }
    }

    func comm(_ pid: Int32) -> String { comms[pid] ?? "" }

    static func scan() -> SocketOwners {
        var owners = SocketOwners()
        let fm = FileManager.default
        let pids = ((try? fm.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }.sorted()
        for pid in pids {
            if let ns = try? fm.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/net"), let inode = namespaceInode(ns) {
                owners.add(inode, "/proc/\(pid)/ns/net")
            }
            guard let fds = try? fm.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
            var holdsSocket = false
            for fd in fds {
                guard let target = try? fm.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)") else { continue }
                // A namespace held open by a descriptor (a runtime that made it, before any
                // process entered it).
                if let inode = namespaceInode(target) {
                    owners.add(inode, "/proc/\(pid)/fd/\(fd)")
                    continue
                }
                guard target.hasPrefix("socket:["), let inode = UInt64(target.dropFirst(8).dropLast()) else { continue }
                // The lowest pid that holds a socket is its owner (the parent, after fork), except
                // init: with systemd socket activation pid 1 keeps its copy, and the service it
                // handed the socket to is the one that serves it.
                if owners.pidBySocket[inode] == nil || owners.pidBySocket[inode] == 1 { owners.pidBySocket[inode] = pid }
                holdsSocket = true
            }
            if holdsSocket, let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) {
                owners.comms[pid] = comm.trimmingNewlines
            }
        }
        // Namespaces kept by bind mounts, in this mount namespace and in init's (the host's,
        // from a container that shares its pid namespace).
        for (table, root) in [("/proc/self/mountinfo", ""), ("/proc/1/mountinfo", "/proc/1/root")] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            for (inode, mountPoint) in nsfsMounts(text) { owners.add(inode, root + mountPoint) }
        }
        return owners
    }

    /// The network namespaces bound to paths in a mountinfo table: (inode, mount point).
    static func nsfsMounts(_ mountinfo: String) -> [(UInt32, String)] {
        var found: [(UInt32, String)] = []
        for line in mountinfo.split(separator: "\n") {
            // "53 27 0:4 net:[4026531833] /run/netns/a rw - nsfs nsfs rw"
            guard let dash = line.firstRange(of: " - nsfs ") else { continue }
            let fields = line[..<dash.lowerBound].split(separator: " ")
            guard fields.count >= 5, let inode = namespaceInode(String(fields[3])) else { continue }
            found.append((inode, unescape(fields[4])))
        }
        return found
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes (\040).
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        var rest = Array(field.utf8)[...]
        while let byte = rest.popFirst() {
            if byte == UInt8(ascii: "\\"), rest.count >= 3, let value = UInt8(String(decoding: rest.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                rest = rest.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// "net:[4026531840]" -> 4026531840
    static func namespaceInode(_ link: String) -> UInt32? {
        guard link.hasPrefix("net:[") else { return nil }
        return UInt32(link.dropFirst(5).dropLast())
    }
}

/// A netlink socket (NETLINK_SOCK_DIAG unless said) created inside a given network namespace.
/// Its descriptor is owned by `socket`: the caller closes it.
struct NetlinkSocket {
    let socket: FileDescriptor
    /// The handle the namespace was entered through.
    let path: String

    /// Creates the socket inside the namespace of `pid`.
    init(namespaceOf pid: Int32) throws {
        try self.init(namespacePath: "/proc/\(pid)/ns/net", inode: nil)
    }

    /// Creates the socket inside namespace `inode` through the first of its handles that still
    /// opens it (a pid may have exited, or been reused by a process elsewhere); nil if none does.
    init?(namespace inode: UInt32, handles: [String]) {
        for path in handles {
            if let made = try? NetlinkSocket(namespacePath: path, inode: inode) {
                self = made
                return
            }
        }
        return nil
    }

    /// Creates the socket inside the namespace open at `path` from a short-lived thread, since
    /// setns changes only the calling thread and a socket keeps the namespace it was made in.
    /// With `inode`, a path that names another namespace now is refused.
    init(namespacePath path: String, inode: UInt32?, protocol proto: Int32 = NETLINK_SOCK_DIAG) throws {
        self.path = path
        let namespace = try FileDescriptor.open(path, O_RDONLY)
        defer { namespace.close() }
        if let inode {
            var info = stat()
            guard namespace.withUnsafeDescriptor { fstat($0, &info) } == 0, info.st_ino == UInt64(inode) else {
                throw CaptureError("\(path) no longer names network namespace \(inode)")
            }
        }
        let box = ResultBox()
        SystemThread.start(name: "portwatch-netns") {
            box.result = Result {
                try namespace.enterNetworkNamespace()
                return try FileDescriptor.socket(AF_NETLINK, Int32(SOCK_RAW.rawValue), proto)
            }
            box.done.signal()
        }
        box.done.wait()
        do { socket = try box.result!.get() } catch {
            throw CaptureError("cannot open a sock_diag socket in the network namespace of \(path): \(error)")
        }
    }

    private final class ResultBox: @unchecked Sendable {
        var result: Result<FileDescriptor, Error>?
        let done = DispatchSemaphore(value: 0)
    }

    /// One SOCK_DIAG_BY_FAMILY dump.
    func dump(family: UInt8, protocol proto: UInt8, states: UInt32) throws -> [inet_diag_msg] {
        var out: [inet_diag_msg] = []
        try dump(family: family, protocol: proto, states: states, extensions: 0) { message, _ in out.append(message) }
        return out
    }

    /// One SOCK_DIAG_BY_FAMILY dump asking for `extensions` (a mask of 1 << (INET_DIAG_x - 1));
    /// each socket's message is handed over with its attributes' bytes, valid during the call.
    func dump(family: UInt8, protocol proto: UInt8, states: UInt32, extensions: UInt8,
              _ each: (inet_diag_msg, UnsafeRawBufferPointer) -> Void) throws {
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
        request.body.idiag_ext = extensions
        do { _ = try withUnsafeBytes(of: &request) { try socket.send($0) } } catch {
            throw CaptureError("sock_diag request failed: \(error)")
        }

        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let messageSize = MemoryLayout<inet_diag_msg>.size
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
                case NLMSG_DONE: return
                case NLMSG_ERROR:
                    let code = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + headerSize, as: Int32.self) }
                    // A protocol the kernel has no diag module for lists nothing.
                    if code == -ENOENT { return }
                    throw CaptureError("sock_diag dump failed: \(SystemError.text(-code))")
                default:
                    if length - headerSize >= messageSize {
                        buffer.withUnsafeBytes { bytes in
                            let message = bytes.loadUnaligned(fromByteOffset: offset + headerSize, as: inet_diag_msg.self)
                            let attributes = (offset + headerSize + messageSize + 3) & ~3
                            each(message, UnsafeRawBufferPointer(rebasing: bytes[min(attributes, offset + length)..<(offset + length)]))
                        }
                    }
                }
                offset += (length + 3) & ~3
            }
        }
    }
}
