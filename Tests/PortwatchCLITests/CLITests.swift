import Foundation
import Testing
import PortwatchCore
import PortwatchStore
import PortwatchTestSupport

/// `portwatch ls`, `history` and `check-policy` on a prepared ledger, against golden output.
@Suite struct CLITests {
    static let t0: UInt64 = 1_767_225_600_000_000_000 // 2026-01-01T00:00:00Z

    /// A path for a new ledger in a directory of its own.
    static func newLedgerPath(_ prefix: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/pw.db"
    }

    /// sshd on 22 (since t0), nc on 4444 (since t0+1h), a UDP socket that lived 90 s, a 5 ms
    /// listener of bash on 31337, and 40 folded transients of a resolver on ports 33000-61000.
    static func preparedLedger() throws -> String {
        let path = try newLedgerPath("pw-cli")
        let store = try Store(path: path)
        var r = Reconciler(window: 0)
        func key(_ port: UInt16, _ t: TransportProtocol = .tcp, _ address: String = "0.0.0.0", _ family: AddressFamily = .ipv4) -> BindingKey {
            BindingKey(netns: 4026531840, transport: t, family: family, address: address, port: port)
        }
        let hour: UInt64 = 3_600_000_000_000
        // Attributed by cgroup: 1 is a systemd unit's, 2 a pod's.
        let pod = Attribution(containerID: String(repeating: "ab", count: 32), pod: "debug-7f9c", namespace: "default", container: "shell")
        let cgroups: [UInt64: Attribution] = [1: Attribution(unit: "ssh.service"), 2: pod]
        r.ingest(PortEvent(kind: .open, cookie: 1, time: t0, key: key(22), owner: Owner(pid: 612, comm: "sshd", uid: 0), state: .listen, cgroup: 1))
        r.ingest(PortEvent(kind: .open, cookie: 2, time: t0 + hour, key: key(4444, .tcp, "::", .ipv6),
                           owner: Owner(pid: 7001, comm: "nc", uid: 1000), state: .listen, cgroup: 2))
        r.ingest(PortEvent(kind: .open, cookie: 3, time: t0 + 2 * hour, key: key(5353, .udp), owner: Owner(pid: 80, comm: "avahi", uid: 107), state: .bound))
        try store.apply(r.flush(now: t0 + 2 * hour) { cgroups[$0] ?? Attribution() }!)
        r.ingest(PortEvent(kind: .close, cookie: 3, time: t0 + 2 * hour + 90_000_000_000, key: key(5353, .udp),
                           owner: Owner(pid: 80, comm: "avahi", uid: 107), state: .bound))
        try store.apply(r.flush(now: t0 + 3 * hour)!)
        var transients = Batch()
        transients.transients = [
            TransientBinding(key: key(31337, .tcp, "::", .ipv6), owner: Owner(pid: 9100, comm: "bash", uid: 1000), state: .listen,
                             opened: t0 + 3 * hour, lifetime: 5_000_000),
            TransientBinding(key: key(33000, .udp), owner: Owner(pid: 400, comm: "unbound", uid: 101, attribution: Attribution(unit: "unbound.service")),
                             state: .bound, opened: t0 + 4 * hour, lifetime: 3_000_000, count: 40, portMax: 61000),
        ]
        try store.apply(transients)
        return path
    }

    @Test func lsTable() throws {
        let db = try Self.preparedLedger()
        let (status, out, _) = try TestBinaries.run("portwatch", ["ls", "--db.path", db])
        #expect(status == 0)
        #expect(out == """
        PROTO  LOCAL       STATE   PID   COMM  UID   UNIT         POD                 NETNS       SINCE                 EXE
        tcp    0.0.0.0:22  listen  612   sshd  0     ssh.service  -                   4026531840  2026-01-01T00:00:00Z  -
        tcp    [::]:4444   listen  7001  nc    1000  -            default/debug-7f9c  4026531840  2026-01-01T01:00:00Z  -

        """)
    }

    @Test func lsFiltersAndJSON() throws {
        let db = try Self.preparedLedger()
        let (status, out, _) = try TestBinaries.run("portwatch", ["ls", "--db.path", db, "--comm", "nc", "--output", "json"])
        #expect(status == 0)
        // One array, an object per line, the fields named as `history` names them.
        #expect(out == """
        [{"netns":4026531840,"protocol":"tcp","family":"ipv6","address":"::","port":4444,"pid":7001,"comm":"nc","uid":1000,\
        "holders":1,"unit":"","container_id":"abababababababababababababababababababababababababababababababab","pod":"debug-7f9c",\
        "namespace":"default","container":"shell","exe":"","exe_deleted":0,"exposure":"wildcard","state":"listen","since":"2026-01-01T01:00:00Z"}]

        """)
        let two = try TestBinaries.run("portwatch", ["ls", "--db.path", db, "--output", "json"]).stdout
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(two.utf8)) as? [[String: Any]])
        #expect(parsed.map { $0["port"] as? Int } == [22, 4444] && two.split(separator: "\n").count == 2)
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
        TIME                  EVENT      PROTO  LOCAL                  PID      COMM             UID    UNIT              POD                   LIFETIME  COUNT  REASON
        2026-01-01T00:00:00Z  open       tcp    0.0.0.0:22             612      sshd             0      ssh.service       -                     -         -      -
        2026-01-01T01:00:00Z  open       tcp    [::]:4444              7001     nc               1000   -                 default/debug-7f9c    -         -      -
        2026-01-01T02:00:00Z  open       udp    0.0.0.0:5353           80       avahi            107    -                 -                     -         -      -
        2026-01-01T02:01:30Z  close      udp    0.0.0.0:5353           80       avahi            107    -                 -                     1m30s     -      released
        2026-01-01T03:00:00Z  transient  tcp    [::]:31337             9100     bash             1000   -                 -                     5ms       1      -
        2026-01-01T04:00:00Z  transient  udp    0.0.0.0:33000-61000    400      unbound          101    unbound.service   -                     3ms       40     -

        """)
        let one = try TestBinaries.run("portwatch", ["history", "--db.path", db, "--since", "100000d", "--port", "5353", "--output", "json"])
        let objects = try one.stdout.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "one JSON object per line")
        }
        #expect(objects.map { $0["event"] as? String } == ["open", "close"])
        #expect(objects.last?["lifetime_seconds"] as? Double == 90)
        #expect(objects.last?["reason"] as? String == "released")
        #expect(objects.first?["reason"] is NSNull)
    }

    /// `--kind transient` gives the short-lived listeners alone, with who opened them, how long
    /// they lived, how many one entry stands for and their port range.
    @Test func historyOfTransients() throws {
        let db = try Self.preparedLedger()
        let (status, out, _) = try TestBinaries.run("portwatch", ["history", "--db.path", db, "--since", "100000d", "--kind", "transient", "--output", "json"])
        #expect(status == 0)
        let objects = try out.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
        #expect(objects.map { $0["comm"] as? String } == ["bash", "unbound"])
        #expect(objects.map { $0["event"] as? String } == ["transient", "transient"])
        #expect(objects.first?["pid"] as? Int == 9100)
        #expect(objects.first?["lifetime_seconds"] as? Double == 0.005)
        #expect(objects.last.map { [$0["port"] as? Int, $0["port_max"] as? Int, $0["count"] as? Int] } == [33000, 61000, 40])
        #expect(objects.last?["unit"] as? String == "unbound.service")
        let opens = try TestBinaries.run("portwatch", ["history", "--db.path", db, "--since", "100000d", "--kind", "open", "--kind", "close"])
        #expect(opens.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: " ")[1] } == ["open", "open", "open", "close"])
        #expect(try TestBinaries.run("portwatch", ["history", "--db.path", db, "--kind", "listen"]).status == 64, "an unknown kind")
    }

    /// "Who held port N for 5 ms?": `history --port` and `ls --since --port` find a folded
    /// record by each port it held and say whether the match is exact or the range's; the
    /// policy judges each port a record is known to have held.
    @Test func aTransientIsFoundByAnyOfItsFoldedPorts() throws {
        let path = try Self.newLedgerPath("pw-ports")
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        func key(_ port: UInt16) -> BindingKey { BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "127.0.0.1", port: port) }
        let python = Owner(pid: 4242, comm: "python3", uid: 1000)
        var folded = HeldPorts(41500)
        folded.add(42000)
        var many = HeldPorts(50_000)
        for p in 50_001...50_100 { many.add(UInt16(p)) }
        var batch = Batch()
        batch.transients = [
            TransientBinding(key: key(41001), owner: python, state: .listen, opened: now - 3_000_000_000, lifetime: 5_000_000),
            TransientBinding(key: key(41500), owner: python, state: .listen, opened: now - 2_000_000_000, lifetime: 5_000_000, count: 2, held: folded),
            TransientBinding(key: key(50_000), owner: Owner(pid: 4343, comm: "scan", uid: 0), state: .listen, opened: now - 1_000_000_000,
                             lifetime: 1_000_000, count: 101, held: many),
        ]
        try Store(path: path).apply(batch)
        func json(_ command: String, _ port: String, _ extra: [String] = []) throws -> [[String: Any]] {
            let r = try TestBinaries.run("portwatch", [command, "--db.path", path, "--port", port, "--output", "json"] + extra)
            #expect(r.status == 0, "\(r.stderr)")
            if command == "ls" { return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? [] }
            return try r.stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] ?? [:] }
        }
        for port in ["41001", "41500", "42000"] {
            let found = try json("history", port, ["--kind", "transient"])
            #expect(found.count == 1 && found.first?["match"] as? String == "exact", "port \(port): \(found)")
        }
        let last = try json("history", "42000", ["--kind", "transient"]).first
        #expect(last?["ports"] as? [Int] == [41500, 42000] && last?["ports_unlisted"] as? Int == 0 && last?["count"] as? Int == 2)
        #expect(try json("history", "41700", ["--kind", "transient"]).isEmpty, "inside the range, never held")
        let unlistedPort = (50_001...50_099).first { !many.ports.contains(UInt16($0)) }!
        let ranged = try json("history", "\(unlistedPort)")
        #expect(ranged.first?["match"] as? String == "range" && ranged.first?["ports_unlisted"] as? Int == Int(many.unlisted))
        #expect((ranged.first?["ports"] as? [Int])?.count == HeldPorts.capacity)

        let table = try TestBinaries.run("portwatch", ["history", "--db.path", path, "--port", "41000-50100"]).stdout.split(separator: "\n")
        #expect(table.first?.hasSuffix("REASON     MATCH") == true, "\(table)")
        #expect(table.dropFirst().map { $0.split(separator: " ").last.map(String.init) } == ["exact", "exact", "exact"])
        #expect(table[2].contains("127.0.0.1:41500,42000 "), "the exact ports of the folded record")
        #expect(table[3].contains("127.0.0.1:50000-50100 "), "a range when they are many")

        let ls = try json("ls", "\(unlistedPort)", ["--since", "1h"])
        #expect(ls.map { $0["match"] as? String } == ["range"])
        #expect(try json("ls", "42000", ["--since", "1h"]).map { $0["ports"] as? [Int] } == [[41500, 42000]])
        let lsTable = try TestBinaries.run("portwatch", ["ls", "--db.path", path, "--since", "1h", "--port", "\(unlistedPort)"]).stdout
        #expect(lsTable.contains("transient x101, in range"), "\(lsTable)")

        // A policy that allows python3 on 41001 and 41500 only: the folded record also held 42000.
        let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).yaml").path
        try "expected:\n  - { port: 41001, comm: python3 }\n  - { port: 41500, comm: python3 }\n  - { comm: scan }\n"
            .write(toFile: policy, atomically: true, encoding: .utf8)
        let unexpected = try TestBinaries.run("portwatch", ["ls", "--db.path", path, "--unexpected", "--policy.file", policy, "--since", "1h"]).stdout
        let lines = unexpected.split(separator: "\n").dropFirst().map { $0.split(separator: " ").prefix(2).joined(separator: " ") }
        #expect(lines == ["tcp 127.0.0.1:41500,42000"], "\(unexpected)")
    }

    /// `ls --unexpected --since` lists the transients the policy does not allow next to the ports held now.
    @Test func lsListsUnexpectedTransientsOfThePeriod() throws {
        let db = try Self.preparedLedger()
        let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).yaml").path
        try "expected:\n  - { port: 22, comm: sshd }\n  - { unit: unbound.service }\n".write(toFile: policy, atomically: true, encoding: .utf8)
        let (status, out, _) = try TestBinaries.run("portwatch", ["ls", "--db.path", db, "--unexpected", "--policy.file", policy, "--since", "100000d"])
        #expect(status == 0)
        let lines = out.split(separator: "\n").dropFirst().map { $0.split(separator: " ").prefix(3).joined(separator: " ") }
        #expect(lines == ["tcp [::]:4444 listen", "tcp [::]:31337 transient"], "the allowed resolver's transients are not listed")
        let now = try TestBinaries.run("portwatch", ["ls", "--db.path", db, "--unexpected", "--policy.file", policy])
        #expect(!now.stdout.contains("31337"), "without --since, only ports held now")
    }

    @Test func historySinceLeavesOutOlderEntries() throws {
        let path = try Self.newLedgerPath("pw-since")
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

    /// Process names are whatever a program chose: JSON gives them back byte for byte, the
    /// table pads by characters (not bytes), and entries of one second and of the next each
    /// carry their own time.
    @Test func historyKeepsOddNamesExactAndTimesPerEntry() throws {
        let path = try Self.newLedgerPath("pw-names")
        let store = try Store(path: path)
        let comms = ["q\"u\\o", "tab\there", "nl\nx\u{1}", "grüße-ß", "plain"]
        var r = Reconciler(window: 0)
        for (i, comm) in comms.enumerated() {
            // Two entries in the first second, then one a second later each.
            let time = Self.t0 + UInt64(max(0, i - 1)) * 1_000_000_000 + UInt64(i) * 1_000
            r.ingest(PortEvent(kind: .open, cookie: UInt64(i + 1), time: time,
                               key: BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "0.0.0.0", port: UInt16(9000 + i)),
                               owner: Owner(pid: 1, comm: comm, uid: 0), state: .listen))
        }
        try store.apply(r.flush(now: Self.t0 + 10_000_000_000)!)
        let json = try TestBinaries.run("portwatch", ["history", "--db.path", path, "--since", "100000d", "--output", "json"])
        let objects = try json.stdout.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "one JSON object per line: \(line)")
        }
        #expect(objects.map { $0["comm"] as? String } == comms)
        #expect(objects.map { $0["time"] as? String } == ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z",
                                                          "2026-01-01T00:00:02Z", "2026-01-01T00:00:03Z"])
        let table = try TestBinaries.run("portwatch", ["history", "--db.path", path, "--since", "100000d"])
        let lines = table.stdout.split(separator: "\n").filter { $0.contains("grüße-ß") || $0.contains("plain") }
        #expect(lines.count == 2)
        // The UID column starts at the same character in both lines.
        let uidColumn = lines.map { line in line.distance(from: line.startIndex, to: line.range(of: "  0  ")!.lowerBound) }
        #expect(uidColumn.count == 2 && uidColumn[0] == uidColumn[1], "\(lines)")
    }

    /// `history` reads the ledger with a thread per core, each its own blocks of entries, and
    /// merges their lines: a ledger of several blocks whose later writes carry earlier times
    /// (as folded transient records do) still prints every entry once, oldest first.
    @Test func historyOfManyEntriesIsCompleteAndInTimeOrder() throws {
        let path = try Self.newLedgerPath("pw-many")
        let store = try Store(path: path)
        let perBatch = 1_500
        for batch in 0..<3 {
            var r = Reconciler(window: 0)
            for i in 0..<perBatch {
                // Each batch written after the one before, with earlier times.
                let time = Self.t0 + UInt64(2 - batch) * 10_000_000_000 + UInt64((i * 7_919) % perBatch) * 1_000_000
                let n = batch * perBatch + i
                r.ingest(PortEvent(kind: .open, cookie: UInt64(n + 1), time: time,
                                   key: BindingKey(netns: 1, transport: .udp, family: .ipv4, address: "127.0.0.1", port: UInt16(10_000 + n)),
                                   owner: Owner(pid: Int32(n), comm: "w\(n)", uid: 0), state: .bound))
            }
            try store.apply(r.flush(now: Self.t0 + 60_000_000_000)!)
        }
        let json = try TestBinaries.run("portwatch", ["history", "--db.path", path, "--since", "100000d", "--output", "json"])
        #expect(json.status == 0)
        let entries = try json.stdout.split(separator: "\n").map { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return (port: try #require(object["port"] as? Int), id: try #require(object["id"] as? Int), comm: object["comm"] as? String)
        }
        #expect(Set(entries.map(\.id)).count == 3 * perBatch && entries.count == 3 * perBatch, "every entry once")
        #expect(entries.allSatisfy { $0.comm == "w\($0.port - 10_000)" }, "each line whole, its fields its own")
        // Port order is time order here: within a batch by time, and the last batch written first.
        let times = entries.map { entry -> UInt64 in
            let n = entry.port - 10_000, batch = n / perBatch, i = n % perBatch
            return UInt64(2 - batch) * 10_000 + UInt64((i * 7_919) % perBatch)
        }
        let ordered = zip(times, times.dropFirst()).allSatisfy { $0 <= $1 }
        #expect(ordered, "oldest first")
        #expect(entries.first?.id ?? 0 > 2 * perBatch, "the newest write holds the oldest entries")
        let table = try TestBinaries.run("portwatch", ["history", "--db.path", path, "--since", "100000d"])
        #expect(table.stdout.split(separator: "\n").count == 3 * perBatch + 1, "the header and a line per entry")
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
