import Glibc
import PortwatchCore
import PortwatchSystem

/// Resolves the cgroup a socket's owner ran in to the service, container and pod it belongs
/// to. A cgroup id (the kernfs inode the BPF side records) is opened by handle on the cgroup
/// v2 mount, one syscall, so no path walk; results are cached by id, and the cache is
/// bounded. A cgroup gone before it is resolved gives an empty attribution, at once.
/// Not thread-safe: the capture thread owns it.
public final class AttributionResolver {
    public static let cacheLimit = 10_000

    private let mountPath: String
    private let mount: FileDescriptor?
    private let runtimes: ContainerRuntimes
    private var byID: [UInt64: Attribution] = [:]
    private var byPath: [String: Attribution] = [:]
    private var last: (id: UInt64, attribution: Attribution)?

    /// - Parameters:
    ///   - cgroupMount: where the cgroup v2 hierarchy is mounted (from /proc/mounts).
    ///   - rootfs: prefix for the container runtimes' state (`--path.rootfs`).
    public init(cgroupMount: String, rootfs: String = "/") {
        mountPath = cgroupMount.hasSuffix("/") ? String(cgroupMount.dropLast()) : cgroupMount
        mount = try? FileDescriptor.open(cgroupMount, O_RDONLY | O_DIRECTORY)
        runtimes = ContainerRuntimes(rootfs: rootfs)
    }

    deinit { mount?.close() }

    public var cached: Int { byID.count + byPath.count }

    /// The attribution of the cgroup with this id (0: unknown).
    public func resolve(id: UInt64) -> Attribution {
        guard id != 0 else { return Attribution() }
        // A burst of events mostly comes from one cgroup: no hashing for the repeats.
        if let last, last.id == id { return last.attribution }
        let attribution: Attribution
        if let known = byID[id] {
            attribution = known
        } else {
            attribution = path(of: id).map(resolve(path:)) ?? Attribution()
            if byID.count >= Self.cacheLimit { byID.removeAll(keepingCapacity: true) }
            byID[id] = attribution
        }
        last = (id, attribution)
        return attribution
    }

    /// The attribution of a cgroup path relative to the mount ("/system.slice/sshd.service").
    public func resolve(path: String) -> Attribution {
        if let known = byPath[path] { return known }
        var attribution = Attribution(unit: CgroupPath.unit(path), containerID: CgroupPath.containerID(path))
        if !attribution.containerID.isEmpty, let names = runtimes.names(of: attribution.containerID) {
            attribution.pod = names.pod
            attribution.namespace = names.namespace
            attribution.container = names.container
        }
        if byPath.count >= Self.cacheLimit { byPath.removeAll(keepingCapacity: true) }
        byPath[path] = attribution
        return attribution
    }

    /// The attribution of a running process, from /proc/PID/cgroup ("0::/path").
    public func resolve(pid: Int32) -> Attribution {
        guard pid > 0, let text = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else { return Attribution() }
        return resolve(path: String(line.dropFirst(3)))
    }

    /// The path of a cgroup by its id, through open_by_handle_at on the mount.
    private func path(of id: UInt64) -> String? {
        guard let mount, let directory = try? mount.openCgroup(id: id) else { return nil }
        defer { directory.close() }
        guard let full = try? directory.path(), full.hasPrefix(mountPath) else { return nil }
        let relative = String(full.dropFirst(mountPath.count))
        return relative.isEmpty ? "/" : relative
    }
}
