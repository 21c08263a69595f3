import Testing
import PortwatchCore

@Suite struct ResyncTests {
    let a = key(22), b = key(80), c = key(443)
    let t0: UInt64 = 9_000 * ms
    // The holder the rows record (row() defaults), so that only membership differs.
    let owner = Owner(pid: 50, comm: "old", uid: 0)

    @Test func staleRowsGoAndMissingRowsCome() throws {
        var r = Reconciler(window: window, rows: [a: row(a), b: row(b)], sockets: [1: a, 2: b])
        let (batch, corrections) = r.resync(live: [LiveSocket(cookie: 1, key: a, owner: owner, state: .listen), LiveSocket(cookie: 3, key: c, owner: owner, state: .listen)], now: t0)
        #expect(corrections == [.insert: 1, .delete: 1])
        #expect(Set(r.rows.keys) == [a, c])
        #expect(r.sockets == [1: a, 3: c])
        #expect(batch?.counters.events.isEmpty == true, "synthetic events are not kernel events")
        #expect(batch?.counters.orphanCloses.isEmpty == true)
        #expect(batch?.changes.map { "\($0.action):\($0.reason?.rawValue ?? "")" }.sorted() == ["delete:resync", "insert:resync"],
                "the history says the resync, not the kernel, made these changes")
    }

    @Test func rowsTheSnapshotCannotSeeAreLeftToTheEventPath() throws {
        var bound = row(b)
        bound.state = .bound
        var r = Reconciler(window: window, rows: [a: row(a), b: bound], sockets: [1: a, 2: b])
        // A kernel whose sock_diag does not dump bound TCP sockets: socket 2 is not listed.
        let (_, corrections) = r.resync(live: [LiveSocket(cookie: 1, key: a, owner: owner, state: .listen)], now: t0,
                                        sees: { transport, state in !(transport == .tcp && state == .bound) })
        #expect(corrections.isEmpty)
        #expect(Set(r.rows.keys) == [a, b])
        // A listener the snapshot misses is still stale.
        let (_, again) = r.resync(live: [], now: t0 + 1, sees: { transport, state in !(transport == .tcp && state == .bound) })
        #expect(again == [.delete: 1])
        #expect(Set(r.rows.keys) == [b])
    }

    @Test func theRowNamesTheProcessThatHoldsThePortNow() throws {
        var r = Reconciler(window: window, rows: [a: row(a, pid: 50, comm: "parent")], sockets: [1: a])
        let child = Owner(pid: 77, comm: "worker", uid: 0, attribution: Attribution(unit: "web.service"))
        let (batch, corrections) = r.resync(live: [LiveSocket(cookie: 1, key: a, owner: child, state: .listen)], now: t0)
        #expect(corrections.isEmpty, "a new holder is not a correction")
        #expect(batch?.changes.map { "\($0.action):\($0.reason?.rawValue ?? "")" } == ["update:holder"])
        #expect(r.rows[a]?.owner == child)
        // The same process after exec: same pid, another name.
        let exec = Owner(pid: 77, comm: "sleep", uid: 0)
        _ = r.resync(live: [LiveSocket(cookie: 1, key: a, owner: exec, state: .listen)], now: t0 + 1)
        #expect(r.rows[a]?.owner.comm == "sleep")
        // Nothing changes while the recorded owner still holds one of the key's sockets.
        var group = Reconciler(window: window, rows: [a: row(a, pid: 50, comm: "nginx", holders: 2)], sockets: [1: a, 2: a])
        let (none, _) = group.resync(live: [LiveSocket(cookie: 1, key: a, owner: Owner(pid: 51, comm: "nginx", uid: 0), state: .listen),
                                            LiveSocket(cookie: 2, key: a, owner: Owner(pid: 50, comm: "nginx", uid: 0), state: .listen)],
                                     now: t0)
        #expect(none == nil)
    }

    @Test func agreeingTableNeedsNoCorrection() {
        var r = Reconciler(window: window, rows: [a: row(a)], sockets: [1: a])
        let (batch, corrections) = r.resync(live: [LiveSocket(cookie: 1, key: a, owner: owner, state: .listen)], now: t0)
        #expect(batch == nil)
        #expect(corrections.isEmpty)
    }

    @Test func socketsWithBufferedEventsAreLeftToThem() throws {
        var r = Reconciler(window: window, rows: [a: row(a)], sockets: [1: a])
        // Socket 1 closed and socket 4 opened after the snapshot; their events are still buffered.
        r.ingest(event(.close, 1, at: t0, a))
        r.ingest(event(.open, 4, at: t0, b))
        let (_, corrections) = r.resync(live: [LiveSocket(cookie: 1, key: a, owner: owner, state: .listen)], now: t0)
        #expect(corrections.isEmpty)
        _ = r.flushAll()
        #expect(Set(r.rows.keys) == [b])
    }

    @Test func rowsWithoutKnownSocketsAreRepaired() {
        var r = Reconciler(window: window, rows: [a: row(a, holders: 2)], sockets: [:])
        let (_, corrections) = r.resync(live: [], now: t0)
        #expect(corrections == [.delete: 1])
        #expect(r.rows.isEmpty)
    }
}
