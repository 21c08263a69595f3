import Foundation
import Testing
import PortwatchCore
import PortwatchStore
import PortwatchTestSupport

/// `portwatch ls`, `history` and `check-policy` on a prepared ledger, against golden output.
@Suite struct CLITests {
    static let t0: UInt64 = 1_767_225_600_000_000_000 // 2026-01-01T00:00:00Z

    /// sshd on 22 (since t0), nc on 4444 (since t0+1h), and a UDP socket that lived 90 s.
    static func preparedLedger() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/pw.db"
        let store = try Store(path: path)
        var r = Reconciler(window: 0)
        func key(_ port: UInt16, _ t: TransportProtocol = .tcp, _ address: String = "0.0.0.0", _ family: AddressFamily = .ipv4) -> BindingKey {
            BindingKey(netns: 4026531840, transport: t, family: family, address: address, port: port)
        }
        let hour: UInt64 = 3_600_000_000_000
        r.ingest(PortEvent(kind: .open, cookie: 1, time: t0, key: key(22),
                           owner: Owner(pid: 612, comm: "sshd", uid: 0, attribution: Attribution(unit: "ssh.service")), state: .listen))
        let pod = Attribution(containerID: String(repeating: "ab", count: 32), pod: "debug-7f9c", namespace: "default", container: "shell")
        r.ingest(PortEvent(kind: .open, cookie: 2, time: t0 + hour, key: key(4444, .tcp, "::", .ipv6),
                           owner: Owner(pid: 7001, comm: "nc", uid: 1000, attribution: pod), state: .listen))
        r.ingest(PortEvent(kind: .open, cookie: 3, time: t0 + 2 * hour, key: key(5353, .udp), owner: Owner(pid: 80, comm: "avahi", uid: 107), state: .bound))
        try store.apply(r.flush(now: t0 + 2 * hour)!)
        r.ingest(PortEvent(kind: .close, cookie: 3, time: t0 + 2 * hour + 90_000_000_000, key: key(5353, .udp),
                           owner: Owner(pid: 80, comm: "avahi", uid: 107), state: .bound))
        try store.apply(r.flush(now: t0 + 3 * hour)!)
        return path
    }

    @Test func lsTable() throws {
        let db = try Self.preparedLedger()
        let (status, out, _) = try TestBinaries.run("portwatch", ["ls", "--db.path", db])
        #expect(status == 0)
        #expect(out == """
        PROTO  LOCAL       STATE   PID   COMM  UID   UNIT         POD                 NETNS       SINCE
        tcp    0.0.0.0:22  listen  612   sshd  0     ssh.service  -                   4026531840  2026-01-01T00:00:00Z
        tcp    [::]:4444   listen  7001  nc    1000  -            default/debug-7f9c  4026531840  2026-01-01T01:00:00Z

        """)
    }

    @Test func lsFiltersAndJSON() throws {
        let db = try Self.preparedLedger()
        let (status, out, _) = try TestBinaries.run("portwatch", ["ls", "--db.path", db, "--comm", "nc", "--output", "json"])
        #expect(status == 0)
        #expect(out == """
        [
          {
            "address" : "::",
            "comm" : "nc",
            "container" : "shell",
            "container_id" : "abababababababababababababababababababababababababababababababab",
            "exposure" : "wildcard",
            "family" : "ipv6",
            "holders" : 1,
            "namespace" : "default",
            "netns" : 4026531840,
            "pid" : 7001,
            "pod" : "debug-7f9c",
            "port" : 4444,
            "protocol" : "tcp",
            "since" : "2026-01-01T01:00:00Z",
            "state" : "listen",
            "uid" : 1000,
            "unit" : ""
          }
        ]

        """)
        #expect(try TestBinaries.run("portwatch", ["ls", "--db.path", db, "--port", "22", "--protocol", "udp"]).stdout
            .split(separator: "\n").count == 1, "header only")
    }

    @Test func lsUnexpected() throws {
        let db = try Self.preparedLedger()
        let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).yaml").path
        try "expected:\n  - { port: 22, comm: sshd }\n".write(toFile: policy, atomically: true, encoding: .utf8)
        let (status, out, _) = try TestBinaries.run("portwatch", ["ls", "--db.path", db, "--unexpected", "--policy.file", policy])
        #expect(status == 0)
        #expect(out.contains("[::]:4444") && !out.contains(":22 "))
        #expect(try TestBinaries.run("portwatch", ["ls", "--db.path", db, "--unexpected"]).status == 64, "--unexpected without a policy")
    }

    @Test func historyTable() throws {
        let db = try Self.preparedLedger()
        let (status, out, _) = try TestBinaries.run("portwatch", ["history", "--db.path", db, "--since", "100000d"])
        #expect(status == 0)
        #expect(out == """
        TIME                  EVENT  PROTO  LOCAL         PID   COMM   UID   UNIT         POD                 LIFETIME  REASON
        2026-01-01T00:00:00Z  open   tcp    0.0.0.0:22    612   sshd   0     ssh.service  -                   -         -
        2026-01-01T01:00:00Z  open   tcp    [::]:4444     7001  nc     1000  -            default/debug-7f9c  -         -
        2026-01-01T02:00:00Z  open   udp    0.0.0.0:5353  80    avahi  107   -            -                   -         -
        2026-01-01T02:01:30Z  close  udp    0.0.0.0:5353  80    avahi  107   -            -                   1m30s     released

        """)
        let one = try TestBinaries.run("portwatch", ["history", "--db.path", db, "--since", "100000d", "--port", "5353", "--output", "json"])
        #expect(one.stdout.contains("\"lifetime_seconds\" : 90"))
        #expect(one.stdout.contains("\"reason\" : \"released\""))
        #expect(one.stdout.components(separatedBy: "\"event\"").count == 3)
    }

    @Test func historySinceLeavesOutOlderEntries() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-since-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/pw.db"
        let store = try Store(path: path)
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        let minute: UInt64 = 60_000_000_000
        var r = Reconciler(window: 0)
        for (cookie, port, age) in [(UInt64(1), UInt16(7001), 180 * minute), (2, 7002, 90 * minute), (3, 7003, 10 * minute)] {
            r.ingest(PortEvent(kind: .open, cookie: cookie, time: now - age,
                               key: BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "0.0.0.0", port: port),
                               owner: Owner(pid: 1, comm: "app", uid: 0), state: .listen))
        }
        try store.apply(r.flush(now: now)!)
        func ports(_ since: String) throws -> [String] {
            try TestBinaries.run("portwatch", ["history", "--db.path", path, "--since", since]).stdout
                .split(separator: "\n").dropFirst().compactMap { line in line.split(separator: " ").first { $0.hasPrefix("0.0.0.0:") }.map(String.init) }
        }
        #expect(try ports("1h") == ["0.0.0.0:7003"])
        #expect(try ports("2h") == ["0.0.0.0:7002", "0.0.0.0:7003"])
        #expect(try ports("4h") == ["0.0.0.0:7001", "0.0.0.0:7002", "0.0.0.0:7003"])
    }

    @Test func checkPolicy() throws {
        let db = try Self.preparedLedger()
        let dir = FileManager.default.temporaryDirectory.path
        let good = dir + "/good-\(UUID().uuidString).yaml", bad = dir + "/bad-\(UUID().uuidString).yaml"
        try "expected:\n  - { port: 22 }\n".write(toFile: good, atomically: true, encoding: .utf8)
        try "expected:\n  - { port: 22 }\n  - { protocl: tcp }\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let ok = try TestBinaries.run("portwatch", ["check-policy", good, "--db.path", db])
        #expect(ok.status == 0)
        #expect(ok.stdout.contains("valid, 1 rule") && ok.stdout.contains("1 of 2 current listeners would be unexpected"))
        #expect(ok.stdout.contains("[::]:4444"))
        let refused = try TestBinaries.run("portwatch", ["check-policy", bad])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("\(bad):3:") && refused.stderr.contains("unknown field `protocl`"), "\(refused.stderr)")
    }

    @Test func missingLedgerIsOneClearLine() throws {
        let (status, _, err) = try TestBinaries.run("portwatch", ["ls", "--db.path", "/nonexistent/pw.db"])
        #expect(status == 1)
        #expect(err == "portwatch: no portwatch database at /nonexistent/pw.db: start the daemon first, or point --db.path at its database\n")
    }
}
