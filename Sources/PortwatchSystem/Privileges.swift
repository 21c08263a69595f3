import CSystem
import Glibc

/// The calling thread's capabilities and user (threads started afterwards inherit them).
public enum Privileges {
    /// Keeps only the capabilities in `keep` (a mask of CAP_* bits) in the effective and
    /// permitted sets, and in the bounding set too when CAP_SETPCAP allows it (root does; a
    /// non-root process holding file capabilities does not).
    public static func keepOnly(_ keep: UInt64) throws {
        let rc = pw_keep_capabilities(keep)
        guard rc == 0 else { throw SystemError("drop capabilities", errno: -rc) }
    }

    /// Becomes `uid`/`gid` (no supplementary groups), keeping the capabilities in `keep`.
    public static func switchUser(uid: uid_t, gid: gid_t, keeping keep: UInt64) throws {
        let rc = pw_switch_user(uid, gid, keep)
        guard rc == 0 else { throw SystemError("switch user", errno: -rc) }
    }

    /// Gives `path` to `uid`/`gid`.
    public static func chown(_ path: String, uid: uid_t, gid: gid_t) throws {
        try Syscall.valueOrErrno("chown \(path)") { Glibc.chown(path, uid, gid) }
    }
}

/// A resource limit of this process (getrlimit/setrlimit).
public enum ResourceLimit: Sendable {
    case openFiles, lockedMemory

    private var resource: __rlimit_resource_t {
        switch self {
        case .openFiles: __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        case .lockedMemory: __rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue)
        }
    }

    /// The soft and hard limits (`rlim_t.max`: unlimited).
    public func current() throws -> (soft: rlim_t, hard: rlim_t) {
        var limit = rlimit()
        try Syscall.valueOrErrno("getrlimit") { getrlimit(resource, &limit) }
        return (limit.rlim_cur, limit.rlim_max)
    }

    /// Raises the soft limit to the hard one (no privilege needed). Returns the new soft limit.
    @discardableResult
    public func raiseToHardLimit() throws -> rlim_t {
        var limit = rlimit()
        try Syscall.valueOrErrno("getrlimit") { getrlimit(resource, &limit) }
        guard limit.rlim_cur < limit.rlim_max else { return limit.rlim_cur }
        limit.rlim_cur = limit.rlim_max
        try Syscall.valueOrErrno("setrlimit") { setrlimit(resource, &limit) }
        return limit.rlim_cur
    }
}

extension FileDescriptor {
    /// Moves the calling thread into the network namespace this descriptor names (setns).
    public func enterNetworkNamespace() throws {
        try Syscall.valueOrErrno("setns") { pw_enter_netns(rawValue) }
    }

    /// Opens a cgroup v2 directory by its id (the kernfs node id BPF records) through a file
    /// handle on the hierarchy's mount (`self`). Needs CAP_DAC_READ_SEARCH; ESTALE: the cgroup is gone.
    public func openCgroup(id: UInt64) throws -> FileDescriptor {
        FileDescriptor(owning: try Syscall.valueOrErrno("open_by_handle_at") { pw_open_cgroup_by_id(rawValue, id) })
    }

    /// The path this descriptor was opened at, as /proc/self/fd shows it (readlink).
    public func path() throws -> String { try Self.readLink("/proc/self/fd/\(rawValue)") }

    /// Where a symbolic link points (readlink(2)).
    public static func readLink(_ path: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        let n = try Syscall.valueOrErrno("readlink \(path)") { readlink(path, &buffer, buffer.count - 1) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
