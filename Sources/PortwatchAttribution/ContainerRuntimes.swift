import FoundationEssentials
import Glibc

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
        if let docker = decode(DockerConfig.self, at: "/var/lib/docker/containers/\(id)/config.v2.json"), let name = docker.name {
            let labels = docker.labels
            return Names(pod: labels["io.kubernetes.pod.name"] ?? "", namespace: labels["io.kubernetes.pod.namespace"] ?? "",
                         container: labels["io.kubernetes.container.name"] ?? String(name.drop { $0 == "/" }))
        }
        return nil
    }

    private func decode<T: Decodable>(_ type: T.Type, at path: String) -> T? {
        guard let data = FileManager.default.contents(atPath: rootfs + path) else { return nil }
        return try? JSONDecoder().decode(type, from: data)
    }

    private func annotations(at path: String) -> [String: String]? {
        decode(OCIConfig.self, at: path)?.annotations
    }

    /// An OCI runtime config.json: its annotations (none when they are not all text).
    private struct OCIConfig: Decodable {
        var annotations: [String: String]

        enum CodingKeys: String, CodingKey { case annotations }

        init(from decoder: Decoder) throws {
            let fields = try decoder.container(keyedBy: CodingKeys.self)
            annotations = (try? fields.decodeIfPresent([String: String].self, forKey: .annotations)) ?? [:]
        }
    }

    /// Docker's config.v2.json: the container's name and labels (none when they are not all text).
    private struct DockerConfig: Decodable {
        var name: String?
        var labels: [String: String]

        enum CodingKeys: String, CodingKey { case name = "Name", config = "Config" }
        enum ConfigKeys: String, CodingKey { case labels = "Labels" }

        init(from decoder: Decoder) throws {
            let fields = try decoder.container(keyedBy: CodingKeys.self)
            name = try? fields.decodeIfPresent(String.self, forKey: .name)
            let config = try? fields.nestedContainer(keyedBy: ConfigKeys.self, forKey: .config)
            labels = (try? config?.decodeIfPresent([String: String].self, forKey: .labels)) ?? [:]
        }
    }
}
