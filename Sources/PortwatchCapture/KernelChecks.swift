import Foundation

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

    public static func requirePrivileges() throws {
        guard geteuid() == 0 else {
            throw CaptureError("portwatch must load BPF programs: run it as root (or with CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN)")
        }
    }
}
