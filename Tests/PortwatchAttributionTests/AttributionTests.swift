import Foundation
import Testing
import PortwatchCore
@testable import PortwatchAttribution

/// Cgroup paths and container runtimes' state as the runtimes write them.
@Suite struct AttributionTests {
    static let id = "3f1c0ffee0ddba11" + String(repeating: "0123456789abcdef", count: 3)

    @Test(arguments: [
        ("/system.slice/sshd.service", "sshd.service", ""),
        ("/user.slice/user-1000.slice/session-3.scope", "session-3.scope", ""),
        ("/system.slice/docker-\(id).scope", "", id),
        ("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234_5678.slice/cri-containerd-\(id).scope", "", id),
        ("/kubepods.slice/kubepods-pod99.slice/crio-\(id).scope", "", id),
        ("/machine.slice/libpod-\(id).scope/container", "", id),
        ("/docker/\(id)", "", id),
        ("/kubepods/besteffort/pod1234-5678/\(id)", "", id),
        ("/kubepods/pod1234-5678/\(id)", "", id),
        ("/system.slice/containerd.service/kubepods-burstable-pod12.slice:cri-containerd:\(id)", "containerd.service", ""),
        ("/", "", ""),
        ("/init.scope", "init.scope", ""),
    ])
    func cgroupPaths(path: String, unit: String, container: String) {
        #expect(CgroupPath.unit(path) == unit, "\(path)")
        #expect(CgroupPath.containerID(path) == container, "\(path)")
    }

    func rootfs(_ files: [String: String]) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pw-rootfs-\(UUID().uuidString)").path
        for (path, text) in files {
            let full = root + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: true, encoding: .utf8)
        }
        return root
    }

    @Test func containerdBundle() throws {
        let root = try rootfs(["/run/containerd/io.containerd.runtime.v2.task/k8s.io/\(Self.id)/config.json": """
            {"ociVersion":"1.1.0","annotations":{"io.kubernetes.cri.sandbox-name":"web-5d8f","io.kubernetes.cri.sandbox-namespace":"shop",
             "io.kubernetes.cri.container-name":"nginx","io.kubernetes.cri.container-type":"container"}}
            """])
        #expect(ContainerRuntimes(rootfs: root).names(of: Self.id) == .init(pod: "web-5d8f", namespace: "shop", container: "nginx"))
    }

    @Test func crioBundle() throws {
        let root = try rootfs(["/run/containers/storage/overlay-containers/\(Self.id)/userdata/config.json": """
            {"annotations":{"io.kubernetes.pod.name":"api-0","io.kubernetes.pod.namespace":"prod","io.kubernetes.container.name":"app"}}
            """])
        #expect(ContainerRuntimes(rootfs: root + "/").names(of: Self.id) == .init(pod: "api-0", namespace: "prod", container: "app"))
    }

    @Test func dockerContainer() throws {
        let root = try rootfs(["/var/lib/docker/containers/\(Self.id)/config.v2.json": """
            {"ID":"\(Self.id)","Name":"/redis-cache","Config":{"Labels":{}}}
            """])
        #expect(ContainerRuntimes(rootfs: root).names(of: Self.id) == .init(container: "redis-cache"))
        #expect(ContainerRuntimes(rootfs: root).names(of: String(repeating: "f", count: 64)) == nil, "unknown to every runtime")
    }

    @Test func resolverJoinsPathAndRuntimeState() throws {
        let root = try rootfs(["/run/containerd/io.containerd.runtime.v2.task/k8s.io/\(Self.id)/config.json": """
            {"annotations":{"io.kubernetes.cri.sandbox-name":"web-5d8f","io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.container-name":"nginx"}}
            """])
        let resolver = AttributionResolver(cgroupMount: "/nonexistent", rootfs: root)
        let a = resolver.resolve(path: "/kubepods.slice/kubepods-pod1.slice/cri-containerd-\(Self.id).scope")
        #expect(a == Attribution(containerID: Self.id, pod: "web-5d8f", namespace: "shop", container: "nginx"))
        #expect(resolver.resolve(id: 123456) == Attribution(), "a cgroup that cannot be opened is unknown, at once")
    }

    @Test func theCacheStaysBounded() {
        let resolver = AttributionResolver(cgroupMount: "/nonexistent")
        for i in 0..<(AttributionResolver.cacheLimit * 2 + 10) { _ = resolver.resolve(path: "/system.slice/app-\(i).service") }
        #expect(resolver.cached <= AttributionResolver.cacheLimit)
    }
}

/// How far a bound address can be reached.
@Suite struct ExposureTests {
    @Test(arguments: [
        ("0.0.0.0", AddressFamily.ipv4, Exposure.wildcard), ("::", .ipv6, .wildcard),
        ("127.0.0.1", .ipv4, .loopback), ("127.0.0.53", .ipv4, .loopback), ("::1", .ipv6, .loopback),
        ("::ffff:127.0.0.1", .ipv6, .loopback), ("::ffff:10.1.2.3", .ipv6, .private),
        ("10.0.0.7", .ipv4, .private), ("172.16.0.1", .ipv4, .private), ("172.31.255.1", .ipv4, .private),
        ("192.168.1.10", .ipv4, .private), ("169.254.10.1", .ipv4, .private),
        ("fd12:3456::1", .ipv6, .private), ("fc00::1", .ipv6, .private), ("fe80::1", .ipv6, .private),
        ("172.32.0.1", .ipv4, .public), ("8.8.8.8", .ipv4, .public), ("2001:db8::1", .ipv6, .public),
        ("febf::1", .ipv6, .private), ("fec0::1", .ipv6, .public),
        ("172.15.0.1", .ipv4, .public), ("0.0.0.1", .ipv4, .public), ("::ffff:0.0.0.0", .ipv6, .wildcard),
        ("::1.2.3.4", .ipv6, .public), ("::ffff:192.168.0.1", .ipv6, .private), ("fe00::1", .ipv6, .public),
        ("ff02::1", .ipv6, .public), ("::2", .ipv6, .public), ("not an address", .ipv4, .public),
    ])
    func exposure(address: String, family: AddressFamily, expected: Exposure) {
        #expect(Exposure(address: address, family: family) == expected, "\(address)")
    }
}
