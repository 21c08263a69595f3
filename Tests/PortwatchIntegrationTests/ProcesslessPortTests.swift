import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// A network namespace as `ip netns add` makes it (as CNI plugins and Docker make theirs): kept
/// by a bind mount under /run/netns, with no process in it.
final class NamedNetns {
    let name: String
    let inode: String

    init() throws {
        name = "pwtest\(getpid())\(UInt32.random(in: 0..<100_000))"
        let made = TestProcess.run(["ip", "netns", "add", name])
        guard made.status == 0 else { throw POSIXError(.EPERM) }
        inode = TestProcess.run(["stat", "-L", "-c", "%i", "/run/netns/\(name)"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs `ip ARGS` inside the namespace (the `ip` process ends at once).
    @discardableResult
    func ip(_ arguments: [String]) -> (status: Int32, output: String) { TestProcess.run(["ip", "-n", name] + arguments) }

    deinit { _ = TestProcess.run(["ip", "netns", "del", name]) }
}

extension KernelSuite {
    /// Ports no process holds (the kernel's own: VXLAN, Geneve, WireGuard, nfsd) and namespaces
    /// no process is in: in the table with the kernel as holder, and the tunnel device that uses
    /// the port as its unit, through every resync.
    @Suite struct ProcesslessPortTests {
        static func corrections(_ d: DaemonHarness) -> Double { d.scrape().sum("portwatch_resync_corrections_total") }

        @Test func vxlanInANamespaceNoProcessIsInStaysThroughResyncsAsTheKernels() throws {
            let ns = try NamedNetns()
            #expect(ns.ip(["link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789"]).status == 0)
            #expect(ns.ip(["link", "set", "vx0", "up"]).status == 0)
            let d = try DaemonHarness(arguments: ["--resync.interval", "1s"])
            guard d.waitReady() else { return }
            let shown = d.waitShown(4789, "udp", ["netns=\"\(ns.inode)\"", "pid=\"0\"", "comm=\"kernel\"", "unit=\"vxlan vx0\""])
            #expect(shown != nil, "\(d.portInfo(port: 4789, transport: "udp") ?? "not listed")")
            let atStart = Self.corrections(d)   // the start-up resync's inserts count as corrections
            #expect(d.waitResyncs(3))
            #expect(d.portInfo(port: 4789, transport: "udp")?.contains("netns=\"\(ns.inode)\"") == true, "a resync deleted it")
            #expect(Self.corrections(d) == atStart, "\(d.log)")
            #expect(ns.ip(["link", "del", "vx0"]).status == 0)
            #expect(d.waitGone(4789, "udp"))
            #expect(d.stop() == 0)
        }

        /// The `ip` that brings a VXLAN device up binds its socket and exits a millisecond later:
        /// the holder is the kernel, in the host's namespace and in one with a process in it.
        @Test func vxlanBroughtUpWhileWatchedIsHeldByTheKernelNotByIp() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let device = "pwvx\(getpid() % 100_000)"
            let port = UInt16(20_000 + getpid() % 10_000)
            defer { _ = TestProcess.run(["ip", "link", "del", device]) }
            #expect(TestProcess.run(["ip", "link", "add", device, "type", "vxlan", "id", "43", "dstport", "\(port)"]).status == 0)
            #expect(TestProcess.run(["ip", "link", "set", device, "up"]).status == 0)
            #expect(d.waitShown(port, "udp", ["pid=\"0\"", "comm=\"kernel\"", "unit=\"vxlan \(device)\""]) != nil,
                    "\(d.portInfo(port: port, transport: "udp") ?? "not listed")")
            #expect(d.history(port: port, transport: "udp").last == "update:holder", "\(d.history(port: port, transport: "udp"))")

            // A namespace with a process in it.
            let (child, _, netns) = try ChildProcess.listenerInNewNetworkNamespace()
            defer { child.kill() }
            let enter = ["nsenter", "-t", "\(child.pid)", "-n", "ip", "link"]
            #expect(TestProcess.run(enter + ["add", "vx1", "type", "vxlan", "id", "44", "dstport", "4789"]).status == 0)
            #expect(TestProcess.run(enter + ["set", "vx1", "up"]).status == 0)
            #expect(d.waitShown(4789, "udp", ["netns=\"\(netns)\"", "pid=\"0\"", "comm=\"kernel\"", "unit=\"vxlan vx1\""]) != nil)
            #expect(d.stop() == 0)
        }

        /// A listener in a namespace kept only by its bind mount: its process made it there and
        /// moved back out, passing nothing on but its descriptor.
        @Test func aListenerInANamespaceKeptOnlyByABindMountStays() throws {
            let ns = try NamedNetns()
            let child = try ChildProcess("""
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            home = os.open("/proc/self/ns/net", os.O_RDONLY)
            there = os.open("/run/netns/\(ns.name)", os.O_RDONLY)
            assert libc.setns(there, 0x40000000) == 0
            s = tcp("0.0.0.0")
            assert libc.setns(home, 0x40000000) == 0   # back out: the socket stays there
            say(s.getsockname()[1])
            wait()
            """)
            defer { child.kill() }
            let port = try #require(UInt16(child.line() ?? ""))
            let d = try DaemonHarness(arguments: ["--resync.interval", "1s"])
            guard d.waitReady() else { return }
            #expect(d.waitShown(port, "tcp", ["netns=\"\(ns.inode)\"", "pid=\"\(child.pid)\""]) != nil,
                    "\(d.portInfo(port: port, transport: "tcp") ?? "not listed")")
            let atStart = Self.corrections(d)
            #expect(d.waitResyncs(3))
            #expect(d.portInfo(port: port, transport: "tcp") != nil, "a resync deleted it")
            #expect(Self.corrections(d) == atStart)
            #expect(d.stop() == 0)
        }
    }
}
