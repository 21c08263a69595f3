/// What a cgroup v2 path says about who runs in it: the systemd unit, and the container id
/// of the runtimes that name their cgroups after it (systemd and cgroupfs drivers).
public enum CgroupPath {
    /// systemd units that can hold processes.
    static let unitSuffixes = [".service", ".scope"]

    /// Container scopes and directories: prefix of the last component -> runtime.
    static let containerScopes = ["docker-", "cri-containerd-", "crio-", "libpod-"]

    /// The innermost systemd unit that is not a container's own scope, or "".
    public static func unit(_ path: String) -> String {
        for component in path.split(separator: "/").reversed() {
            guard unitSuffixes.contains(where: { component.hasSuffix($0) }) else { continue }
            if containerID(ofComponent: component) != nil { continue }
            return String(component)
        }
        return ""
    }

    /// The 64-hex container id the path names, or "".
    ///   systemd driver: …/docker-<id>.scope, …/cri-containerd-<id>.scope, …/crio-<id>.scope, …/libpod-<id>.scope
    ///   cgroupfs driver: /docker/<id>, /kubepods/<qos>/pod<uid>/<id>, /kubepods/pod<uid>/<id>
    public static func containerID(_ path: String) -> String {
        let components = path.split(separator: "/")
        for (index, component) in components.enumerated().reversed() {
            if let id = containerID(ofComponent: component) { return id }
            if isContainerID(component), index > 0 {
                let parent = components[index - 1]
                if parent == "docker" || parent.hasPrefix("pod") || components.contains("kubepods") { return String(component) }
            }
        }
        return ""
    }

    static func containerID(ofComponent component: Substring) -> String? {
        for prefix in containerScopes where component.hasPrefix(prefix) && component.hasSuffix(".scope") {
            let id = component.dropFirst(prefix.count).dropLast(".scope".count)
            if isContainerID(id) { return String(id) }
        }
        return nil
    }

    static func isContainerID(_ text: Substring) -> Bool {
        text.count == 64 && text.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }
}
