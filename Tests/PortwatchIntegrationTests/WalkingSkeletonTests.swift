import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// A real listen() in the kernel becomes a line in /metrics, and goes away on close.
extension KernelSuite {
    @Suite struct WalkingSkeletonTests {
        @Test(arguments: ["127.0.0.1", "::1"])
        func listenAppearsAndCloseDisappears(address: String) throws {
            let daemon = try DaemonHarness()
            guard daemon.waitReady() else { return }
            let (fd, port) = TestSockets.bound(address)
            let family = address.contains(":") ? "ipv6" : "ipv4"
            let expected = "address=\"\(address)\",port=\"\(port)\",state=\"listen\",pid=\"\(getpid())\",comm=\"\(TestSockets.comm)\","
            let netns = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net").dropFirst(5).dropLast()

            let appeared = TestHTTP.waitUntil(5) {
                daemon.portInfo(port: port, transport: "tcp").map { $0.contains(expected) && $0.hasSuffix("exposure=\"loopback\"} 1") } == true
            }
            #expect(appeared, "no port_info for \(address):\(port); metrics:\n\(daemon.metrics())\nlog:\n\(daemon.log)")
            let line = daemon.portInfo(port: port, transport: "tcp") ?? ""
            #expect(line.contains("netns=\"\(netns)\",protocol=\"tcp\",family=\"\(family)\""), "\(line)")

            close(fd)
            let gone = TestHTTP.waitUntil(5) { daemon.portInfo(port: port, transport: "tcp") == nil }
            #expect(gone, "port \(port) still listed after close")
            #expect(daemon.stop() == 0, "SIGTERM ends the daemon cleanly")
        }
    }
}
