import Testing
@testable import PortwatchCore

/// The reconciler's event queue against a plain array: random appends, marks, reads of
/// ranges that straddle its two halves, and consumption, over 20,000 steps.
@Suite struct EventQueueTests {
    @Test func behavesLikeAnArrayConsumedFromTheFront() {
        var rng = SystemRandomNumberGenerator()
        var queue = EventQueue<Int>(retained: 8)
        var model: [Int] = []
        var start = 0
        var next = 0
        for _ in 0..<20_000 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<5:
                queue.append(next)
                model.append(next)
                next += 1
            case 5, 6:
                guard start < model.count else { continue }
                let p = Int.random(in: start..<model.count, using: &rng)
                queue.update(p) { $0 += 1_000_000 }
                model[p] += 1_000_000
            case 7:
                // Take back the trailing elements marked above (never below start).
                queue.removeLast { $0 >= 1_000_000 }
                while model.count > start, model[model.count - 1] >= 1_000_000 { model.removeLast() }
            case 8:
                let lo = Int.random(in: start...model.count, using: &rng)
                let hi = Int.random(in: lo...model.count, using: &rng)
                #expect(Array(queue.elements(lo..<hi)) == Array(model[lo..<hi]))
            default:
                start = Int.random(in: start...model.count, using: &rng)
                queue.consume(upTo: start)
            }
            #expect(queue.start == start && queue.end == model.count)
            if start < model.count { #expect(queue.read(start) { $0 } == model[start]) }
        }
    }

    /// A flood of sockets that each open and close within the window, two at a time and
    /// interleaved as two threads' events are: the reconciler takes their events back as
    /// they turn out transient, so it holds a handful, not the window's worth.
    @Test func transientsDoNotPileUpInTheReconciler() throws {
        var r = Reconciler(window: window)
        var time: UInt64 = 1_000 * window
        for pair in 0..<50_000 {
            let a = UInt64(2 * pair + 1), b = a + 1
            let ka = key(UInt16(10_000 + pair % 20_000)), kb = key(UInt16(30_000 + pair % 20_000))
            r.ingest(event(.open, a, at: time, ka, state: .bound))
            r.ingest(event(.open, b, at: time, kb, state: .bound))
            r.ingest(event(.open, a, at: time + 1, ka))
            r.ingest(event(.close, a, at: time + 2, ka))
            r.ingest(event(.open, b, at: time + 2, kb))
            r.ingest(event(.close, b, at: time + 3, kb))
            time += 4_000
            #expect(r.bufferedEvents == 0, "pair \(pair)")
            if r.bufferedEvents != 0 { return }
        }
        // A socket that outlives the window is still applied, after the others were taken back.
        r.ingest(event(.open, 1, at: time, key(80)))
        r.ingest(event(.open, 2, at: time, key(81)))
        r.ingest(event(.close, 2, at: time + 1, key(81)))
        #expect(r.bufferedEvents == 1)
        let batch = try r.mustFlush(now: time + window)
        #expect(batch.changes.map(\.row.key) == [key(80)])
        #expect(batch.counters.transientBindings[.tcp] == 50_001 * 2 - 1)
    }

    /// 10,000 listeners at once (a service starting its workers, a snapshot's worth), then as
    /// many closes and opens again, then all of them gone: once each burst is applied the
    /// reconciler gives back the room it took (half a MiB for the young sockets; the table's
    /// 4 MiB once they are gone), as its event queue does, and the rows are right throughout.
    @Test func aBurstsRoomIsGivenBackOnceApplied() throws {
        var r = Reconciler(window: window)
        var time: UInt64 = 1_000 * window
        let room = Reconciler.retainedRoom
        for i in 0..<10_000 { r.ingest(event(.open, UInt64(i + 1), at: time, key(UInt16(10_000 + i)))) }
        #expect(r.roomKept.perEvent >= 10_000)
        #expect(try r.mustFlush(now: time + window).changes.count == 10_000)
        #expect(r.roomKept.perEvent <= 2 * room, "room for \(r.roomKept.perEvent) sockets kept")
        time += 2 * window
        for i in 0..<10_000 { r.ingest(event(.close, UInt64(i + 1), at: time, key(UInt16(10_000 + i)))) }
        for i in 0..<10_000 { r.ingest(event(.open, UInt64(20_000 + i), at: time + 1, key(UInt16(10_000 + i)))) }
        #expect(r.roomKept.perEvent >= 10_000)
        let batch = try r.mustFlush(now: time + 1 + window)
        #expect(batch.changes.count == 10_000 && batch.changes.allSatisfy { $0.action == .update })
        #expect(r.roomKept.perEvent <= 2 * room, "room for \(r.roomKept.perEvent) sockets kept")
        #expect(r.rows.count == 10_000 && r.sockets.count == 10_000)
        #expect(r.roomKept.table >= 10_000)
        time += 2 * window
        // All but 100 go: the table keeps room for about what it holds.
        for i in 100..<10_000 { r.ingest(event(.close, UInt64(20_000 + i), at: time, key(UInt16(10_000 + i)))) }
        let closed = try r.mustFlush(now: time + window)
        #expect(closed.changes.count == 9_900 && closed.changes.allSatisfy { $0.action == .delete })
        #expect(r.rows.count == 100 && r.sockets.count == 100)
        #expect(r.roomKept.table <= 2 * room, "room for \(r.roomKept.table) rows or sockets kept")
        #expect(r.roomKept.perEvent <= 2 * room, "room for \(r.roomKept.perEvent) sockets kept")
    }
}
