import Testing
import PortwatchCore

/// Each row of the truth table, with one key and events inside one window.
@Suite struct TruthTableTests {
    let k = key(8080)
    let t0: UInt64 = 1_000 * ms

    /// Existing row for `k`, held by socket 1.
    func withRow() -> Reconciler {
        Reconciler(window: window, rows: [k: row(k)], sockets: [1: k])
    }

    @Test func noRowNoEventsDoesNothing() {
        var r = Reconciler(window: window)
        #expect(r.flush(now: t0) == nil)
        #expect(r.rows.isEmpty)
    }

    @Test func noRowOpenInserts() throws {
        var r = Reconciler(window: window)
        r.ingest(event(.open, 2, at: t0, k, pid: 7, comm: "nginx"))
        let early = try r.mustFlush(now: t0 + window - 1)
        #expect(early.changes.isEmpty, "not applied before the window has passed")
        #expect(early.counters.events == [.open: 1], "received events are counted at once")
        #expect(r.rows.isEmpty)
        let batch = try r.mustFlush(now: t0 + window)
        #expect(batch.changes.map(\.action) == [.insert])
        #expect(r.rows[k]?.owner == Owner(pid: 7, comm: "nginx", uid: 0))
        #expect(r.rows[k]?.holders == 1)
        #expect(batch.counters.actions == [.insert: 1])
    }

    @Test func noRowCloseIsAnOrphan() throws {
        var r = Reconciler(window: window)
        r.ingest(event(.close, 2, at: t0, k))
        let batch = try r.mustFlush(now: t0 + window)
        #expect(batch.changes.isEmpty)
        #expect(batch.counters.orphanCloses == [.tcp: 1])
        #expect(r.rows.isEmpty)
    }

    @Test func noRowOpenThenCloseWithinWindowIsTransient() throws {
        var r = Reconciler(window: window)
        r.ingest(event(.open, 2, at: t0, k))
        r.ingest(event(.close, 2, at: t0 + window - 1, k))
        let batch = try r.mustFlush(now: t0 + 10 * window)
        #expect(batch.changes.isEmpty)
        #expect(batch.counters.transientBindings == [.tcp: 1])
        #expect(batch.counters.events == [.open: 1, .close: 1])
        #expect(r.rows.isEmpty)
        #expect(r.sockets.isEmpty)
        // Never a row, but recorded: who opened which port, when, for how long.
        #expect(batch.transients == [TransientBinding(key: k, owner: Owner(pid: 100, comm: "server", uid: 0), state: .listen,
                                                      opened: t0, lifetime: window - 1)])
    }

    /// A bind then listen then close within the window is one transient listener, in its last
    /// state, named after the task that took the port; a client (bind then connect) is none.
    @Test func aTransientIsRecordedOnceWithItsLastStateAndAClientIsNot() throws {
        var r = Reconciler(window: window)
        r.ingest(event(.open, 2, at: t0, k, pid: 7, comm: "nc", state: .bound))
        r.ingest(event(.open, 2, at: t0 + ms, k, pid: 7, comm: "nc", state: .listen))
        r.ingest(event(.close, 2, at: t0 + 5 * ms, k))
        r.ingest(event(.open, 3, at: t0 + 6 * ms, key(5000), state: .bound))
        r.ingest(event(.close, 3, at: t0 + 7 * ms, key(5000), reason: .connected))
        let batch = try r.mustFlush(now: t0 + 10 * window)
        #expect(batch.transients.map(\.state) == [.listen])
        #expect(batch.transients.map(\.owner.comm) == ["nc"])
        #expect(batch.transients.map(\.lifetime) == [5 * ms])
        #expect(batch.counters.clientBindings == [.tcp: 1])
        #expect(r.flush(now: t0 + 20 * window) == nil, "recorded once")
    }

    /// Many sockets open before the first of them closes (a busy host's interleaving), some
    /// with a bind, a listen and a second listen (three events while young), and a flush
    /// between their opens and their closes: each one that closes within the window is
    /// transient, whatever the order; the one that outlives it is a row, then deleted.
    @Test func manyYoungSocketsAtOnceAreEachTransient() throws {
        var r = Reconciler(window: window)
        let sockets = 40
        for i in 0..<sockets {
            let port = UInt16(30_000 + i)
            r.ingest(event(.open, UInt64(100 + i), at: t0 + UInt64(i) * 100, key(port), state: .bound))
            if i % 3 == 0 {
                r.ingest(event(.open, UInt64(100 + i), at: t0 + UInt64(i) * 100 + 10, key(port)))
                r.ingest(event(.open, UInt64(100 + i), at: t0 + UInt64(i) * 100 + 20, key(port)))
            }
        }
        // The long-lived one, opened among them.
        r.ingest(event(.open, 999, at: t0 + 5_000, key(8080)))
        let early = r.flush(now: t0 + window / 2)
        #expect(early?.changes.isEmpty ?? true, "nothing due yet")
        #expect(early?.counters.transientBindings.isEmpty ?? true)
        for i in (0..<sockets).reversed() {
            r.ingest(event(.close, UInt64(100 + i), at: t0 + window / 2 + UInt64(i), key(UInt16(30_000 + i))))
        }
        let batch = try r.mustFlush(now: t0 + 10 * window)
        #expect(batch.counters.transientBindings == [.tcp: UInt64(sockets)])
        #expect(batch.transients.count == sockets)
        #expect(batch.transients.filter { $0.state == .listen }.count == (sockets + 2) / 3, "the last state of each")
        #expect(batch.changes.map(\.row.key) == [key(8080)])
        r.ingest(event(.close, 999, at: t0 + 11 * window, key(8080)))
        let later = try r.mustFlush(now: t0 + 20 * window)
        #expect(later.changes.map(\.action) == [.delete])
        #expect(later.counters.transientBindings.isEmpty)
        #expect(r.rows.isEmpty && r.sockets.isEmpty)
    }

    @Test func noRowOpenThenCloseAfterWindowIsInsertedThenDeleted() throws {
        var r = Reconciler(window: window)
        r.ingest(event(.open, 2, at: t0, k))
        r.ingest(event(.close, 2, at: t0 + window, k))
        let batch = try r.mustFlush(now: t0 + 10 * window)
        #expect(batch.changes.map(\.action) == [.insert, .delete])
        #expect(batch.counters.transientBindings.isEmpty)
        #expect(r.rows.isEmpty)
    }

    @Test func noRowCloseThenOpenCountsOrphanThenInserts() throws {
        var r = Reconciler(window: window)
        r.ingest(event(.close, 2, at: t0, k))
        r.ingest(event(.open, 3, at: t0 + ms, k, pid: 9))
        let batch = try r.mustFlush(now: t0 + ms + window)
        #expect(batch.counters.orphanCloses == [.tcp: 1])
        #expect(batch.changes.map(\.action) == [.insert])
        #expect(r.rows[k]?.owner.pid == 9)
    }

    @Test func rowNoEventsIsKept() {
        var r = withRow()
        #expect(r.flush(now: t0) == nil)
        #expect(r.rows[k] == row(k))
    }

    @Test func rowOpenUpdatesHolder() throws {
        var r = withRow()
        r.ingest(event(.open, 1, at: t0, k, pid: 77, comm: "new", state: .listen))
        let batch = try r.mustFlush(now: t0 + window)
        #expect(batch.changes.map(\.action) == [.update])
        #expect(r.rows[k]?.owner.pid == 77)
        #expect(r.rows[k]?.holders == 1, "the same socket again is not a second holder")
    }

    @Test func rowCloseDeletes() throws {
        var r = withRow()
        r.ingest(event(.close, 1, at: t0, k))
        let batch = try r.mustFlush(now: t0 + window)
        #expect(batch.changes.map(\.action) == [.delete])
        #expect(batch.socketsRemoved == [1])
        #expect(r.rows[k] == nil)
    }

    @Test func rowCloseThenOpenUpdates() throws {
        var r = withRow()
        r.ingest(event(.close, 1, at: t0, k))
        r.ingest(event(.open, 2, at: t0 + ms, k, pid: 88, comm: "restarted"))
        let batch = try r.mustFlush(now: t0 + ms + window)
        #expect(batch.changes.map(\.action) == [.update])
        #expect(r.rows[k]?.owner == Owner(pid: 88, comm: "restarted", uid: 0))
        #expect(r.sockets == [2: k])
    }

    @Test func openThenCloseInEitherOrderAcrossKeysIsIndependent() throws {
        // Both orders of open/close inside one window, on two different keys.
        let other = key(9090, .udp)
        var r = Reconciler(window: window)
        r.ingest(event(.open, 1, at: t0, k))
        r.ingest(event(.close, 2, at: t0 + ms, other))
        r.ingest(event(.close, 1, at: t0 + 2 * ms, k))
        r.ingest(event(.open, 2, at: t0 + 3 * ms, other))
        let batch = try r.mustFlush(now: t0 + 3 * ms + window)
        #expect(batch.counters.transientBindings == [.tcp: 1])
        #expect(batch.counters.orphanCloses == [.udp: 1])
        #expect(batch.changes.map(\.action) == [.insert])
        #expect(r.rows.keys.sorted() == [other])
    }
}

/// When the next binding is published: the deadline the capture loop sleeps until.
@Suite struct DeadlineTests {
    /// Transient sockets before a listener neither delay nor advance its deadline: it is the
    /// listener's own (a deadline stuck on a dropped event would keep the loop spinning).
    @Test func transientsAheadDoNotSetTheDeadline() throws {
        var r = Reconciler(window: window)
        #expect(r.nextDue == nil)
        let t0: UInt64 = 1_000 * ms
        for i in 0..<50 {
            r.ingest(event(.open, UInt64(i), at: t0 + UInt64(i) * ms, key(UInt16(20_000 + i))))
            r.ingest(event(.close, UInt64(i), at: t0 + UInt64(i) * ms + ms / 2, key(UInt16(20_000 + i))))
        }
        #expect(r.nextDue == nil, "only transients buffered: nothing to publish")
        r.ingest(event(.open, 999, at: t0 + 60 * ms, key(8080)))
        #expect(r.nextDue == t0 + 60 * ms + window)
        // A young socket ahead of the listener that turns out transient moves the deadline on.
        r.ingest(event(.open, 1000, at: t0 + 70 * ms, key(9090)))
        r.ingest(event(.close, 999, at: t0 + 80 * ms, key(8080)))
        #expect(r.nextDue == t0 + 70 * ms + window)
        let batch = try r.mustFlush(now: t0 + 70 * ms + window)
        #expect(batch.changes.map(\.row.key) == [key(9090)])
        #expect(r.nextDue == nil)
    }
}
