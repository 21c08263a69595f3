import CBPF
import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// Every way a port is taken or released, with real sockets against the real kernel.
extension KernelSuite {
    @Suite struct KernelCaptureTests {

        func started() throws -> DaemonHarness? {
            let daemon = try DaemonHarness()
            return daemon.waitReady() ? daemon : nil
        }

        func waitShown(_ d: DaemonHarness, _ port: UInt16, _ transport: String, _ parts: [String] = []) -> String? {
            d.waitShown(port, transport, parts)
        }

        func waitGone(_ d: DaemonHarness, _ port: UInt16, _ transport: String) -> Bool { d.waitGone(port, transport) }

        @Test(arguments: ["127.0.0.1", "::1"])
        func udpBindAndClose(address: String) throws {
            guard let d = try started() else { return }
            let (fd, port) = TestSockets.bound(address, udp: true)
            let family = address.contains(":") ? "ipv6" : "ipv4"
            #expect(waitShown(d, port, "udp", ["family=\"\(family)\"", "address=\"\(address)\"", "state=\"bound\"", "pid=\"\(getpid())\""]) != nil,
                    "\(d.metrics())")
            close(fd)
            #expect(waitGone(d, port, "udp"))
        }

        @Test func explicitPortAndV4MappedOnDualStack() throws {
            guard let d = try started() else { return }
            let port = TestHTTP.freePort()
            let child = try ChildProcess("""
            s = socket.socket(socket.AF_INET6)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::ffff:127.0.0.1", \(port)))
            s.listen()
            say("ready")
            wait()
            """)
            #expect(child.line() == "ready")
            #expect(waitShown(d, port, "tcp", ["family=\"ipv6\"", "address=\"::ffff:127.0.0.1\"", "port=\"\(port)\"", "comm=\"\(child.comm)\""]) != nil,
                    "\(d.metrics())")
            child.send("exit")
            #expect(waitGone(d, port, "tcp"))
        }

        @Test func listenWithoutBindReportsTheRealPort() throws {
            guard let d = try started() else { return }
            let child = try ChildProcess("""
            s = socket.socket()
            s.listen()
            say(s.getsockname()[1])
            wait()
            """)
            let port = try #require(UInt16(child.line() ?? ""))
            #expect(waitShown(d, port, "tcp", ["address=\"0.0.0.0\"", "state=\"listen\"", "pid=\"\(child.pid)\""]) != nil, "\(d.metrics())")
        }

        /// A socket that listens without binding gets its port from the kernel after its LISTEN
        /// state change: portwatch finds it by its inode and seeds the map of bound sockets, so
        /// that its end is reported like any other's (by the event path: no resync correction),
        /// for IPv4 and IPv6, closed or shut down.
        @Test(arguments: [("AF_INET", "close"), ("AF_INET6", "close"), ("AF_INET", "shutdown")])
        func listenWithoutBindIsFollowedToItsEnd(family: String, end: String) throws {
            guard let d = try started() else { return }
            // The start-up resync may have found other tests' sockets: only what comes after counts.
            func corrections() -> [Double] { ["insert", "delete"].map { d.sample("portwatch_resync_corrections_total{action=\"\($0)\"}") ?? 0 } }
            let before = corrections()
            let child = try ChildProcess("""
            s = socket.socket(socket.\(family))
            s.listen()
            say(s.getsockname()[1])
            wait()
            if "\(end)" == "shutdown":
                s.shutdown(socket.SHUT_RDWR)
            else:
                s.close()
            say("done")
            wait()
            """)
            let port = try #require(UInt16(child.line() ?? ""))
            let address = family == "AF_INET" ? "0.0.0.0" : "::"
            #expect(waitShown(d, port, "tcp", ["address=\"\(address)\"", "state=\"listen\"", "pid=\"\(child.pid)\""]) != nil, "\(d.metrics())")
            child.send("end")
            #expect(child.line() == "done")
            #expect(waitGone(d, port, "tcp"), "its end is seen")
            #expect(corrections() == before, "found, and its end seen, by the event path: no resync corrected them")
        }

        /// A socket that listens without binding and is closed at once is gone before its port
        /// can be found: it is counted, not guessed at.
        @Test func anUnboundListenerClosedAtOnceIsCounted() throws {
            guard let d = try started() else { return }
            let child = try ChildProcess("""
            for _ in range(20):
                s = socket.socket()
                s.listen()
                s.close()
            say("done")
            wait()
            """)
            #expect(child.line() == "done")
            #expect(TestHTTP.waitUntil(10) { (d.sample("portwatch_unresolved_listens_total") ?? 0) >= 1 }, "\(d.metrics())")
        }

        @Test func boundThenListening() throws {
            guard let d = try started() else { return }
            let child = try ChildProcess(ChildProcess.bindsThenListensWhenTold)
            let port = try #require(UInt16(child.line() ?? ""))
            #expect(waitShown(d, port, "tcp", ["state=\"bound\""]) != nil, "\(d.metrics())")
            child.send("listen")
            #expect(child.line() == "listening")
            #expect(waitShown(d, port, "tcp", ["state=\"listen\""]) != nil)
        }

        /// The kernel keeps a bound socket's entry and changes it in place on listen(): the
        /// owner must still be read again, since servers bind, then drop privileges or hand
        /// the socket to a worker that listens.
        @Test(arguments: [true, false])
        func whoeverListensIsTheOwner(handedOver: Bool) throws {
            guard let d = try started() else { return }
            let child = try ChildProcess("""
            s = tcp(listen=False)
            say(s.getsockname()[1])
            wait()
            if \(handedOver ? "True" : "False"):
                pid = os.fork()
                if pid == 0:
                    import time
                    os.setgid(65534); os.setuid(65534)
                    s.listen()
                    os.close(0); os.close(1)
                    time.sleep(600)
                    os._exit(0)
                say(pid)
            else:
                os.setgid(65534); os.setuid(65534)
                s.listen()
                say(os.getpid())
            wait()
            """)
            let port = try #require(UInt16(child.line() ?? ""))
            #expect(waitShown(d, port, "tcp", ["state=\"bound\"", "pid=\"\(child.pid)\""]) != nil, "\(d.metrics())")
            child.send("listen")
            let listener = try #require(Int32(child.line() ?? ""))
            defer {
                if handedOver { kill(listener, SIGKILL) }
                child.kill()
                // The worker gone before the next test starts a daemon that would see its socket.
                if handedOver { _ = TestHTTP.waitUntil(DaemonHarness.deadline) { ChildProcess.hasExited(listener) } }
            }
            #expect(handedOver == (listener != child.pid))
            #expect(waitShown(d, port, "tcp", ["state=\"listen\"", "pid=\"\(listener)\""]) != nil, "\(d.metrics())")
            var uid: String?
            _ = TestHTTP.waitUntil(5) {
                uid = Sqlite.query(d.dbPath, "SELECT uid FROM bindings WHERE port = \(port)")
                return uid == "65534"
            }
            #expect(uid == "65534")
        }

        @Test func exitWithoutCloseReleases() throws {
            guard let d = try started() else { return }
            let child = try ChildProcess("""
            s = tcp()
            u = udp()
            say(s.getsockname()[1], u.getsockname()[1])
            wait()
            """)
            let ports = (child.line() ?? "").split(separator: " ").compactMap { UInt16($0) }
            try #require(ports.count == 2)
            #expect(waitShown(d, ports[0], "tcp") != nil)
            #expect(waitShown(d, ports[1], "udp") != nil)
            child.kill(SIGKILL)
            #expect(waitGone(d, ports[0], "tcp"), "SIGKILLed process's TCP port still listed")
            #expect(waitGone(d, ports[1], "udp"), "SIGKILLed process's UDP port still listed")
        }

        @Test func sharedAfterForkHeldUntilTheLastProcessEnds() throws {
            guard let d = try started() else { return }
            let child = try ChildProcess("""
            s = tcp()
            say(s.getsockname()[1])
            pid = os.fork()
            if pid == 0:
                import time
                os.close(0); os.close(1)  # leave the test's pipes to the parent
                time.sleep(600)  # the grandchild holds the socket until it is killed
                os._exit(0)
            say(pid)
            wait()              # parent exits on command; the grandchild keeps the socket
            os._exit(0)
            """)
            let port = try #require(UInt16(child.line() ?? ""))
            let grandchild = try #require(Int32(child.line() ?? ""))
            #expect(waitShown(d, port, "tcp") != nil)
            child.send("exit")
            // Foundation's waitUntilExit also waits for the grandchild here: watch /proc instead.
            #expect(TestHTTP.waitUntil(DaemonHarness.deadline) { ChildProcess.hasExited(child.pid) })
            // The parent is gone, the socket is not: the port must stay.
            #expect(d.barrier())
            #expect(d.portInfo(port: port, transport: "tcp") != nil, "port dropped while a forked process still holds it")
            kill(grandchild, SIGKILL)
            #expect(waitGone(d, port, "tcp"))
        }

        @Test func reusePortGroupMemberLeavingKeepsThePort() throws {
            guard let d = try started() else { return }
            let port = TestHTTP.freePort()
            let first = try ChildProcess("s = tcp(port=\(port), reuse=True)\nsay('ok')\nwait()")
            #expect(first.line() == "ok")
            let second = try ChildProcess("s = tcp(port=\(port), reuse=True)\nsay('ok')\nwait()")
            #expect(second.line() == "ok")
            #expect(waitShown(d, port, "tcp", ["pid=\"\(second.pid)\""]) != nil, "\(d.metrics())")
            first.kill()
            #expect(d.barrier())
            #expect(d.portInfo(port: port, transport: "tcp") != nil, "port dropped while a SO_REUSEPORT member still holds it")
            second.kill()
            #expect(waitGone(d, port, "tcp"))
        }

        @Test func otherNetworkNamespaceIsLabelled() throws {
            guard let d = try started() else { return }
            let (child, port, netns) = try ChildProcess.listenerInNewNetworkNamespace()
            let host = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")
            #expect(!host.contains(netns))
            #expect(waitShown(d, port, "tcp", ["netns=\"\(netns)\""]) != nil, "\(d.metrics())")
            child.kill()
            #expect(waitGone(d, port, "tcp"))
        }

        @Test func socketsOlderThanTheDaemonAreFoundAndTheirCloseSeen() throws {
            let child = try ChildProcess("""
            s = tcp()
            u = udp("::1")
            say(s.getsockname()[1], u.getsockname()[1])
            wait()
            """)
            let ports = (child.line() ?? "").split(separator: " ").compactMap { UInt16($0) }
            try #require(ports.count == 2)
            guard let d = try started() else { return }
            #expect(d.portInfo(port: ports[0], transport: "tcp")?.contains("comm=\"\(child.comm)\"") == true, "ready means the snapshot is applied")
            #expect(d.portInfo(port: ports[1], transport: "udp")?.contains("pid=\"\(child.pid)\"") == true)
            #expect((d.sample("portwatch_resync_corrections_total{action=\"insert\"}") ?? 0) >= 2, "both were found by the start-up resync")
            child.kill()
            #expect(waitGone(d, ports[0], "tcp"), "close of a socket older than the daemon was not seen")
            #expect(waitGone(d, ports[1], "udp"))
        }

        /// A port seen by its events and still held when the daemon restarts keeps its row and
        /// its history: the start-up resync neither closes it nor finds it again, and its close
        /// after the restart is the one close of its history.
        @Test func aPortHeldAcrossARestartKeepsItsHistory() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-restart-\(UUID().uuidString)").path
            let db = dir + "/pw.db"
            var held: (fd: Int32, port: UInt16) = (-1, 0)
            do {
                let d = try DaemonHarness(dbPath: db)
                guard d.waitReady() else { return }
                held = TestSockets.bound("127.0.0.1")
                #expect(waitShown(d, held.port, "tcp") != nil)
                #expect(d.stop() == 0)
            }
            defer { if held.fd >= 0 { close(held.fd) } }
            let d = try DaemonHarness(dbPath: db)
            guard d.waitReady() else { return }
            #expect(d.portInfo(port: held.port, transport: "tcp") != nil)
            #expect(d.history(port: held.port, transport: "tcp") == ["insert:"], "the start-up resync changed nothing")
            close(held.fd)
            held.fd = -1
            #expect(waitGone(d, held.port, "tcp"))
            #expect(d.history(port: held.port, transport: "tcp") == ["insert:", "delete:released"])
        }

        @Test func restartRepairsWhatChangedWhileDown() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-restart-\(UUID().uuidString)").path
            let db = dir + "/pw.db"
            var port: UInt16 = 0
            do {
                guard let d = try DaemonHarness(dbPath: db) as DaemonHarness?, d.waitReady() else { return }
                let (fd, p) = TestSockets.bound("127.0.0.1")
                port = p
                #expect(waitShown(d, port, "tcp") != nil)
                #expect(d.stop() == 0)
                close(fd) // released while portwatch is down
            }
            let d = try DaemonHarness(dbPath: db)
            guard d.waitReady() else { return }
            #expect(d.portInfo(port: port, transport: "tcp") == nil, "a port released while down is gone after restart")
            // The start-up resync deleted it, as a correction (any other socket that went while
            // the daemon was down, such as a previous test's, counts as one too).
            #expect((d.sample("portwatch_resync_corrections_total{action=\"delete\"}") ?? 0) >= 1)
            let deletions = Sqlite.query(db, "SELECT count(*) FROM history WHERE port = \(port) AND protocol = 'tcp' AND action = 'delete' AND reason = 'resync'")
            #expect(deletions == "1", "history of port \(port): \(deletions ?? "unreadable")")
        }

        /// A map of the daemon's bound sockets (`bindings`, the small one, or `bindings_spill`),
        /// found through its descriptors (the map IDs in their fdinfo): a descriptor of this
        /// process's own, or nil.
        static func bindingsMap(of pid: Int32, _ wanted: String = "bindings") -> Int32? {
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fdinfo")) ?? []
            for fd in fds {
                guard let info = try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8),
                      let line = info.split(separator: "\n").first(where: { $0.hasPrefix("map_id:") }),
                      let id = UInt32(line.dropFirst("map_id:".count).trimmingCharacters(in: .whitespaces)) else { continue }
                let mapFD = bpf_map_get_fd_by_id(id)
                guard mapFD >= 0 else { continue }
                var mapInfo = bpf_map_info()
                var length = UInt32(MemoryLayout<bpf_map_info>.size)
                let name = bpf_obj_get_info_by_fd(mapFD, &mapInfo, &length) == 0
                    ? withUnsafeBytes(of: &mapInfo.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } : ""
                if name == wanted { return mapFD }
                close(mapFD)
            }
            return nil
        }

        /// The daemon's two maps of bound sockets, open while the object lives.
        final class BindingMaps {
            let near: Int32, spill: Int32
            init(of pid: Int32) throws {
                near = try #require(KernelCaptureTests.bindingsMap(of: pid), "the small map")
                spill = try #require(KernelCaptureTests.bindingsMap(of: pid, "bindings_spill"), "the spill map")
            }
            deinit {
                close(near)
                close(spill)
            }
        }

        /// The cookies a map holds.
        static func keys(_ map: Int32) -> Set<UInt64> {
            var out: Set<UInt64> = []
            var key: UInt64 = 0, next: UInt64 = 0
            var first = true
            while (first ? bpf_map_get_next_key(map, nil, &next) : bpf_map_get_next_key(map, &key, &next)) == 0 {
                out.insert(next)
                key = next
                first = false
            }
            return out
        }

        /// More bound sockets than the small map holds: the rest go to the spill map, and every
        /// one is shown and its end reported, with nothing refused, nothing left in either map
        /// and nothing for a resync to correct.
        @Test func socketsBeyondTheSmallMapSpillOverAndAllAreReported() throws {
            let d = try DaemonHarness(arguments: ["--resync.interval", "1s"], environment: ["PORTWATCH_BPF_BINDINGS_ENTRIES": "4"])
            guard d.waitReady() else { return }
            let maps = try BindingMaps(of: d.process.processIdentifier)
            let near = maps.near, spill = maps.spill
            // The first resync's rows (the host's listeners, in a new ledger) count as corrections.
            func corrections() -> Double {
                ["delete", "insert"].reduce(0) { $0 + (d.sample("portwatch_resync_corrections_total{action=\"\($1)\"}") ?? 0) }
            }
            let before = corrections()
            let child = try ChildProcess("""
            socks = [udp() for _ in range(10)] + [tcp() for _ in range(10)]
            say(" ".join(str(s.getsockname()[1]) for s in socks))
            say(" ".join(str(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 57, 8), "little")) for s in socks))
            wait()
            """)
            let ports = try #require(child.line()).split(separator: " ").compactMap { UInt16($0) }
            let cookies = Set(try #require(child.line()).split(separator: " ").compactMap { UInt64($0) })
            #expect(ports.count == 20 && cookies.count == 20)
            for (i, port) in ports.enumerated() {
                #expect(d.waitShown(port, i < 10 ? "udp" : "tcp") != nil, "port \(port)")
            }
            let inNear = Self.keys(near).intersection(cookies), inSpill = Self.keys(spill).intersection(cookies)
            #expect(Self.keys(near).count == 4, "the small map is full")
            #expect(inNear.count + inSpill.count == 20 && inNear.isDisjoint(with: inSpill), "each socket in one map: \(inNear.count) + \(inSpill.count)")
            #expect(inSpill.count >= 16)
            child.kill()
            for (i, port) in ports.enumerated() {
                #expect(d.waitGone(port, i < 10 ? "udp" : "tcp"), "port \(port)")
            }
            #expect(Self.keys(near).union(Self.keys(spill)).isDisjoint(with: cookies), "no entry left")
            #expect(d.waitResyncs(2))
            #expect(d.sample("portwatch_bindings_map_full_total") == 0)
            #expect(corrections() == before, "a resync had to correct the table")
        }

        /// A UDP socket whose entry is in the spill map connects, disconnects (its automatic
        /// port goes back) and binds again while the small map has room: its entry stays the
        /// one in the spill map, so that its release removes it and nothing is left behind.
        @Test func aSpilledSocketThatBindsAgainKeepsOneEntry() throws {
            let d = try DaemonHarness(environment: ["PORTWATCH_BPF_BINDINGS_ENTRIES": "4"])
            guard d.waitReady() else { return }
            let maps = try BindingMaps(of: d.process.processIdentifier)
            let near = maps.near, spill = maps.spill
            // The daemon's own listener took a place in the small map: the fillers take the rest.
            let free = 4 - Self.keys(near).count
            #expect(free > 0)
            let child = try ChildProcess("""
            import ctypes
            fillers = [udp() for _ in range(\(free))]
            say(" ".join(str(f.getsockname()[1]) for f in fillers))
            wait()
            b = udp()
            say(b.getsockname()[1], int.from_bytes(b.getsockopt(socket.SOL_SOCKET, 57, 8), "little"))
            wait()
            for f in fillers: f.close()
            b.connect(("127.0.0.1", 9))
            # connect(AF_UNSPEC): disconnected, the automatic port is given back.
            ctypes.CDLL(None, use_errno=True).connect(b.fileno(), ctypes.create_string_buffer(16), 16)
            b.bind(("127.0.0.1", 0))
            say(b.getsockname()[1])
            wait()
            b.close()
            say("closed")
            wait()
            """)
            defer { child.kill() }
            let fillers = try #require(child.line()).split(separator: " ").compactMap { UInt16($0) }
            #expect(fillers.count == free)
            for filler in fillers { #expect(d.waitShown(filler, "udp") != nil) }
            child.send("next")
            let first = try #require(child.line()).split(separator: " ")
            let port = try #require(UInt16(first[0])), cookie = try #require(UInt64(first[1]))
            #expect(d.waitShown(port, "udp") != nil)
            #expect(Self.keys(spill).contains(cookie) && !Self.keys(near).contains(cookie), "the small map was full: spilled")
            #expect(Self.keys(near).count == 4)
            child.send("next")
            let again = try #require(child.line().flatMap { UInt16($0) })
            #expect(d.waitShown(again, "udp") != nil)
            if again != port { #expect(d.waitGone(port, "udp")) }
            for filler in fillers { #expect(d.waitGone(filler, "udp")) }
            #expect(Self.keys(spill).contains(cookie) != Self.keys(near).contains(cookie), "in one map, not both")
            child.send("next")
            #expect(child.line() == "closed")
            #expect(d.waitGone(again, "udp"))
            #expect(TestHTTP.waitUntil(5) { !Self.keys(spill).contains(cookie) && !Self.keys(near).contains(cookie) }, "no entry left")
        }

        /// The kernel sometimes does not run the release program (about one socket in ten
        /// million in a flood), and the socket's entry would stay in the map for good: a resync
        /// removes the entry of a socket that is gone, and leaves those of live ones, clients too.
        @Test func anEntryOfASocketGoneUnreportedIsRemovedByAResync() throws {
            let d = try DaemonHarness(arguments: ["--resync.interval", "1s"])
            guard d.waitReady() else { return }
            let map = try #require(Self.bindingsMap(of: d.process.processIdentifier), "the daemon's bindings map")
            defer { close(map) }
            func has(_ cookie: UInt64) -> Bool {
                var key = cookie
                var value = pw_binding()
                return bpf_map_lookup_elem(map, &key, &value) == 0
            }
            func cookie(_ fd: Int32) -> UInt64 {
                var value: UInt64 = 0
                var length = socklen_t(MemoryLayout<UInt64>.size)
                getsockopt(fd, SOL_SOCKET, SO_COOKIE, &value, &length)
                return value
            }
            let (server, serverPort) = TestSockets.bound("127.0.0.1", udp: true)
            defer { close(server) }
            // A UDP client: bound, then connected (a client now; no snapshot lists it).
            let (client, _) = TestSockets.bound("127.0.0.1", udp: true)
            defer { close(client) }
            var peer = sockaddr_in()
            peer.sin_family = sa_family_t(AF_INET)
            peer.sin_port = serverPort.bigEndian
            peer.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            let connected = withUnsafePointer(to: &peer) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            #expect(connected == 0)
            #expect(d.waitShown(serverPort, "udp") != nil)
            // An entry for a socket that does not exist, as one whose release went unreported leaves.
            var gone: UInt64 = 1 << 62
            var entry = pw_binding()
            entry.protocol = UInt8(IPPROTO_UDP)
            entry.family = UInt8(AF_INET)
            entry.port = 9
            entry.state = UInt8(PW_STATE_BOUND.rawValue)
            // In this namespace (a resync lists it); one it cannot list is left alone.
            entry.netns = UInt32(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net").dropFirst(5).dropLast()) ?? 0
            #expect(bpf_map_update_elem(map, &gone, &entry, UInt64(BPF_NOEXIST)) == 0)
            #expect(d.waitResyncs(2), "resyncs every second")
            #expect(TestHTTP.waitUntil(5) { !has(gone) }, "the entry of the socket that is gone was removed")
            #expect(d.sample("portwatch_bindings_map_stale_total") == 1)
            #expect(has(cookie(server)), "a live listener's entry stays")
            #expect(has(cookie(client)), "a client's entry stays until its release")
            #expect(d.waitShown(serverPort, "udp") != nil)
            #expect(d.sample("portwatch_resync_corrections_total{action=\"delete\"}") ?? 0 == 0, "no row was taken for the planted entry")
        }
    }
}

/// Attribution and the errors a user meets first.
extension KernelSuite {
    @Suite struct AttributionAndErrorTests {
        /// A TCP listener (named again at listen) and a bound UDP socket (named at bind only).
        @Test(arguments: ["tcp", "udp"])
        func uidOfTheBindingTaskIsRecorded(transport: String) throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let child = try ChildProcess("s = \(transport)()\nsay(s.getsockname()[1])\nwait()", wrapper: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
            let port = try #require(UInt16(child.line() ?? ""))
            var uid: String?
            _ = TestHTTP.waitUntil(5) {
                uid = Sqlite.query(d.dbPath, "SELECT uid FROM bindings WHERE port = \(port) AND protocol = '\(transport)'")
                return uid != nil && !uid!.isEmpty
            }
            #expect(uid == "65534")
            #expect(d.portInfo(port: port, transport: transport)?.contains("pid=\"\(child.pid)\"") == true)
        }

        @Test func runningDaemonKeepsOnlyTheCapabilitiesItNeeds() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let status = try String(contentsOfFile: "/proc/\(d.process.processIdentifier)/status", encoding: .utf8)
            func mask(_ field: String) -> UInt64? {
                status.split(separator: "\n").first { $0.hasPrefix(field + ":") }
                    .flatMap { UInt64($0.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces), radix: 16) }
            }
            // CAP_SYS_ADMIN (21), CAP_SYS_PTRACE (19), CAP_DAC_READ_SEARCH (2).
            let kept: UInt64 = 1 << 21 | 1 << 19 | 1 << 2
            #expect(mask("CapEff") == kept)
            #expect(mask("CapPrm") == kept)
            #expect(mask("CapBnd") == kept)
            // And it still does its job: a new listener, and a resync that enters namespaces.
            let (fd, port) = TestSockets.bound("127.0.0.1")
            defer { close(fd) }
            #expect(TestHTTP.waitUntil(5) { d.portInfo(port: port, transport: "tcp") != nil })
        }

        /// The kernel memory of the maps: the ring buffer as sized, and (Linux 6.4+, which counts
        /// the entries in use) the map of bound sockets growing with them and shrinking after.
        @Test func mapMemoryFollowsTheBoundSockets() throws {
            let d = try DaemonHarness(arguments: ["--bpf.ring-buffer-size", "2097152"])
            guard d.waitReady() else { return }
            func bytes(_ map: String) -> Double { d.sample("portwatch_bpf_map_memory_bytes{map=\"\(map)\"}") ?? -1 }
            #expect(bytes("events") >= 2 * 1024 * 1024, "the ring buffer's pages; metrics:\n\(d.metrics())")
            let idle = bytes("bindings")
            #expect(idle > 0)
            // Within the default limit of 1,024 descriptors.
            let child = try ChildProcess("s = [udp() for _ in range(800)]\nsay(len(s))\nwait()")
            #expect(child.line() == "800")
            // Each entry is more than its 8-byte key and 56-byte value.
            let grown = idle + 800 * 64
            if KernelRelease.isBefore(6, 4) {
                #expect(TestHTTP.waitUntil(10) { (d.sample("portwatch_ports_held{protocol=\"udp\",family=\"ipv4\"}") ?? 0) >= 800 })
                #expect(bytes("bindings") == idle, "kernel \(KernelRelease.text): an estimate from the map's size")
            } else {
                #expect(TestHTTP.waitUntil(10) { bytes("bindings") >= grown }, "\(idle) -> \(bytes("bindings"))")
                child.kill()
                #expect(TestHTTP.waitUntil(10) { bytes("bindings") < grown }, "\(idle) -> \(bytes("bindings")) after the sockets closed")
            }
        }

        @Test func runAsSwitchesUserAndKeepsWorking() throws {
            let d = try DaemonHarness(arguments: ["--run-as", "nobody"])
            guard d.waitReady() else { return }
            let status = try String(contentsOfFile: "/proc/\(d.process.processIdentifier)/status", encoding: .utf8)
            let uid = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }?.split(separator: "\t").dropFirst().map(String.init)
            #expect(uid == ["65534", "65534", "65534", "65534"], "\(uid ?? [])")
            let effective = status.split(separator: "\n").first { $0.hasPrefix("CapEff:") }
                .flatMap { UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) }
            #expect(effective == 1 << 21 | 1 << 19 | 1 << 2)
            for field in ["CapPrm:", "CapBnd:"] {
                let mask = status.split(separator: "\n").first { $0.hasPrefix(field) }
                    .flatMap { UInt64($0.dropFirst(field.count).trimmingCharacters(in: .whitespaces), radix: 16) }
                #expect(mask == 1 << 21 | 1 << 19 | 1 << 2, "\(field)")
            }
            var info = stat()
            #expect(stat(d.dbPath, &info) == 0 && info.st_uid == 65534, "the ledger is handed to the user")
            // Still sees new listeners, names their owners, and writes its ledger.
            let child = try ChildProcess("s = tcp()\nsay(s.getsockname()[1])\nwait()")
            let port = try #require(UInt16(child.line() ?? ""))
            #expect(TestHTTP.waitUntil(5) { d.portInfo(port: port, transport: "tcp")?.contains("pid=\"\(child.pid)\"") == true },
                    "\(d.log)")
            #expect((d.sample("portwatch_bpf_map_memory_bytes{map=\"events\"}") ?? 0) > 0, "its own maps are still readable")
            #expect(d.stop() == 0)
        }

        /// Container engines that predate Linux 5.8's capabilities (Docker 20.10) cannot grant
        /// CAP_BPF or CAP_PERFMON; the kernel takes CAP_SYS_ADMIN in their place, and so must the
        /// daemon's own check.
        /// (Before Linux 5.11 maps are charged to RLIMIT_MEMLOCK, which the daemon cannot raise
        /// without CAP_SYS_RESOURCE: the limit is raised for it, as the deployments do.)
        @Test func sysAdminStandsInForBPFAndPerfmon() throws {
            let memlock = KernelRelease.isBefore(5, 11) ? ["/usr/bin/prlimit", "--memlock=unlimited:unlimited"] : []
            let d = try DaemonHarness(launcher: memlock + ["/usr/bin/setpriv", "--inh-caps=-all",
                                                           "--bounding-set=-all,+net_admin,+sys_admin,+sys_ptrace,+dac_read_search"])
            guard d.waitReady() else { return }
            let status = try String(contentsOfFile: "/proc/\(d.process.processIdentifier)/status", encoding: .utf8)
            let bounding = status.split(separator: "\n").first { $0.hasPrefix("CapBnd:") }
                .flatMap { UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) } ?? 0
            #expect(bounding & (1 << 39 | 1 << 38) == 0, "no CAP_BPF, no CAP_PERFMON: \(String(bounding, radix: 16))")
            let child = try ChildProcess("s = tcp()\nsay(s.getsockname()[1])\nwait()")
            let port = try #require(UInt16(child.line() ?? ""))
            #expect(TestHTTP.waitUntil(5) { d.portInfo(port: port, transport: "tcp")?.contains("pid=\"\(child.pid)\"") == true },
                    "\(d.log)")
            #expect(d.stop() == 0)
        }

        /// With the four capabilities and a small RLIMIT_MEMLOCK (a container runtime's default):
        /// Linux 5.11 and later charge maps to the memory cgroup and start; older kernels charge
        /// the limit, and the daemon says in one line what to raise.
        @Test func aSmallMemlockLimitStartsOnNewKernelsAndIsExplainedOnOld() throws {
            let launcher = ["/usr/bin/prlimit", "--memlock=65536:65536", "/usr/bin/setpriv", "--inh-caps=-all",
                            "--bounding-set=-all,+net_admin,+sys_admin,+sys_ptrace,+dac_read_search"]
            if KernelRelease.isBefore(5, 11) {
                let run = TestProcess.run(launcher + [DaemonHarness.binary, "--db.path", "/tmp/pw-memlock-\(getpid()).db",
                                                      "--web.listen-address", "127.0.0.1:0"])
                #expect(run.status == 1)
                #expect(run.output.split(separator: "\n").count == 1 && run.output.contains("RLIMIT_MEMLOCK is 64 KiB")
                        && run.output.contains("LimitMEMLOCK=infinity"), "\(run.output)")
            } else {
                let d = try DaemonHarness(launcher: launcher)
                #expect(d.waitReady())
                #expect(d.stop() == 0)
            }
        }

        @Test func withoutPrivilegesItSaysWhatToDo() throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", DaemonHarness.binary,
                                 "--db.path", "/tmp/pw-nopriv-\(getpid()).db", "--web.listen-address", "127.0.0.1:0"]
            let err = Pipe()
            process.standardError = err
            try process.run()
            process.waitUntilExit()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationStatus == 1)
            #expect(text.split(separator: "\n").count == 1, "one line: \(text)")
            #expect(text.contains("root") && text.contains("CAP_BPF"), "\(text)")
        }

        @Test func badFlagsExitWith64() throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: DaemonHarness.binary)
            process.arguments = ["--reconcile.window", "fast"]
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            #expect(process.terminationStatus == 64)
        }
    }
}

/// Reads one value with the sqlite3 library through a tiny SQL runner (the CLI may be absent).
enum Sqlite {
    static func query(_ path: String, _ sql: String) -> String? {
        let result = TestProcess.run(["python3", "-c", "import sqlite3,sys; r=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro', uri=True).execute(sys.argv[2]).fetchone(); print('' if r is None else r[0])", path, sql])
        return result.status == 0 ? result.output.trimmingCharacters(in: .whitespacesAndNewlines) : nil
    }
}

/// A kernel that lacks what portwatch needs: one line saying what is missing, exit 1.
/// Provoked in a private mount namespace, so the host is untouched.
extension KernelSuite {
    @Suite struct MissingKernelFeatureTests {
        func start(hiding setup: String) -> (status: Int32, output: String) {
            let db = "/tmp/pw-missing-\(getpid())-\(UUID().uuidString).db"
            return TestProcess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                    "\(setup) && exec \"$0\" --db.path \(db) --web.listen-address 127.0.0.1:0 2>&1", DaemonHarness.binary])
        }

        @Test func withoutBTF() {
            let (status, output) = start(hiding: "mount -t tmpfs none /sys/kernel/btf")
            #expect(status == 1)
            #expect(output.split(separator: "\n").count == 1 && output.contains("CONFIG_DEBUG_INFO_BTF"), "\(output)")
        }

        @Test func withoutCgroupV2() {
            // Every cgroup2 mount goes from this namespace's /proc/mounts.
            let (status, output) = start(hiding: "for m in $(awk '$3 == \"cgroup2\" {print $2}' /proc/mounts); do umount -l \"$m\"; done; ! grep -q ' cgroup2 ' /proc/mounts")
            #expect(status == 1)
            #expect(output.split(separator: "\n").count == 1 && output.contains("no cgroup v2 hierarchy is mounted"), "\(output)")
        }
    }
}
