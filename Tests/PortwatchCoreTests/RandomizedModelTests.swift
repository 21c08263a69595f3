import Foundation
import Testing
import PortwatchCore

/// The reconciler against a small reference model that replays events one at a time, over
/// many generated event sequences. The seed is printed; PORTWATCH_SEED=N replays a run.
@Suite struct RandomizedModelTests {
    /// SplitMix64: small, fast, reproducible across platforms.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E3779B97F4A7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
            z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
            return z ^ (z >> 31)
        }
    }

    struct Model {
        var rows: [BindingKey: (owner: Owner, state: SocketState, holders: Int)] = [:]
        var sockets: [UInt64: BindingKey] = [:]
        var orphans: [TransportProtocol: UInt64] = [:]

        mutating func apply(_ e: PortEvent) {
            switch e.kind {
            case .open:
                let known = sockets[e.cookie] == e.key
                var holders = rows[e.key]?.holders ?? 0
                if !known { holders += 1; sockets[e.cookie] = e.key }
                rows[e.key] = (Owner(e.process), e.state, holders)
            case .close:
                let known = sockets.values.filter { $0 == e.key }.count
                guard var row = rows[e.key], sockets[e.cookie] == e.key || row.holders > known else {
                    orphans[e.key.transport, default: 0] += 1
                    sockets[e.cookie] = nil
                    return
                }
                sockets[e.cookie] = nil
                row.holders -= 1
                rows[e.key] = row.holders > 0 ? row : nil
            }
        }
    }

    static let keys = [
        BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "0.0.0.0", port: 80),
        BindingKey(netns: 1, transport: .udp, family: .ipv6, address: "::", port: 53),
        BindingKey(netns: 2, transport: .tcp, family: .ipv6, address: "::1", port: 80),
    ]

    /// One sequence: an initial table, then events as the kernel would emit them.
    static func scenario(_ g: inout Generator, window: UInt64) -> (rows: [BindingKey: Binding], sockets: [UInt64: BindingKey], events: [PortEvent]) {
        var rows: [BindingKey: Binding] = [:]
        var sockets: [UInt64: BindingKey] = [:]
        var nextCookie: UInt64 = 1
        for key in keys where Bool.random(using: &g) {
            let holders = Int.random(in: 1...2, using: &g)
            rows[key] = Binding(key: key, owner: Owner(pid: 1, comm: "init", uid: 0), state: .listen,
                                holders: holders, firstSeen: 0, lastChange: 0)
            // Sometimes one holder is anonymous: a row from an older table or a lost open.
            let anonymous = Int.random(in: 0...1, using: &g)
            for _ in 0..<(holders - anonymous) { sockets[nextCookie] = key; nextCookie += 1 }
        }
        let initialSockets = sockets
        // Live sockets the sequence may close, open sockets of its own, and stray closes.
        var live = Array(sockets.keys).sorted()
        // Sockets that connected: clients, which may become listeners again (connect failed).
        var clients: [UInt64] = []
        var events: [PortEvent] = []
        var time: UInt64 = 1_000 * window
        for _ in 0..<Int.random(in: 1...30, using: &g) {
            time += UInt64.random(in: 0...(2 * window), using: &g)
            let pid = Int32.random(in: 100...120, using: &g)
            let owner = Owner(pid: pid, comm: "p\(pid)", uid: 0)
            switch Int.random(in: 0..<12, using: &g) {
            case 0..<4: // a new socket takes a port (bind, sometimes then listen)
                let key = keys.randomElement(using: &g)!
                let cookie = nextCookie
                nextCookie += 1
                events.append(PortEvent(kind: .open, cookie: cookie, time: time, key: key, owner: owner, state: .bound))
                if key.transport == .tcp && Bool.random(using: &g) {
                    time += UInt64.random(in: 0...window, using: &g)
                    events.append(PortEvent(kind: .open, cookie: cookie, time: time, key: key, owner: owner, state: .listen))
                }
                live.append(cookie)
                sockets[cookie] = key
            case 4..<8: // a live socket is released
                guard !live.isEmpty else { continue }
                let cookie = live.remove(at: Int.random(in: 0..<live.count, using: &g))
                events.append(PortEvent(kind: .close, cookie: cookie, time: time, key: sockets[cookie]!, owner: owner, state: .bound))
            case 8: // a release whose open was never seen (lost, or before start)
                let key = keys.randomElement(using: &g)!
                events.append(PortEvent(kind: .close, cookie: 1_000_000 + nextCookie, time: time, key: key, owner: owner, state: .bound))
                nextCookie += 1
            case 10: // a live socket connects: a client from now on
                guard !live.isEmpty else { continue }
                let cookie = live.remove(at: Int.random(in: 0..<live.count, using: &g))
                events.append(PortEvent(kind: .close, cookie: cookie, time: time, key: sockets[cookie]!, owner: owner, state: .bound,
                                        reason: .connected))
                clients.append(cookie)
            case 11: // a client's connection failed or ended: bound to its port again
                guard !clients.isEmpty else { continue }
                let cookie = clients.remove(at: Int.random(in: 0..<clients.count, using: &g))
                events.append(PortEvent(kind: .open, cookie: cookie, time: time, key: sockets[cookie]!, owner: owner, state: .bound))
                live.append(cookie)
            default: // a live socket changes its owner's view (listen again)
                guard let cookie = live.randomElement(using: &g), let key = sockets[cookie] else { continue }
                events.append(PortEvent(kind: .open, cookie: cookie, time: time, key: key, owner: owner, state: .listen))
            }
        }
        return (rows, initialSockets, events)
    }

    @Test func reconcilerMatchesReferenceModel() {
        let seed = ProcessInfo.processInfo.environment["PORTWATCH_SEED"].flatMap(UInt64.init)
            ?? UInt64.random(in: 0...UInt64.max)
        print("RandomizedModelTests seed: \(seed) (replay with PORTWATCH_SEED=\(seed))")
        var g = Generator(state: seed)
        let window: UInt64 = 200_000_000
        for iteration in 0..<10_000 {
            let (rows, sockets, events) = Self.scenario(&g, window: window)

            // The reconciler, fed in chunks, flushed at times no later than the next event.
            var r = Reconciler(window: window, rows: rows, sockets: sockets)
            var counters = Counters()
            var inserts = 0, deletes = 0
            // What a ledger holds after the batches: the rows as written, and its sockets table.
            var ledger = (rows: rows, sockets: sockets)
            func write(_ batch: Batch) {
                counters.add(batch.counters)
                for change in batch.changes { ledger.rows[change.row.key] = change.action == .delete ? nil : change.row }
                for (cookie, key) in batch.socketsAdded { ledger.sockets[cookie] = key }
                for cookie in batch.socketsRemoved { ledger.sockets[cookie] = nil }
            }
            for (i, event) in events.enumerated() {
                r.ingest(event)
                let nextTime = i + 1 < events.count ? events[i + 1].time : event.time + 3 * window
                if Int.random(in: 0..<3, using: &g) == 0, nextTime > event.time {
                    let now = UInt64.random(in: event.time..<nextTime, using: &g)
                    if let batch = r.flush(now: now) { write(batch) }
                }
            }
            if let batch = r.flushAll() { write(batch) }
            inserts = Int(counters.actions[.insert] ?? 0)
            deletes = Int(counters.actions[.delete] ?? 0)

            // The model: decide transients by lifetime, then replay the rest one at a time. A
            // socket's life runs from its first open to its close; a socket that opens again
            // after a close (a client bound again) starts a new life. A life that began before
            // the sequence (a known socket) is never transient; one that ends by connecting
            // within the window was a client, not a transient listener.
            var model = Model()
            for (key, row) in rows { model.rows[key] = (row.owner, row.state, row.holders) }
            model.sockets = sockets
            struct Life: Hashable { var cookie: UInt64, number: Int }
            var lifeNumber: [UInt64: Int] = [:]
            var firstOpen: [Life: UInt64] = [:]
            var transient = Set<Life>()
            var transientCount: [TransportProtocol: UInt64] = [:]
            var clientCount: [TransportProtocol: UInt64] = [:]
            var lives: [Life] = []
            for e in events {
                let life = Life(cookie: e.cookie, number: lifeNumber[e.cookie, default: 0])
                lives.append(life)
                let young = life.number > 0 || sockets[e.cookie] == nil
                if e.kind == .open && young && firstOpen[life] == nil { firstOpen[life] = e.time }
                if e.kind == .close {
                    if let opened = firstOpen[life], e.time - opened < window {
                        transient.insert(life)
                        if e.reason == .connected { clientCount[e.key.transport, default: 0] += 1 } else { transientCount[e.key.transport, default: 0] += 1 }
                    }
                    lifeNumber[e.cookie] = life.number + 1
                }
            }
            for (e, life) in zip(events, lives) where !transient.contains(life) { model.apply(e) }

            let context = "seed \(seed), iteration \(iteration)"
            let actual = r.rows.mapValues { ($0.owner, $0.state, $0.holders) }
            #expect(actual.keys.sorted() == model.rows.keys.sorted(), "\(context)")
            for (key, row) in model.rows {
                guard let a = actual[key] else { continue }
                #expect(a.0 == row.owner && a.1 == row.state && a.2 == row.holders, "\(context) \(key)")
            }
            #expect(r.sockets == model.sockets, "\(context)")
            // A restart from the ledger knows what the reconciler knew: every row as it is,
            // every socket, kept in its row or listed apart, never both.
            #expect(ledger.rows == r.rows, "\(context): the rows written are the rows held")
            let kept = ledger.rows.values.filter { $0.socket != 0 }
            #expect(kept.allSatisfy { ledger.sockets[$0.socket] == nil }, "\(context): a socket a row keeps is not listed too")
            #expect(Reconciler(window: window, rows: ledger.rows, sockets: ledger.sockets).sockets == r.sockets,
                    "\(context): the sockets known after a restart")
            #expect(counters.transientBindings == transientCount, "\(context)")
            #expect(counters.clientBindings == clientCount, "\(context)")
            #expect(counters.orphanCloses == model.orphans, "\(context)")
            #expect(counters.events[.open, default: 0] == UInt64(events.filter { $0.kind == .open }.count), "\(context)")
            #expect(counters.events[.close, default: 0] == UInt64(events.filter { $0.kind == .close }.count), "\(context)")
            #expect(inserts - deletes == model.rows.count - rows.count, "\(context): inserts and deletes add up")
            // One reproducible failure is enough to report.
            let agrees = actual.keys.sorted() == model.rows.keys.sorted() && r.sockets == model.sockets && ledger.rows == r.rows
                && Reconciler(window: window, rows: ledger.rows, sockets: ledger.sockets).sockets == r.sockets
                && counters.transientBindings == transientCount && counters.clientBindings == clientCount
            if !agrees {
                print("initial rows: \(rows.mapValues(\.holders)) sockets: \(sockets)")
                print("transient \(counters.transientBindings) vs \(transientCount); clients \(counters.clientBindings) vs \(clientCount)")
                print("actual: \(r.rows.mapValues { ($0.holders, $0.owner.pid) }) sockets \(r.sockets)")
                print("ledger: \(ledger.rows.mapValues { ($0.holders, $0.socket) }) sockets \(ledger.sockets)")
                print("model: \(model.rows.mapValues { ($0.holders, $0.owner.pid) }) sockets \(model.sockets)")
                for e in events { print("  \(e.kind)/\(e.reason) cookie=\(e.cookie) t=\((e.time - 1_000 * window) / 1_000_000)ms \(e.key) \(e.state)") }
            }
            if !agrees { return }
        }
    }
}
