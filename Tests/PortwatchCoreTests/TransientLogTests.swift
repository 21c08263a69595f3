import Testing
import PortwatchCore

/// Which transient listeners become history records: the first of an owner at once, the
/// rest folded per interval, a cap per minute, what is left out counted.
@Suite struct TransientLogTests {
    let second: UInt64 = 1_000_000_000
    let t0: UInt64 = 1_700_000_000_000_000_000

    func transient(_ port: UInt16, at time: UInt64, comm: String = "unbound", address: String = "0.0.0.0",
                   transport: TransportProtocol = .udp, lifetime: UInt64 = 2_000_000, cgroup: UInt64 = 0) -> TransientSocket {
        TransientSocket(key: key(port, transport, address: address), process: OwnerProcess(pid: 400, name: ProcessName(comm), uid: 101),
                        cgroup: cgroup, state: transport == .udp ? .bound : .listen, opened: time, lifetime: lifetime)
    }

    /// The record of one transient alone, with no service, container or pod.
    func record(_ t: TransientSocket) -> TransientBinding { TransientBinding(t, attribution: Attribution()) }

    @Test func theFirstOfAnOwnerIsRecordedAtOnceExactly() {
        var log = TransientLog()
        let first = transient(4444, at: t0, comm: "nc", transport: .tcp, lifetime: 5 * ms)
        #expect(log.add([first], now: t0) == [record(first)])
        #expect(log.due(now: t0 + 61 * second).isEmpty, "nothing more to say")
        #expect(log.followed == 0, "a quiet owner is forgotten")
        let again = transient(4445, at: t0 + 62 * second, comm: "nc", transport: .tcp)
        #expect(log.add([again], now: t0 + 62 * second) == [record(again)], "after a quiet interval, at once again")
    }

    /// A batch is taken in runs of one owner: it must come out exactly as if each transient
    /// were taken alone, whatever the owners, their order, the intervals and the limits.
    @Test func aBatchComesOutAsItsTransientsOneByOne() {
        var g = SystemRandomNumberGenerator()
        let comms = ["dig", "ntpd", "unbound"]
        for limits in [TransientLog.Limits(interval: 2 * second, recordsPerMinute: 120, maxOwners: 10_000),
                       TransientLog.Limits(interval: 2 * second, recordsPerMinute: 5, maxOwners: 2)] {
            var batched = TransientLog(limits: limits), single = TransientLog(limits: limits)
            var now = t0
            for _ in 0..<300 {
                now += UInt64.random(in: 0...(second / 2), using: &g)
                var batch: [TransientSocket] = []
                for _ in 0..<Int.random(in: 0...12, using: &g) {
                    // Runs of one owner, broken by others now and then.
                    let comm = batch.last.map { Bool.random(using: &g) ? $0.process.name.description : comms.randomElement(using: &g)! } ?? comms.randomElement(using: &g)!
                    batch.append(transient(UInt16.random(in: 1000...1100, using: &g), at: now - UInt64.random(in: 0...second, using: &g), comm: comm,
                                           lifetime: UInt64.random(in: 1...100, using: &g) * ms))
                }
                let one = batch.flatMap { single.add([$0], now: now) }
                #expect(batched.add(batch, now: now) == one)
                #expect(batched.due(now: now) == single.due(now: now))
                #expect(batched.dropped == single.dropped && batched.followed == single.followed)
            }
            #expect(batched.drain(now: now) == single.drain(now: now))
        }
    }

    /// When the cap is reached as many owners' intervals end at once, the oldest records are
    /// the ones written, whatever order the log keeps its owners in.
    @Test func whenTheCapIsReachedTheOldestRecordsAreWritten() {
        let owners = (0..<20).map { "svc\($0)" }
        var log = TransientLog(limits: TransientLog.Limits(interval: 2 * second, recordsPerMinute: 30, maxOwners: 100))
        // Each owner's first transient is written at once (20 of the 30 of this minute)...
        let firsts = owners.enumerated().map { transient(UInt16(2000 + $0.offset), at: t0, comm: $0.element) }
        #expect(log.add(firsts, now: t0) == firsts.map(record))
        // ...and its second is folded, opened in an order unrelated to the owners' names.
        let seconds = owners.enumerated().map { transient(UInt16(3000 + $0.offset), at: t0 + UInt64(($0.offset * 7) % 20 + 1) * ms, comm: $0.element) }
        for t in seconds.shuffled() { #expect(log.add([t], now: t0 + ms).isEmpty) }
        // The intervals end together; 10 records are left this minute: the 10 opened first.
        let written = log.due(now: t0 + 3 * second)
        #expect(written == Array(seconds.sorted { $0.opened < $1.opened }.prefix(10)).map(record))
        #expect(log.dropped == 10)
    }

    /// Owners interleaved in one batch are folded apart: each record counts its own owner's
    /// transients and spans its own ports.
    @Test func interleavedOwnersInOneBatchFoldApart() {
        var log = TransientLog()
        let firsts = [transient(5000, at: t0, comm: "dig"), transient(6000, at: t0, comm: "ntpd")]
        #expect(log.add(firsts, now: t0) == firsts.map(record))
        let later = t0 + second
        var batch: [TransientSocket] = []
        for i in 0..<30 {
            let port = UInt16(i) + (i % 3 == 0 ? 6001 : 5001)
            batch.append(transient(port, at: later, comm: i % 3 == 0 ? "ntpd" : "dig"))
        }
        #expect(log.add(batch, now: later).isEmpty, "folded until the interval ends")
        let folded = log.due(now: t0 + 61 * second)
        let dig = folded.first { $0.owner.comm == "dig" }, ntpd = folded.first { $0.owner.comm == "ntpd" }
        #expect(folded.count == 2)
        #expect(dig?.count == 20 && dig?.key.port == 5002 && dig?.portMax == 5030)
        #expect(ntpd?.count == 10 && ntpd?.key.port == 6001 && ntpd?.portMax == 6028)
    }

    /// A resolver binding a random source port per query: one record, then one per interval
    /// with the count and the port range, whatever the rate.
    @Test func aRandomPortFloodIsFoldedPerOwnerAndInterval() {
        var log = TransientLog()
        var records: [TransientBinding] = []
        var g = SystemRandomNumberGenerator()
        var total: UInt64 = 0
        // 1,000 a second for 10 minutes, checked every 100 ms.
        for step in 0..<6_000 {
            let now = t0 + UInt64(step) * 100 * ms
            let batch = (0..<100).map { i in transient(UInt16.random(in: 32768...60999, using: &g), at: now + UInt64(i) * ms,
                                                        lifetime: UInt64.random(in: 1...9, using: &g) * ms) }
            total += 100
            records += log.add(batch, now: now)
            records += log.due(now: now)
        }
        records += log.drain(now: t0 + 601 * second)
        #expect(records.count <= 12, "one record at once and one per minute, not one per query: \(records.count)")
        #expect(records.reduce(0) { $0 + $1.count } == total, "every transient is counted in some record")
        #expect(log.dropped == 0)
        let folded = records.dropFirst()
        #expect(folded.allSatisfy { $0.key.port < $0.portMax && $0.key.port >= 32768 && $0.portMax <= 60999 })
        #expect(folded.allSatisfy { $0.lifetime <= 9 * ms && $0.lifetime >= 1 * ms })
    }

    /// One program name in two cgroups (two services, two containers) is two owners, each
    /// record named after its own cgroup.
    @Test func ownersInOtherCgroupsAreFoldedApartAndNamedAfterTheirs() {
        var log = TransientLog()
        let units: [UInt64: Attribution] = [7: Attribution(unit: "a.service"), 8: Attribution(container: "b")]
        let name = { (cgroup: UInt64) in units[cgroup] ?? Attribution() }
        let first = log.add([transient(1000, at: t0, cgroup: 7), transient(1001, at: t0, cgroup: 8), transient(1002, at: t0, cgroup: 7),
                             transient(1003, at: t0, cgroup: 8), transient(1004, at: t0, cgroup: 8)], now: t0, attribute: name)
        #expect(first.map { "\($0.key.port) \($0.owner.attribution.unit)\($0.owner.attribution.container)" } == ["1000 a.service", "1001 b"])
        let folded = log.due(now: t0 + 60 * second)
        #expect(folded.map { "\($0.ports) x\($0.count) \($0.owner.attribution.unit)\($0.owner.attribution.container)" } == ["1002 x1 a.service", "1003,1004 x2 b"])
    }

    @Test func ownersAreFoldedApart() {
        var log = TransientLog()
        let a = log.add([transient(1000, at: t0, comm: "a"), transient(1001, at: t0, comm: "b"),
                         transient(1002, at: t0, comm: "a", address: "127.0.0.1"), transient(1003, at: t0, comm: "a")], now: t0)
        #expect(a.map(\.key.port) == [1000, 1001, 1002], "three owners, each recorded at once; the fourth is folded")
        let later = log.due(now: t0 + 60 * second)
        #expect(later.map(\.count) == [1])
        #expect(later.map(\.key.port) == [1003])
    }

    /// Many owners at once (a scan of distinct programs): at most the cap per minute is
    /// written, the rest counted as dropped, and the cap opens again the next minute.
    @Test func theCapPerMinuteLimitsRecordsAndCountsTheRest() {
        var log = TransientLog(limits: .init(recordsPerMinute: 10))
        let many = (0..<50).map { transient(UInt16(2000 + $0), at: t0, comm: "p\($0)") }
        #expect(log.add(many, now: t0).count == 10)
        #expect(log.dropped == 40)
        #expect(log.add([transient(3000, at: t0 + 61 * second, comm: "late")], now: t0 + 61 * second).count == 1)
        var none = TransientLog(limits: .init(recordsPerMinute: 0))
        #expect(none.add(many, now: t0).isEmpty)
        #expect(none.dropped == 50, "0 records nothing and says so")
    }

    @Test func theOwnerLimitBoundsMemory() {
        var log = TransientLog(limits: .init(recordsPerMinute: 1_000, maxOwners: 5))
        _ = log.add((0..<8).map { transient(UInt16(2000 + $0), at: t0, comm: "p\($0)") }, now: t0)
        #expect(log.followed == 5)
        #expect(log.dropped == 3)
    }
}
