import Testing
import PortwatchCore

/// A socket that connects is a client: it leaves the table (a close with reason `connected`),
/// and if its connection fails while it keeps its port it is a listener again.
@Suite struct ClientTransitionTests {
    let k = key(5000)
    let t0: UInt64 = 1_000 * ms

    @Test func connectingWithinTheWindowIsAClientNotATransientListener() throws {
        var r = Reconciler(window: window)
        r.ingest(event(.open, 2, at: t0, k, state: .bound))
        r.ingest(event(.close, 2, at: t0 + 5 * ms, k, state: .bound, reason: .connected))
        let batch = try r.mustFlush(now: t0 + window)
        #expect(batch.changes.isEmpty)
        #expect(batch.counters.clientBindings == [.tcp: 1])
        #expect(batch.counters.transientBindings.isEmpty)
        #expect(r.rows.isEmpty && r.sockets.isEmpty)
    }

    @Test func aListedSocketThatConnectsIsDeletedWithTheReason() throws {
        var r = Reconciler(window: window, rows: [k: row(k)], sockets: [1: k])
        r.ingest(event(.close, 1, at: t0, k, state: .bound, reason: .connected))
        let batch = try r.mustFlush(now: t0 + window)
        #expect(batch.changes.map(\.action) == [.delete])
        #expect(batch.changes.first?.reason == .connected)
        #expect(batch.counters.orphanCloses.isEmpty)
        #expect(r.rows.isEmpty)
    }

    @Test func aClientBoundAgainIsANewLife() throws {
        var r = Reconciler(window: window, rows: [k: row(k)], sockets: [1: k])
        // Connects, its connect fails 50 ms later (bound again), then it is closed 20 ms later:
        // the second life was a transient listener, and the row goes with the first close.
        r.ingest(event(.close, 1, at: t0, k, state: .bound, reason: .connected))
        r.ingest(event(.open, 1, at: t0 + 50 * ms, k, state: .bound))
        r.ingest(event(.close, 1, at: t0 + 70 * ms, k, state: .bound))
        let batch = try r.mustFlush(now: t0 + 70 * ms + window)
        #expect(batch.changes.map(\.action) == [.delete])
        #expect(batch.changes.first?.reason == .connected)
        #expect(batch.counters.transientBindings == [.tcp: 1])
        #expect(r.rows.isEmpty)
    }

    @Test func aShutDownListenerIsDeletedWithTheReason() throws {
        var r = Reconciler(window: window, rows: [k: row(k)], sockets: [1: k])
        r.ingest(event(.close, 1, at: t0, k, reason: .shutdown))
        let batch = try r.mustFlush(now: t0 + window)
        #expect(batch.changes.map { "\($0.action):\($0.reason.map(\.rawValue) ?? "")" } == ["delete:shutdown"])
    }
}
