import FoundationEssentials
import Glibc
import PortwatchSystem

/// What the kernel must offer before portwatch tries to load anything.
public enum KernelChecks {
    public static let btfPath = "/sys/kernel/btf/vmlinux"

    /// The cgroup v2 root: cgroup programs attached there see every socket.
    /// Read from /proc/mounts, since hybrid layouts mount it at e.g. /sys/fs/cgroup/unified.
    public static func cgroup2Root(mounts: String? = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) throws -> String {
        for line in (mounts ?? "").split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count >= 3 && fields[2] == "cgroup2" {
                return String(fields[1]).replacing("\\040", with: " ")
            }
        }
        throw CaptureError("no cgroup v2 hierarchy is mounted (no cgroup2 entry in /proc/mounts): mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup`")
    }

    /// Whether this kernel charges BPF maps to RLIMIT_MEMLOCK (before Linux 5.11; later ones
    /// charge the memory cgroup, and the limit does not apply).
    public static let chargesMemlock: Bool = {
        var u = utsname()
        guard uname(&u) == 0 else { return false }
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard parts.count == 2 else { return false }
        return (parts[0], parts[1]) < (5, 11)
    }()

    static var memlockUnlimited: Bool { (try? ResourceLimit.lockedMemory.current().soft) == rlim_t.max }

    static var memlockText: String {
        guard let soft = try? ResourceLimit.lockedMemory.current().soft else { return "its limit unknown" }
        return "RLIMIT_MEMLOCK is \(soft >> 10) KiB"
    }

    /// Where maps are charged to RLIMIT_MEMLOCK, takes the hard limit as the soft one (no
    /// privilege needed; libbpf raises it to unlimited only with CAP_SYS_RESOURCE).
    public static func raiseMemlockToHardLimit() {
        guard chargesMemlock else { return }
        _ = try? ResourceLimit.lockedMemory.raiseToHardLimit()
    }

    public static func requireBTF() throws {
        guard FileManager.default.fileExists(atPath: btfPath) else {
            throw CaptureError("the kernel exposes no BTF (\(btfPath) is missing): portwatch needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")
        }
    }

    /// A capability by its number (capability.h); `alternative` is one the kernel accepts in
    /// its place.
    public struct Capability: Sendable {
        public let name: String
        public let bit: Int
        public let why: String
        public var alternative: (name: String, bit: Int)? = nil

        func held(in effective: UInt64) -> Bool {
            effective & (1 << UInt64(bit)) != 0 || alternative.map { effective & (1 << UInt64($0.bit)) != 0 } == true
        }
    }

    /// Capabilities the daemon needs, and why, as the kernel checks them: loading programs that
    /// read task fields asks `bpf_capable()` and `perfmon_capable()`, which accept CAP_SYS_ADMIN
    /// in place of CAP_BPF and CAP_PERFMON (Linux 5.8 split them off it). portwatch holds
    /// CAP_SYS_ADMIN anyway (setns into other network namespaces), so the two add nothing to it;
    /// the shipped deployments grant the four below, which container engines that predate
    /// Linux 5.8's capabilities (Docker 20.10) also know.
    public static let required: [Capability] = [
        Capability(name: "CAP_NET_ADMIN", bit: 12, why: "attach cgroup socket programs"),
        Capability(name: "CAP_SYS_ADMIN", bit: 21, why: "enter network namespaces; load the programs"),
        Capability(name: "CAP_SYS_PTRACE", bit: 19, why: "read other users' /proc/PID/fd"),
        Capability(name: "CAP_DAC_READ_SEARCH", bit: 2, why: "read other users' /proc/PID/fd"),
    ]

    /// What loading the programs asks of the kernel, each met by CAP_SYS_ADMIN too.
    public static let loading: [Capability] = [
        Capability(name: "CAP_BPF", bit: 39, why: "load BPF programs and maps", alternative: ("CAP_SYS_ADMIN", 21)),
        Capability(name: "CAP_PERFMON", bit: 38, why: "programs that read kernel memory", alternative: ("CAP_SYS_ADMIN", 21)),
    ]

    /// The effective capability set, from /proc/self/status.
    public static func effectiveCapabilities(status: String? = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) -> UInt64 {
        for line in (status ?? "").split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(line.dropFirst(7).trimmingBlanks, radix: 16) ?? 0
        }
        return 0
    }

    /// The names of what is missing: CAP_BPF (or CAP_SYS_ADMIN) is one requirement.
    public static func missingCapabilities(_ effective: UInt64 = effectiveCapabilities()) -> [String] {
        (loading + required).filter { !$0.held(in: effective) }.map { cap in
            cap.alternative.map { "\(cap.name) (or \($0.name))" } ?? cap.name
        }
    }

    /// What the running daemon still needs once its programs are attached: entering network
    /// namespaces (CAP_SYS_ADMIN) and reading other processes' /proc/PID/fd (CAP_SYS_PTRACE,
    /// CAP_DAC_READ_SEARCH) for each resync. Map and ring buffer file descriptors need none.
    public static let keptAfterAttach: [(name: String, bit: Int)] = [("CAP_SYS_ADMIN", 21), ("CAP_SYS_PTRACE", 19), ("CAP_DAC_READ_SEARCH", 2)]

    /// Drops every other capability (effective, permitted, inheritable, and the bounding set
    /// when CAP_SETPCAP is held, as for root) from the calling thread; call it before starting
    /// the daemon's threads. A non-root daemon with file capabilities (the container image)
    /// keeps the bounding set its runtime gave it: it cannot shrink it, and needs not, since
    /// nothing it runs can gain a capability outside its permitted set.
    public static func dropCapabilitiesAfterAttach() throws {
        let keep = keptAfterAttach.reduce(UInt64(0)) { $0 | 1 << UInt64($1.bit) }
        do { try Privileges.keepOnly(keep) } catch let error as SystemError {
            throw CaptureError("cannot drop capabilities: \(SystemError.text(error.errno))")
        }
    }

    /// Switches to `user` (a name or a number), keeping the capabilities resyncs need; the
    /// files in `ownedPaths` (the ledger and its WAL) are handed to that user first.
    public static func switchUser(_ user: String, ownedPaths: [String]) throws {
        let uid: uid_t, gid: gid_t
        if let entry = getpwnam(user) {
            (uid, gid) = (entry.pointee.pw_uid, entry.pointee.pw_gid)
        } else if let number = UInt32(user), let entry = getpwuid(number) {
            (uid, gid) = (entry.pointee.pw_uid, entry.pointee.pw_gid)
        } else {
            throw CaptureError("--run-as \(user): no such user (see /etc/passwd)")
        }
        for path in ownedPaths where FileManager.default.fileExists(atPath: path) {
            do { try Privileges.chown(path, uid: uid, gid: gid) } catch let error as SystemError {
                throw CaptureError("--run-as \(user): cannot give \(path) to that user: \(SystemError.text(error.errno))")
            }
        }
        let keep = keptAfterAttach.reduce(UInt64(0)) { $0 | 1 << UInt64($1.bit) }
        do { try Privileges.switchUser(uid: uid, gid: gid, keeping: keep) } catch let error as SystemError {
            throw CaptureError("--run-as \(user): cannot switch user: \(SystemError.text(error.errno))")
        }
    }

    public static func requirePrivileges() throws {
        let missing = missingCapabilities()
        guard missing.isEmpty else {
            throw CaptureError("portwatch lacks \(missing.joined(separator: ", ")) to load and attach its BPF programs: run it as root, or grant \(required.map(\.name).joined(separator: ", ")) (CAP_BPF and CAP_PERFMON add nothing to CAP_SYS_ADMIN)")
        }
    }
}
