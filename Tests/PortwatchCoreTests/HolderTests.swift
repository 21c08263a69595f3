import Testing
import PortwatchCore

@Suite struct HolderTests {
    let k = key(443)
    let t0: UInt64 = 5_000 * ms

    @Test func reusePortGroupKeepsRowUntilLastRelease() throws {
        var r = Reconciler(window: window)
        r.ingest(event(.open, 1, at: t0, k, pid: 1))
        r.ingest(event(.open, 2, at: t0 + ms, k, pid: 2))
        _ = r.flush(now: t0 + ms + window)
        #expect(r.rows[k]?.holders == 2)

        r.ingest(event(.close, 1, at: t0 + 10 * window, k))
        let first = try r.mustFlush(now: t0 + 11 * window)
        #expect(first.changes.map(\.action) == [.update], "one of two holders leaving is an update")
        #expect(r.rows[k]?.holders == 1)

        r.ingest(event(.close, 2, at: t0 + 12 * window, k))
        let last = try r.mustFlush(now: t0 + 13 * window)
        #expect(last.changes.map(\.action) == [.delete])
        #expect(r.rows[k] == nil)
    }

    /// A known socket reported on another key leaves its old row first; that row's change is
    /// in the batch like the new one's, so the ledger drops it too.
    @Test func aSocketSeenOnAnotherKeyLeavesItsOldRowInTheLedgerToo() throws {
        let other = key(8443)
        var r = Reconciler(window: window, rows: [k: row(k)], sockets: [1: k])
        r.ingest(event(.open, 1, at: t0, other))
        let batch = try r.mustFlush(now: t0 + window)
        #expect(Set(batch.changes.map { "\($0.action) \($0.row.key.port)" }) == ["delete 443", "insert 8443"])
        #expect(r.rows[k] == nil && r.rows[other]?.socket == 1)
    }

    @Test func bindThenListenIsOneHolderWithListenState() throws {
        var r = Reconciler(window: window)
        r.ingest(event(.open, 1, at: t0, k, state: .bound))
        _ = r.flush(now: t0 + window)
        #expect(r.rows[k]?.state == .bound)
        r.ingest(event(.open, 1, at: t0 + 2 * window, k, state: .listen))
        let batch = try r.mustFlush(now: t0 + 3 * window)
        #expect(batch.changes.map(\.action) == [.update])
        #expect(r.rows[k]?.state == .listen)
        #expect(r.rows[k]?.holders == 1)
    }

    @Test func transientSocketBesideAHeldOneChangesNothing() throws {
        var r = Reconciler(window: window, rows: [k: row(k)], sockets: [1: k])
        r.ingest(event(.open, 2, at: t0, k))
        r.ingest(event(.close, 2, at: t0 + ms, k))
        let batch = try r.mustFlush(now: t0 + window)
        #expect(batch.changes.isEmpty)
        #expect(batch.counters.transientBindings == [.tcp: 1])
        #expect(r.rows[k] == row(k))
    }

    @Test func unknownSocketCannotReleaseAKnownHolder() throws {
        var r = Reconciler(window: window, rows: [k: row(k)], sockets: [1: k])
        r.ingest(event(.close, 99, at: t0, k))
        let batch = try r.mustFlush(now: t0 + window)
        #expect(batch.changes.isEmpty)
        #expect(batch.counters.orphanCloses == [.tcp: 1])
        #expect(r.rows[k]?.holders == 1)
    }

    @Test func anonymousHolderIsReleasedByAnUnknownSocket() throws {
        // Two holders, only one of them known (e.g. its open was lost).
        var r = Reconciler(window: window, rows: [k: row(k, holders: 2)], sockets: [1: k])
        r.ingest(event(.close, 99, at: t0, k))
        let batch = try r.mustFlush(now: t0 + window)
        #expect(batch.changes.map(\.action) == [.update])
        #expect(r.rows[k]?.holders == 1)
    }

    @Test func zeroWindowAppliesAtOnce() throws {
        var r = Reconciler(window: 0)
        r.ingest(event(.open, 1, at: t0, k))
        let batch = try r.mustFlush(now: t0)
        #expect(batch.changes.map(\.action) == [.insert])
        r.ingest(event(.close, 1, at: t0, k))
        #expect(try r.mustFlush(now: t0).changes.map(\.action) == [.delete])
    }
}
