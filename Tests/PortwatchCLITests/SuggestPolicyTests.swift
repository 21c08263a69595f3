import Foundation
import Testing
import PortwatchCore
import PortwatchStore
import PortwatchTestSupport

/// `portwatch suggest-policy` on a prepared ledger: what was held steadily becomes rules,
/// grouped by owner and port range; what was short-lived or outside the period does not.
@Suite struct SuggestPolicyTests {
    static let t0 = CLITests.t0
    static let hour: UInt64 = 3_600_000_000_000
    static let minute: UInt64 = 60_000_000_000
    /// The time the ledger is read at: 10 h after t0.
    static var now: UInt64 { t0 + 10 * hour }

    static func key(_ port: UInt16, _ t: TransportProtocol = .tcp, _ address: String = "0.0.0.0", _ family: AddressFamily = .ipv4) -> BindingKey {
        BindingKey(netns: 4026531840, transport: t, family: family, address: address, port: port)
    }

    /// - sshd on 22, IPv4 and IPv6 wildcard, held since t0;
    /// - gunicorn (app.service) on 8000-8003, restarted at t0+5h with a new pid;
    /// - a Deployment's pod on 8080 (pod IP, private), held since t0+2h;
    /// - chronyd on UDP 323, loopback v4 and v6, held since t0;
    /// - a process named `my app: "v2"` on 9000, held for 3 h and closed at t0+8h;
    /// - nc on 4444 for one minute (t0+9h), a transient listener, and a redis on 6379 held
    ///   for 2 h but closed at t0+3h, before the period of 6 h (not suggested).
    static func preparedLedger() throws -> String {
        let path = try CLITests.newLedgerPath("pw-suggest")
        let store = try Store(path: path)
        var r = Reconciler(window: 0)
        var cookie: UInt64 = 0
        var events: [(UInt64, PortEvent.Kind, UInt64, BindingKey, Owner, SocketState)] = []
        func hold(_ key: BindingKey, _ owner: Owner, from: UInt64, until: UInt64?, state: SocketState = .listen) {
            cookie += 1
            events.append((from, .open, cookie, key, owner, state))
            if let until { events.append((until, .close, cookie, key, owner, state)) }
        }
        let sshd = Owner(pid: 612, comm: "sshd", uid: 0, attribution: Attribution(unit: "ssh.service"))
        hold(key(22), sshd, from: t0, until: nil)
        hold(key(22, .tcp, "::", .ipv6), sshd, from: t0, until: nil)
        for port in UInt16(8000)...8003 {
            hold(key(port, .tcp, "127.0.0.1"), Owner(pid: 2001, comm: "gunicorn", uid: 33, attribution: Attribution(unit: "app.service")),
                 from: t0 + hour, until: t0 + 5 * hour)
            hold(key(port, .tcp, "127.0.0.1"), Owner(pid: 2450, comm: "gunicorn", uid: 33, attribution: Attribution(unit: "app.service")),
                 from: t0 + 5 * hour + minute, until: nil)
        }
        let pod = Attribution(containerID: String(repeating: "cd", count: 32), pod: "web-7d9f8c6b5-x2kq7", namespace: "shop", container: "web")
        hold(key(8080, .tcp, "10.244.1.5"), Owner(pid: 3100, comm: "node", uid: 1000, attribution: pod), from: t0 + 2 * hour, until: nil)
        let chronyd = Owner(pid: 501, comm: "chronyd", uid: 0, attribution: Attribution(unit: "chrony.service"))
        hold(key(323, .udp, "127.0.0.1"), chronyd, from: t0, until: nil, state: .bound)
        hold(key(323, .udp, "::1", .ipv6), chronyd, from: t0, until: nil, state: .bound)
        hold(key(9000), Owner(pid: 4000, comm: "my app: \"v2\"", uid: 1000), from: t0 + 5 * hour, until: t0 + 8 * hour)
        hold(key(4444), Owner(pid: 7001, comm: "nc", uid: 1000), from: t0 + 9 * hour, until: t0 + 9 * hour + minute)
        hold(key(6379, .tcp, "127.0.0.1"), Owner(pid: 900, comm: "redis-server", uid: 100), from: t0 + hour, until: t0 + 3 * hour)
        // Attributed by cgroup, as in the daemon: an id per attribution.
        var cgroups = [Attribution()]
        func cgroup(_ a: Attribution) -> UInt64 {
            if let i = cgroups.firstIndex(of: a) { return UInt64(i) }
            cgroups.append(a)
            return UInt64(cgroups.count - 1)
        }
        for (time, kind, cookie, key, owner, state) in events.sorted(by: { ($0.0, $0.2) < ($1.0, $1.2) }) {
            r.ingest(PortEvent(kind: kind, cookie: cookie, time: time, key: key, process: owner.process, state: state,
                               cgroup: cgroup(owner.attribution)))
            if let batch = r.flush(now: time, attribute: { cgroups[Int($0)] }) { try store.apply(batch) }
        }
        var transients = Batch()
        transients.transients = [TransientBinding(key: key(31337), owner: Owner(pid: 9100, comm: "bash", uid: 1000), state: .listen,
                                                  opened: t0 + 9 * hour, lifetime: 5_000_000)]
        try store.apply(transients)
        return path
    }

    static func suggest(_ db: String, _ extra: [String] = []) throws -> (status: Int32, stdout: String, stderr: String) {
        try TestBinaries.run("portwatch", ["suggest-policy", "--db.path", db, "--since", "6h", "--now", "\(now / 1_000_000_000)"] + extra)
    }

    @Test func goldenPolicy() throws {
        let db = try Self.preparedLedger()
        let (status, out, err) = try Self.suggest(db)
        #expect(status == 0, "\(err)")
        #expect(out == """
        # Expected listeners, suggested by `portwatch suggest-policy --since 6h --min-lifetime 1h`
        # from \(db) at 2026-01-01T10:00:00Z: every listener held for at least 1h
        # in one stretch between 2026-01-01T04:00:00Z and then. Review before use: whatever ran
        # in that period, wanted or not, is allowed. Check it with `portwatch check-policy FILE`.
        expected:
          # chronyd, unit chrony.service: held 6h in one stretch at most, seen 2 times, pid 501, held now
          - { port: 323, protocol: udp, comm: chronyd, unit: chrony.service, exposure: [loopback] }
          # gunicorn, unit app.service: held 4h59m in one stretch at most, seen 8 times, pids 2001 2450, held now
          - { ports: 8000-8003, protocol: tcp, comm: gunicorn, unit: app.service, exposure: [loopback] }
          # my app: "v2": held 3h in one stretch at most, seen 1 time, pid 4000
          - { port: 9000, protocol: tcp, comm: "my app: \\"v2\\"", exposure: [wildcard] }
          # node, pod shop/web-*, container web: held 6h in one stretch at most, seen 1 time, pid 3100, held now
          - { port: 8080, protocol: tcp, comm: node, namespace: shop, pod: "web-*", container: web, exposure: [private] }
          # sshd, unit ssh.service: held 6h in one stretch at most, seen 2 times, pid 612, held now
          - { port: 22, protocol: tcp, comm: sshd, unit: ssh.service, exposure: [wildcard] }

        """)
        #expect(err.contains("5 rules from"), "\(err)")
    }

    /// The suggestion is a valid policy that flags no listener held now, and names none of the
    /// short-lived, old or transient ones. (PolicySuggestionTests apply it to closed listeners too.)
    @Test func suggestionPassesCheckPolicyAndFlagsOnlyTheShortLived() throws {
        let db = try Self.preparedLedger()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("suggested-\(UUID().uuidString).yaml").path
        try Self.suggest(db).stdout.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try TestBinaries.run("portwatch", ["check-policy", file, "--db.path", db])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("valid, 5 rules") && check.stdout.contains("0 of 9 current listeners would be unexpected"), "\(check.stdout)")
        let history = try TestBinaries.run("portwatch", ["history", "--db.path", db, "--since", "100000d", "--kind", "close", "--output", "json"])
        #expect(history.status == 0)
        let closed = Set(history.stdout.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["port"] as? Int
        })
        #expect(closed == [4444, 6379, 8000, 8001, 8002, 8003, 9000])
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(!text.contains("4444") && !text.contains("6379") && !text.contains("31337"), "short-lived, old and transient listeners are not suggested")
    }

    /// A shorter --min-lifetime lets the one-minute listener in; a shorter period leaves out what closed before it.
    @Test func minLifetimeAndPeriodDecide() throws {
        let db = try Self.preparedLedger()
        let short = try Self.suggest(db, ["--min-lifetime", "30s"]).stdout
        #expect(short.contains("{ port: 4444, protocol: tcp, comm: nc, exposure: [wildcard] }"), "\(short)")
        let recent = try TestBinaries.run("portwatch", ["suggest-policy", "--db.path", db, "--since", "1h", "--now", "\(Self.now / 1_000_000_000)"]).stdout
        #expect(!recent.contains("9000"), "closed 2 h ago, outside a 1 h period")
        #expect(recent.contains("ports: 8000-8003"))
        let empty = try TestBinaries.run("portwatch", ["suggest-policy", "--db.path", db, "--min-lifetime", "1000d", "--now", "\(Self.now / 1_000_000_000)"])
        #expect(empty.status == 0 && empty.stdout.hasSuffix("expected: []\n"), "\(empty.stdout)")
        #expect(try TestBinaries.run("portwatch", ["suggest-policy", "--db.path", db, "--min-lifetime", "soon"]).status == 64)
        #expect(try TestBinaries.run("portwatch", ["suggest-policy", "--db.path", "/nonexistent/pw.db"]).status == 1)
    }
}
