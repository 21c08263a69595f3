import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// Which listener is refusing connections, against the kernel: a TCP listener's accept queue,
/// its limit and its drops, and a UDP socket's drops, per held port, through a daemon restart
/// and a restart of the holder on the same port.
extension KernelSuite {
    @Suite struct ListenerHealthTests {
        static let arguments = ["--listen-stats.interval", "1s"]

        /// The sample of `name` for one port (nil until it shows).
        static func sample(_ d: DaemonHarness, _ name: String, port: UInt16, transport: String = "tcp") -> Scrape.Sample? {
            d.scrape().samples(name).first { $0.label("port") == "\(port)" && $0.label("protocol") == transport }
        }

        /// A listener with a backlog of 1 and 8 clients it never accepts: the kernel queues
        /// limit + 1 of them and drops the SYNs of the others, again and again as they retry.
        static let fullListener = """
        import time
        s = tcp("127.0.0.1", 0, listen=False)
        s.listen(1)
        port = s.getsockname()[1]
        clients = []
        for i in range(8):
            c = socket.socket()
            c.setblocking(False)
            try: c.connect(("127.0.0.1", port))
            except BlockingIOError: pass
            clients.append(c)
        say(port)
        wait()
        """

        @Test func aListenerWhoseAcceptQueueIsFullShowsItsQueueLimitAndDrops() throws {
            let d = try DaemonHarness(arguments: Self.arguments)
            guard d.waitReady() else { return }
            let child = try ChildProcess(Self.fullListener)
            defer { child.send("") }
            let port = try #require(child.line().flatMap(UInt16.init))
            var queue: Scrape.Sample?, limit: Scrape.Sample?, drops: Scrape.Sample?
            #expect(TestHTTP.waitUntil(10) {
                queue = Self.sample(d, "portwatch_listen_queue_length", port: port)
                limit = Self.sample(d, "portwatch_listen_queue_limit", port: port)
                drops = Self.sample(d, "portwatch_socket_drops_total", port: port)
                return (queue?.value ?? 0) >= 2 && (drops?.value ?? 0) > 0
            }, "queue \(String(describing: queue?.line)), drops \(String(describing: drops?.line))")
            #expect(limit?.value == 1, "listen(1)'s backlog")
            #expect(queue?.value == 2, "the kernel queues limit + 1 connections")
            #expect(queue?.label("comm") == "python3" && queue?.label("pid") == nil, "the holder's labels, without the pid")
            // ss sees the same socket the same way.
            let ss = TestProcess.sh("ss -Htlnm 'sport = :\(port)'").output
            #expect(ss.contains("LISTEN 2      1") || ss.split(separator: " ").filter { !$0.isEmpty }.prefix(3) == ["LISTEN", "2", "1"], "\(ss)")
        }

        @Test func aUDPSocketWhoseBufferIsFullCountsItsDrops() throws {
            let d = try DaemonHarness(arguments: Self.arguments)
            guard d.waitReady() else { return }
            let child = try ChildProcess("""
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            u.bind(("127.0.0.1", 0))
            say(u.getsockname()[1])
            wait()
            t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(200): t.sendto(b"x" * 200, ("127.0.0.1", u.getsockname()[1]))
            say("sent")
            wait()
            """)
            defer { child.send("") }
            let port = try #require(child.line().flatMap(UInt16.init))
            #expect(TestHTTP.waitUntil(10) { Self.sample(d, "portwatch_socket_drops_total", port: port, transport: "udp")?.value == 0 },
                    "a quiet socket has dropped nothing")
            child.send("")
            #expect(child.line() == "sent")
            var drops = 0.0
            #expect(TestHTTP.waitUntil(10) {
                drops = Self.sample(d, "portwatch_socket_drops_total", port: port, transport: "udp")?.value ?? 0
                return drops >= 150
            }, "200 datagrams into a 2 KiB buffer: \(drops) dropped")
            #expect(Self.sample(d, "portwatch_listen_queue_length", port: port, transport: "udp") == nil, "no accept queue for UDP")
        }

        /// The kernel counts per socket: a restart of the daemon keeps the count; a new socket
        /// of a restarted holder starts again from 0, which Prometheus reads as a counter reset
        /// (never a negative rate), on the same series (no pid label).
        @Test func dropsSurviveADaemonRestartAndResetWithANewSocket() throws {
            let child = try ChildProcess(Self.fullListener)
            let port = try #require(child.line().flatMap(UInt16.init))
            var before = 0.0
            var series = ""
            var dbPath = ""
            do {
                let d = try DaemonHarness(arguments: Self.arguments)
                guard d.waitReady() else { return }
                dbPath = d.dbPath
                #expect(TestHTTP.waitUntil(10) {
                    before = Self.sample(d, "portwatch_socket_drops_total", port: port)?.value ?? 0
                    return before > 0
                })
                series = Self.sample(d, "portwatch_socket_drops_total", port: port)?.series ?? ""
                #expect(d.stop() == 0)
            }
            do {
                let d = try DaemonHarness(arguments: Self.arguments, dbPath: dbPath)
                guard d.waitReady() else { return }
                var after = 0.0
                #expect(TestHTTP.waitUntil(10) {
                    after = Self.sample(d, "portwatch_socket_drops_total", port: port)?.value ?? 0
                    return after >= before
                }, "after the daemon's restart: \(after), before: \(before)")
                // The holder restarts on the same port: a new socket, its count from 0.
                child.send("")
                child.process.waitUntilExit()
                let again = try ChildProcess("""
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", \(port)))
                s.listen()
                say("listening")
                wait()
                """)
                defer { again.send("") }
                #expect(again.line() == "listening")
                var reset: Scrape.Sample?
                #expect(TestHTTP.waitUntil(10) {
                    reset = Self.sample(d, "portwatch_socket_drops_total", port: port)
                    return reset?.value == 0 && reset?.label("comm") == "python3"
                }, "\(String(describing: reset?.line))")
                #expect(reset?.series == series, "the same series: no pid among its labels")
            }
        }
    }
}
