import Foundation

/// Kubernetes and container names read from the container runtimes' own state on disk (no API
/// server): containerd's and CRI-O's OCI bundles carry the pod's annotations, Docker's
/// config.v2.json carries the container's name. Every path is under `rootfs` (`--path.rootfs`).
public struct ContainerRuntimes: Sendable {
    public struct Names: Sendable, Equatable {
        public var pod = ""
        public var namespace = ""
        public var container = ""

        public init(pod: String = "", namespace: String = "", container: String = "") {
            self.pod = pod
            self.namespace = namespace
            self.container = container
        }
    }

    public let rootfs: String

    public init(rootfs: String = "/") {
        self.rootfs = rootfs.hasSuffix("/") ? String(rootfs.dropLast()) : rootfs
    }

    /// The names for a container id, from the first runtime that knows it.
    public func names(of id: String) -> Names? {
        if let annotations = annotations(at: "/run/containerd/io.containerd.runtime.v2.task/k8s.io/\(id)/config.json") {
            return Names(pod: annotations["io.kubernetes.cri.sandbox-name"] ?? "",
                         namespace: annotations["io.kubernetes.cri.sandbox-namespace"] ?? "",
                         container: annotations["io.kubernetes.cri.container-name"] ?? "")
        }
        if let annotations = annotations(at: "/run/containers/storage/overlay-containers/\(id)/userdata/config.json") {
            return Names(pod: annotations["io.kubernetes.pod.name"] ?? "",
                         namespace: annotations["io.kubernetes.pod.namespace"] ?? "",
                         container: annotations["io.kubernetes.container.name"] ?? "")
        }
        if let object = json(at: "/var/lib/docker/containers/\(id)/config.v2.json"), let name = object["Name"] as? String {
            let labels = (object["Config"] as? [String: Any])?["Labels"] as? [String: String] ?? [:]
            return Names(pod: labels["io.kubernetes.pod.name"] ?? "", namespace: labels["io.kubernetes.pod.namespace"] ?? "",
                         container: labels["io.kubernetes.container.name"] ?? String(name.drop { $0 == "/" }))
        }
        return nil
    }

    private func json(at path: String) -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: rootfs + path) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    private func annotations(at path: String) -> [String: String]? {
        json(at: path).map { $0["annotations"] as? [String: String] ?? [:] }
    }
}
