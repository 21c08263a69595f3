import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// What holds a port as a listener, one definition for the event path, the start-up snapshot
/// and the periodic resync: TCP in LISTEN, TCP bound and neither listening nor connected,
/// UDP bound and not connected. Sockets that connect are clients. Each test lets periodic
/// resyncs run and checks from the ledger's history that none of them had to correct
/// anything: the event path alone keeps the table equal to the kernel.
extension KernelSuite {
    @Suite struct ListenerFidelityTests {

        func started(_ extra: [String] = []) throws -> DaemonHarness? {
            let daemon = try DaemonHarness(arguments: ["--resync.interval", "1s"] + extra)
            return daemon.waitReady() ? daemon : nil
        }

        func waitShown(_ d: DaemonHarness, _ port: UInt16, _ transport: String, _ part: String? = nil) -> Bool {
            d.waitShown(port, transport, part.map { [$0] } ?? []) != nil
        }

        func waitGone(_ d: DaemonHarness, _ port: UInt16, _ transport: String) -> Bool { d.waitGone(port, transport) }

        /// Helpers for the child scripts: a TCP server to connect to, and a UDP disconnect.
        static let clientPrelude = """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        def disconnect(s):
            unspec = (ctypes.c_ubyte * 16)()  # sa_family 0: AF_UNSPEC
            assert libc.connect(s.fileno(), unspec, 16) == 0, ctypes.get_errno()
        server = tcp()

        """

        @Test func tcpBindThenConnectIsAClientFromThen() throws {
            guard let d = try started() else { return }
            let child = try ChildProcess(Self.clientPrelude + """
            c = socket.socket()
            c.bind(("127.0.0.1", 0))
            say(c.getsockname()[1])
            wait()
            c.connect(server.getsockname())
            say("connected")
            wait()
            c.close()
            say("closed")
            wait()
            """)
            let port = try #require(UInt16(child.line() ?? ""))
            #expect(waitShown(d, port, "tcp", "state=\"bound\""), "a bound TCP socket is listed until it connects")
            child.send("connect")
            #expect(child.line() == "connected")
            #expect(waitGone(d, port, "tcp"), "a connected socket is a client")
            #expect(d.waitResyncs(2))
            #expect(d.portInfo(port: port, transport: "tcp") == nil, "a resync brought the client back")
            let orphans = d.sample("portwatch_orphan_closes_total{protocol=\"tcp\"}")
            child.send("close")
            #expect(child.line() == "closed")
            #expect(d.barrier())
            #expect(d.sample("portwatch_orphan_closes_total{protocol=\"tcp\"}") == orphans, "the client's release counted as an orphan")
            #expect(d.history(port: port, transport: "tcp") == ["insert:", "delete:connected"])
        }

        @Test func tcpBindAndConnectWithinTheWindowIsNeverListed() throws {
            guard let d = try started(["--reconcile.window", "2s"]) else { return }
            let clients = d.sample("portwatch_client_bindings_total{protocol=\"tcp\"}") ?? 0
            let transients = d.sample("portwatch_transient_bindings_total{protocol=\"tcp\"}") ?? 0
            let child = try ChildProcess(Self.clientPrelude + """
            c = socket.socket()
            c.bind(("127.0.0.1", 0))
            c.connect(server.getsockname())
            say(c.getsockname()[1])
            wait()
            """)
            let port = try #require(UInt16(child.line() ?? ""))
            #expect(TestHTTP.waitUntil(DaemonHarness.deadline) {
                (d.sample("portwatch_client_bindings_total{protocol=\"tcp\"}") ?? 0) >= clients + 1
            }, "a socket that bound and connected at once is counted as a client")
            #expect(d.sample("portwatch_transient_bindings_total{protocol=\"tcp\"}") == transients, "a client is not a transient listener")
            #expect(d.portInfo(port: port, transport: "tcp") == nil)
            #expect(d.history(port: port, transport: "tcp").isEmpty)
        }

        @Test func udpConnectLeavesAndDisconnectComesBackByResync() throws {
            guard let d = try started() else { return }
            // An explicit port: one bound to port 0 goes back to the kernel on disconnect.
            let child = try ChildProcess(Self.clientPrelude + """
            u = udp(port=\(TestHTTP.freePort()))
            say(u.getsockname()[1])
            wait()
            u.connect(("127.0.0.1", 9))
            say("connected")
            wait()
            disconnect(u)
            say("disconnected")
            wait()
            """)
            let port = try #require(UInt16(child.line() ?? ""))
            #expect(waitShown(d, port, "udp"))
            child.send("connect")
            #expect(child.line() == "connected")
            #expect(waitGone(d, port, "udp"), "a connected UDP socket is a client")
            #expect(d.waitResyncs(2))
            #expect(d.portInfo(port: port, transport: "udp") == nil, "a resync brought the client back")
            #expect(d.history(port: port, transport: "udp") == ["insert:", "delete:connected"])
            // No kernel hook sees connect(AF_UNSPEC): the next resync finds the listener again.
            let corrections = d.sample("portwatch_resync_corrections_total{action=\"insert\"}") ?? 0
            child.send("disconnect")
            #expect(child.line() == "disconnected")
            #expect(waitShown(d, port, "udp", "state=\"bound\""), "a disconnected UDP socket is a listener again")
            #expect((d.sample("portwatch_resync_corrections_total{action=\"insert\"}") ?? 0) >= corrections + 1, "and it is counted")
            child.kill()
            #expect(waitGone(d, port, "udp"), "the release after a disconnect is reported")
        }

        @Test(arguments: [true, false])
        func shutdownOfAListener(explicitPort: Bool) throws {
            guard let d = try started() else { return }
            let port = explicitPort ? TestHTTP.freePort() : 0
            let child = try ChildProcess("""
            s = tcp(port=\(port))
            say(s.getsockname()[1])
            wait()
            s.shutdown(socket.SHUT_RDWR)
            say("shut")
            wait()
            """)
            let bound = try #require(UInt16(child.line() ?? ""))
            #expect(waitShown(d, bound, "tcp", "state=\"listen\""))
            child.send("shutdown")
            #expect(child.line() == "shut")
            if explicitPort {
                // bind() to a chosen port keeps it after shutdown: a bound socket again.
                #expect(waitShown(d, bound, "tcp", "state=\"bound\""), "a shut-down listener on its own port is bound")
            } else {
                #expect(waitGone(d, bound, "tcp"), "a shut-down listener on a kernel-chosen port gives it back")
            }
            #expect(d.waitResyncs(2))
            #expect((d.portInfo(port: bound, transport: "tcp") != nil) == explicitPort, "the resync disagreed")
            child.kill()
            #expect(waitGone(d, bound, "tcp"))
            #expect(d.history(port: bound, transport: "tcp") == (explicitPort ? ["insert:", "delete:released"] : ["insert:", "delete:shutdown"]))
        }

        @Test func aConnectionThatFailsLeavesTheSocketBoundAgain() throws {
            guard let d = try started() else { return }
            let refused = TestHTTP.freePort()
            let port = TestHTTP.freePort()
            let child = try ChildProcess("""
            c = socket.socket()
            c.bind(("127.0.0.1", \(port)))
            say("bound")
            wait()
            try:
                c.connect(("127.0.0.1", \(refused)))
            except ConnectionRefusedError:
                say("refused")
            wait()
            """)
            #expect(child.line() == "bound")
            #expect(waitShown(d, port, "tcp", "state=\"bound\""))
            child.send("connect")
            #expect(child.line() == "refused")
            #expect(d.waitResyncs(2))
            #expect(d.portInfo(port: port, transport: "tcp")?.contains("state=\"bound\"") == true,
                    "a socket whose connect failed keeps its port, unconnected")
            child.kill()
            #expect(waitGone(d, port, "tcp"))
            let history = d.history(port: port, transport: "tcp")
            #expect(!history.contains("delete:resync") && history.first == "insert:" && history.last == "delete:released", "\(history)")
        }

        @Test(arguments: ["127.0.0.1", "::1"])
        func udpSendWithoutBindHoldsAPort(destination: String) throws {
            guard let d = try started() else { return }
            let family = destination.contains(":") ? AF_INET6 : AF_INET
            let child = try ChildProcess("""
            u = socket.socket(\(family), socket.SOCK_DGRAM)
            u.sendto(b"x", ("\(destination)", 9))
            say(u.getsockname()[1])
            wait()
            """)
            let port = try #require(UInt16(child.line() ?? ""))
            let wildcard = family == AF_INET6 ? "::" : "0.0.0.0"
            #expect(waitShown(d, port, "udp", "address=\"\(wildcard)\""), "the port the kernel gave the socket is held")
            #expect(d.portInfo(port: port, transport: "udp")?.contains("pid=\"\(child.pid)\"") == true)
            #expect(d.waitResyncs(2))
            #expect(d.history(port: port, transport: "udp") == ["insert:"], "a resync had to correct the row")
            child.kill()
            #expect(waitGone(d, port, "udp"))
        }

        /// sock_diag lists bound, not listening TCP sockets from Linux 6.7 on; the daemon probes
        /// for it, says so in a gauge, and on older kernels leaves such rows to the events.
        @Test func theBoundTCPListingFeatureMatchesTheKernel() throws {
            guard let d = try started() else { return }
            let expected: Double = KernelRelease.isBefore(6, 7) ? 0 : 1
            #expect(d.sample("portwatch_kernel_feature{feature=\"sock_diag_bound_tcp\"}") == expected, "kernel \(KernelRelease.text)")
            // Either way a bound TCP socket stays listed across resyncs, without corrections.
            let child = try ChildProcess("s = tcp(listen=False)\nsay(s.getsockname()[1])\nwait()")
            let port = try #require(UInt16(child.line() ?? ""))
            #expect(waitShown(d, port, "tcp", "state=\"bound\""))
            #expect(d.waitResyncs(2))
            #expect(d.history(port: port, transport: "tcp") == ["insert:"])
        }

        @Test func restartWithClientsAliveGivesTheSameTable() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-fidelity-\(UUID().uuidString)").path
            let db = dir + "/pw.db"
            let child = try ChildProcess(Self.clientPrelude + """
            c = socket.socket(); c.bind(("127.0.0.1", 0)); c.connect(server.getsockname())
            u = udp(); u.connect(("127.0.0.1", 9))
            b = tcp(listen=False)
            say(server.getsockname()[1], c.getsockname()[1], u.getsockname()[1], b.getsockname()[1])
            wait()
            """)
            let ports = (child.line() ?? "").split(separator: " ").compactMap { UInt16($0) }
            try #require(ports.count == 4)
            let watched = [(ports[0], "tcp"), (ports[1], "tcp"), (ports[2], "udp"), (ports[3], "tcp")]
            func table(_ d: DaemonHarness) -> [String?] { watched.map { d.portInfo(port: $0.0, transport: $0.1) } }
            var before: [String?] = []
            do {
                let d = try DaemonHarness(arguments: ["--resync.interval", "1s"], dbPath: db)
                guard d.waitReady() else { return }
                before = table(d)
                // A bound, not listening TCP socket older than the daemon is found only where
                // sock_diag can list it (Linux 6.7+).
                let boundVisible = d.sample("portwatch_kernel_feature{feature=\"sock_diag_bound_tcp\"}") == 1
                #expect(before.map { $0 != nil } == [true, false, false, boundVisible], "\(before)")
                #expect(d.stop() == 0)
            }
            let d = try DaemonHarness(arguments: ["--resync.interval", "1s"], dbPath: db)
            guard d.waitReady() else { return }
            #expect(d.waitResyncs(1))
            #expect(table(d) == before)
            for (port, transport) in watched {
                #expect(!d.history(port: port, transport: transport).contains("delete:resync"))
            }
        }

        @Test func aSocketKeepsTheNamespaceItWasMadeIn() throws {
            guard let d = try started() else { return }
            let child = try ChildProcess(Self.clientPrelude + """
            s = socket.socket()                      # made in the host namespace
            assert libc.unshare(0x40000000) == 0     # CLONE_NEWNET: the task moves, the socket does not
            s.bind(("127.0.0.1", 0)); s.listen()
            say(s.getsockname()[1], os.readlink("/proc/self/ns/net"))
            wait()
            """)
            let words = (child.line() ?? "").split(separator: " ")
            try #require(words.count == 2)
            let port = try #require(UInt16(words[0]))
            let host = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net").dropFirst(5).dropLast()
            #expect(!words[1].contains(host), "the child left the host namespace")
            #expect(waitShown(d, port, "tcp", "netns=\"\(host)\""), "\(d.portInfo(port: port, transport: "tcp") ?? "not listed")")
            #expect(d.waitResyncs(2))
            #expect(d.history(port: port, transport: "tcp") == ["insert:"], "a resync had to correct the row")
            child.kill()
            #expect(waitGone(d, port, "tcp"))
        }
    }
}
