import Testing
import PortwatchCore

/// The exact ports of a folded transient record: what `history --port` answers from.
@Suite struct HeldPortsTests {
    /// The case: one process name, listeners on 41001, 41500 and 42000 within a minute.
    /// The first is recorded alone; the folded record knows both of its ports exactly.
    @Test func aFoldedRunKeepsEachOfItsPorts() {
        let t0: UInt64 = 1_700_000_000_000_000_000
        func socket(_ port: UInt16, _ i: UInt64) -> TransientSocket {
            TransientSocket(key: BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "127.0.0.1", port: port),
                            process: OwnerProcess(pid: 900, name: ProcessName("python3"), uid: 0), state: .listen,
                            opened: t0 + i * 1_000_000_000, lifetime: 5_000_000)
        }
        var log = TransientLog()
        var written = log.add([socket(41001, 0)], now: t0)
        written += log.add([socket(42000, 1), socket(41500, 2)], now: t0 + 3_000_000_000)
        written += log.drain(now: t0 + 4_000_000_000)
        #expect(written.map(\.ports) == ["41001", "41500,42000"])
        let folded = written[1].heldPorts
        #expect(folded.ports == [41500, 42000] && folded.isExact)
        #expect(folded.match(42000...42000) == .exact, "the end of the range")
        #expect(folded.match(41500...41500) == .exact, "the start")
        #expect(folded.match(41700...41700) == nil, "inside the range but never held, and every port is known")
        #expect(folded.match(41000...41600) == .exact, "a range of ports that holds one of them")
    }

    /// More distinct ports than the bound: the ends stay listed, the others' transients are
    /// counted, and a port among them is answered by the range.
    @Test func beyondTheBoundTheEndsStayAndTheRestIsCounted() {
        var held = HeldPorts(20_000)
        // 100 distinct ports, each twice, in an order that moves both ends late.
        let spread: [UInt16] = (1...98).map { (i: Int) -> UInt16 in UInt16(20_005 + (i * 37 % 101) * 10) }
        let ports = spread + [19_000, 30_000]
        for port in ports + ports { held.add(port) }
        #expect(held.ports.count == HeldPorts.capacity)
        #expect(held.low == 19_000 && held.high == 30_000, "the range's ends are always listed")
        let listedTransients = held.ports.reduce(UInt64(0)) { $0 + ($1 == 20_000 ? 1 : 2) }  // 20000 was added once
        #expect(held.unlisted == UInt64(ports.count * 2 + 1) - listedTransients, "every transient is either listed or counted")
        let unlistedPort = Set(ports).subtracting(held.ports).first!
        #expect(held.match(unlistedPort...unlistedPort) == .range)
        #expect(held.match(held.ports[5]...held.ports[5]) == .exact)
        #expect(held.match(30_001...40_000) == nil, "outside the range")
        #expect(held.text == "19000-30000", "too many to write one by one")
    }

    /// Random runs (few distinct ports, and many): the list stays distinct and ascending, holds
    /// only ports that were added, keeps the lowest and highest, and is exact while every
    /// distinct port fits.
    @Test func randomAddsKeepTheListOrderedWithItsEnds() {
        var generator = SystemRandomNumberGenerator()
        for run in 0..<300 {
            let span = run % 3 == 0 ? 40 : 3_000
            let first = UInt16.random(in: 30_000...30_000 + UInt16(span), using: &generator)
            var held = HeldPorts(first)
            var seen: Set<UInt16> = [first]
            for _ in 0..<Int.random(in: 1...400, using: &generator) {
                let port = UInt16.random(in: 30_000...30_000 + UInt16(span), using: &generator)
                held.add(port)
                seen.insert(port)
            }
            #expect(zip(held.ports, held.ports.dropFirst()).allSatisfy { $0 < $1 }, "run \(run): \(held.ports)")
            #expect(Set(held.ports).isSubset(of: seen) && held.ports.count == min(seen.count, HeldPorts.capacity))
            #expect(held.low == seen.min() && held.high == seen.max())
            #expect(held.isExact == (seen.count <= HeldPorts.capacity))
        }
    }

    @Test func mergingKeepsEveryTransientAccountedFor() {
        var a = HeldPorts(100, count: 3)
        for p in 101...160 { a.add(UInt16(p)) }
        var b = HeldPorts(50, count: 2)
        for p in 200...220 { b.add(UInt16(p)) }
        a.merge(b)
        #expect(a.low == 50 && a.high == 220 && a.ports.count == HeldPorts.capacity)
        // 3 + 60 + 2 + 21 transients; the listed ones are each 1 except 100 (3) and 50 (2).
        let listed = UInt64(a.ports.count) + (a.ports.contains(100) ? 2 : 0) + 1
        #expect(a.unlisted + listed == 86)
    }

    @Test func textListsFewPortsAndShowsARangeOtherwise() {
        var h = HeldPorts(4444)
        #expect(h.text == "4444")
        h.add(4446)
        h.add(4445)
        #expect(h.text == "4444,4445,4446")
        #expect(HeldPorts(stored: [33000, 61000], unlisted: 38).text == "33000-61000", "the others are somewhere between")
        for p in 5000...5010 { h.add(UInt16(p)) }
        #expect(h.text == "4444-5010")
    }
}
