import CBPF
import Foundation
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
                return String(fields[1]).replacingOccurrences(of: "\\040", with: " ")
            }
        }
        throw CaptureError("no cgroup v2 hierarchy is mounted (no cgroup2 entry in /proc/mounts): mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup`")
    }

    public static func requireBTF() throws {
        guard FileManager.default.fileExists(atPath: btfPath) else {
            throw CaptureError("the kernel exposes no BTF (\(btfPath) is missing): portwatch needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")
        }
    }

    /// Capabilities the daemon needs, and why:
    /// CAP_BPF and CAP_PERFMON load the programs (they read task fields), CAP_NET_ADMIN attaches
    /// cgroup socket programs, CAP_SYS_ADMIN enters other network namespaces (setns) for the
    /// snapshot, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH read /proc/PID/fd of other users' processes.
    public static let required: [(name: String, bit: Int)] = [
        ("CAP_BPF", 39), ("CAP_PERFMON", 38), ("CAP_NET_ADMIN", 12), ("CAP_SYS_ADMIN", 21),
        ("CAP_SYS_PTRACE", 19), ("CAP_DAC_READ_SEARCH", 2),
    ]

    /// The effective capability set, from /proc/self/status.
    public static func effectiveCapabilities(status: String? = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) -> UInt64 {
        for line in (status ?? "").split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
        }
        return 0
    }

    public static func missingCapabilities(_ effective: UInt64 = effectiveCapabilities()) -> [String] {
        required.filter { effective & (1 << UInt64($0.bit)) == 0 }.map(\.name)
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
        let rc = pw_keep_capabilities(keep)
        guard rc == 0 else { throw CaptureError("cannot drop capabilities: \(SystemError.text(-rc))") }
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
            guard chown(path, uid, gid) == 0 else {
                throw CaptureError("--run-as \(user): cannot give \(path) to that user: \(SystemError.text(errno))")
            }
        }
        let keep = keptAfterAttach.reduce(UInt64(0)) { $0 | 1 << UInt64($1.bit) }
        let rc = pw_switch_user(uid, gid, keep)
        guard rc == 0 else { throw CaptureError("--run-as \(user): cannot switch user: \(SystemError.text(-rc))") }
    }

    public static func requirePrivileges() throws {
        let missing = missingCapabilities()
        guard missing.isEmpty else {
            throw CaptureError("portwatch lacks \(missing.joined(separator: ", ")) to load and attach its BPF programs: run it as root, or grant \(required.map(\.name).joined(separator: ", "))")
        }
    }
}
