import Testing
import PortwatchCore
import PortwatchPipeline

/// The capture loop on fake kernel events, a fake ledger and a fake clock: no root, no kernel.
@Suite struct CapturePipelineTests {
    @Test func readyOnlyAfterTheSnapshotIsAppliedAndWritten() throws {
        let rig = try Rig { _, lister, _ in lister.live = [LiveSocket(cookie: 7, key: key(22), owner: Owner(pid: 1, comm: "sshd", uid: 0), state: .listen)] }
        #expect(rig.pipeline.phase == .starting)
        rig.ledger.failing = true
        rig.pipeline.step()
        #expect(rig.lister.calls == 1)
        #expect(rig.pipeline.phase == .snapshotApplied, "the snapshot is reconciled but not written: not ready")
        #expect(rig.kernel.remembered.map(\.cookie) == [7], "sockets older than the programs are seeded into the kernel")
        rig.ledger.failing = false
        rig.run(for: rig.pipeline.schedule.writeRetry + 0.1)
        #expect(rig.pipeline.phase == .ready)
        #expect(rig.ledger.changes == ["insert 22"])
        #expect(rig.ledger.extras.first == [CounterEntry(name: CounterEntry.resyncCorrections, label: "insert", value: 1)])
    }

    /// A transient listener that took its port before the snapshot and let it go before the
    /// snapshot was applied: the snapshot lists it, its events are gone (dropped as transient),
    /// and the table must not take it as a port the event path missed.
    @Test func aTransientThatEndsWhileTheSnapshotIsTakenIsNoCorrection() throws {
        let rig = try Rig { kernel, lister, _ in
            lister.live = [LiveSocket(cookie: 5, key: key(7000), owner: Owner(pid: 42, comm: "server", uid: 0), state: .listen)]
            kernel.queued = [[]]  // the step's own poll: nothing yet
        }
        rig.kernel.queued.append([rig.event(.open, 5, 7000), rig.event(.close, 5, 7000)])  // raced with the snapshot
        rig.pipeline.step()
        rig.run(for: 1)
        #expect(rig.ledger.changes.isEmpty, "no row for a socket that is gone")
        #expect(rig.ledger.extras.flatMap { $0 }.allSatisfy { $0.name != CounterEntry.resyncCorrections })
        #expect(rig.ledger.applied.map { $0.counters.transientBindings[.tcp] ?? 0 }.reduce(0, +) == 1, "counted as a transient")
        #expect(rig.kernel.forgotten == [5], "the seeded entry of the released socket goes")
    }

    @Test func aFailedSnapshotIsRetriedAndKeepsItNotReady() throws {
        let rig = try Rig()
        rig.lister.failing = true
        rig.pipeline.step()
        #expect(rig.pipeline.phase == .starting)
        rig.lister.failing = false
        rig.run(for: rig.pipeline.schedule.snapshotRetry - 1)
        #expect(rig.lister.calls == 1, "not retried before snapshotRetry")
        rig.run(for: 1.1)
        #expect(rig.lister.calls == 2)
        #expect(rig.pipeline.phase == .ready)
    }

    @Test func transientInsideTheWindowIsCountedNeverWritten() throws {
        let rig = try Rig()
        rig.pipeline.step()
        rig.deliver([rig.event(.open, 1, 8080)])
        rig.clock.advance(0.05)
        rig.deliver([rig.event(.close, 1, 8080)])
        rig.run(for: 1)
        #expect(rig.ledger.changes.isEmpty)
        let transients = rig.ledger.applied.map { $0.counters.transientBindings[.tcp] ?? 0 }.reduce(0, +)
        #expect(transients == 1)
        #expect(rig.ledger.transients.map(\.key.port) == [8080], "recorded for the history")
    }

    /// Transients the policy does not allow are counted by protocol and exposure; allowed ones are not.
    /// Folded transients reach the ledger when their interval ends, and at the latest on stop.
    @Test func transientsAreJudgedByThePolicyAndFoldedRecordsWritten() throws {
        let rig = try Rig(allowed: { $0.key.port == 8080 })
        rig.pipeline.step()
        for (cookie, port) in [(UInt64(1), UInt16(8080)), (2, 4444), (3, 4445), (4, 4446)] {
            rig.deliver([rig.event(.open, cookie, port)])
            rig.clock.advance(0.001)
            rig.deliver([rig.event(.close, cookie, port)])
        }
        rig.run(for: 1)
        #expect(rig.ledger.extra(.unexpectedTransientBindings, "tcp/loopback") == 3)
        #expect(rig.ledger.transients.map(\.count) == [1], "the first at once, the rest of the owner folded")
        rig.run(for: 60)
        #expect(rig.ledger.transients.map(\.count) == [1, 3])
        #expect(rig.ledger.transients.last.map { "\($0.key.port)-\($0.portMax)" } == "4444-4446")
        rig.deliver([rig.event(.open, 9, 4447)])
        rig.clock.advance(0.001)
        rig.deliver([rig.event(.close, 9, 4447)])
        rig.deliver([rig.event(.open, 10, 4448)])
        rig.clock.advance(0.001)
        rig.deliver([rig.event(.close, 10, 4448)])
        rig.pipeline.finish()
        #expect(rig.ledger.transients.reduce(0) { $0 + $1.count } == 6, "stopping writes the folds still open")
    }

    /// Rows and transient records are named after the cgroup of the process that took the port;
    /// sockets found by a snapshot, after their process.
    @Test func rowsAndTransientsAreNamedAfterTheirCgroup() throws {
        let rig = try Rig { _, lister, _ in lister.live = [LiveSocket(cookie: 7, key: key(22), owner: Owner(pid: 1, comm: "sshd", uid: 0), state: .listen)] }
        rig.attributor.byPid[1] = Attribution(unit: "ssh.service")
        rig.attributor.byCgroup[5] = Attribution(unit: "web.service")
        rig.pipeline.step()
        rig.deliver([rig.event(.open, 1, 8080, cgroup: 5), rig.event(.open, 2, 4444, cgroup: 5)])
        rig.clock.advance(0.001)
        rig.deliver([rig.event(.close, 2, 4444, cgroup: 5)])
        rig.run(for: 1)
        let rows = rig.ledger.applied.flatMap(\.changes).map { "\($0.row.key.port) \($0.row.owner.attribution.unit)" }
        #expect(rows == ["22 ssh.service", "8080 web.service"])
        #expect(rig.ledger.transients.map { "\($0.key.port) \($0.owner.attribution.unit)" } == ["4444 web.service"])
    }

    /// A policy that allows a service allows its transient listeners, and folded records are
    /// named after their cgroup like the first one.
    @Test func transientsAreJudgedAndFoldedByTheirService() throws {
        let rig = try Rig(allowed: { $0.owner.attribution.unit == "web.service" })
        rig.attributor.byCgroup[5] = Attribution(unit: "web.service")
        rig.attributor.byCgroup[6] = Attribution(unit: "batch.service")
        rig.pipeline.step()
        for (cookie, port, cgroup) in [(UInt64(1), UInt16(4444), UInt64(5)), (2, 4445, 5), (3, 4446, 5), (4, 5555, 6)] {
            rig.deliver([rig.event(.open, cookie, port, cgroup: cgroup)])
            rig.clock.advance(0.001)
            rig.deliver([rig.event(.close, cookie, port, cgroup: cgroup)])
        }
        rig.run(for: 61)
        #expect(rig.ledger.extra(.unexpectedTransientBindings, "tcp/loopback") == 1, "only the other service's")
        let records = rig.ledger.transients.map { "\($0.ports) x\($0.count) \($0.owner.attribution.unit)" }
        #expect(records.sorted() == ["4444 x1 web.service", "4445,4446 x2 web.service", "5555 x1 batch.service"].sorted())
    }

    @Test func whatTheRecordCapLeavesOutIsCounted() throws {
        let rig = try Rig(transients: .init(recordsPerMinute: 0))
        rig.pipeline.step()
        rig.deliver([rig.event(.open, 1, 8080)])
        rig.deliver([rig.event(.close, 1, 8080)])
        rig.run(for: 1)
        #expect(rig.ledger.transients.isEmpty)
        #expect(rig.ledger.extra(.transientRecordsDropped) == 1)
        #expect(rig.ledger.extra(.unexpectedTransientBindings, "tcp/loopback") == 0, "no policy, nothing unexpected")
    }

    @Test func aBindingIsWrittenOnceTheWindowHasPassed() throws {
        let rig = try Rig()
        rig.pipeline.step()
        rig.deliver([rig.event(.open, 1, 8080)])
        rig.run(for: 0.15)
        #expect(rig.ledger.changes.isEmpty, "not before the window")
        rig.run(for: 0.1)
        #expect(rig.ledger.changes == ["insert 8080"])
    }

    @Test func aBindingIsPublishedWhenItsWindowExpiresNotAtTheNextTick() throws {
        let rig = try Rig()
        rig.pipeline.step()
        rig.run(for: 0.03)  // somewhere inside a 50 ms tick
        rig.deliver([rig.event(.open, 1, 8080)])
        #expect(rig.kernel.timeouts.last.map { $0 <= 50 } == true)
        rig.clock.advance(0.199)
        rig.pipeline.step()
        #expect(rig.kernel.timeouts.last == 1, "the poll waits only until the window expires")
        #expect(rig.ledger.changes.isEmpty)
        rig.clock.advance(0.0025) // past the window, and past the minimum gap between writes
        rig.pipeline.step()
        #expect(rig.ledger.changes == ["insert 8080"], "written as soon as the window has passed, not at the next 50 ms tick")
    }

    /// A quiet loop tells the kernel it is idle (the first event wakes it) and then sleeps
    /// until its next deadline, the health check about a second away, instead of a tick. An
    /// event makes it busy again, and its binding is still published when its window expires.
    @Test func aQuietLoopSleepsUntilItsNextDeadlineAndAnEventWakesIt() throws {
        let rig = try Rig()
        let tick = Int32(rig.pipeline.schedule.tick * 1000)
        rig.run(for: 1)
        #expect(rig.kernel.idle, "told the kernel it is idle")
        rig.pipeline.step()
        let slept = try #require(rig.kernel.timeouts.last)
        #expect(slept > tick && slept <= 1000, "sleeps past a tick, until the next health check")
        rig.deliver([rig.event(.open, 1, 8080)])
        #expect(!rig.kernel.idle, "busy again once an event arrived")
        rig.pipeline.step()
        #expect(rig.kernel.timeouts.last.map { $0 <= tick } == true)
        rig.run(for: 0.25)
        #expect(rig.ledger.changes == ["insert 8080"])
    }

    /// While a binding waits out its window, or a write waits to be retried, the loop keeps
    /// polling every tick.
    @Test func aLoopWithSomethingWaitingNeverSleeps() throws {
        let rig = try Rig(window: 2_000 * ms)
        rig.run(for: 1)
        rig.deliver([rig.event(.open, 1, 8080)])
        for _ in 0..<30 {
            rig.clock.advance(0.05)
            rig.pipeline.step()
            #expect(!rig.kernel.idle)
        }
        #expect(rig.kernel.timeouts.suffix(30).allSatisfy { $0 <= Int32(rig.pipeline.schedule.tick * 1000) })
        rig.ledger.failing = true
        rig.run(for: 1)
        #expect(!rig.kernel.idle, "a refused write is retried every tick")
        rig.ledger.failing = false
        rig.run(for: 2)
        #expect(rig.ledger.changes == ["insert 8080"])
        #expect(rig.kernel.idle, "idle once written")
    }

    @Test func aLoneChangeRightAfterAWriteIsWrittenAtOnce() throws {
        let rig = try Rig(window: 0)
        rig.pipeline.step()
        rig.deliver([rig.event(.open, 1, 8080)])
        #expect(rig.ledger.changes == ["insert 8080"])
        rig.clock.advance(0.0005)  // well inside the gap after that write
        rig.deliver([rig.event(.close, 1, 8080)])
        #expect(rig.ledger.changes == ["insert 8080", "delete 8080"], "a few events wait for no gap")
    }

    @Test func aBurstWaitsOutTheWriteGapAsleep() throws {
        let rig = try Rig(window: 0)
        rig.pipeline.step()
        rig.deliver([rig.event(.open, 1, 8080)])
        let writes = rig.ledger.applied.count
        rig.clock.advance(0.0005)
        let burst = (2..<200).map { rig.event(.open, UInt64($0), UInt16(9000 + $0)) }
        rig.deliver(burst)
        #expect(rig.ledger.applied.count == writes, "a burst right after a write waits for the gap")
        rig.pipeline.step()
        #expect(rig.kernel.timeouts.last == 2, "the poll sleeps until the gap has passed (1.5 ms, in whole ms), not 0 in a loop")
        rig.clock.advance(0.0016)
        rig.pipeline.step()
        #expect(rig.ledger.applied.count == writes + 1)
        #expect(rig.ledger.rows.count == 199, "the whole burst in one write")
    }

    @Test func lostEventsAreCountedAndTriggerAResync() throws {
        let rig = try Rig()
        rig.pipeline.step()
        #expect(rig.lister.calls == 1)
        rig.kernel.kernelHealth.lost = 12
        rig.run(for: rig.pipeline.schedule.healthCheck + 0.1)
        #expect(rig.lister.calls == 2, "lost events schedule a resync at once, not at --resync.interval")
        #expect(rig.ledger.extras.flatMap { $0 }.contains(CounterEntry(name: CounterEntry.eventsLost, label: "", value: 12)))
        rig.run(for: 2)
        #expect(rig.lister.calls == 2, "no resync without new losses")
    }

    @Test func lossesBeforeStartAreNotCounted() throws {
        let rig = try Rig { kernel, _, _ in kernel.kernelHealth.lost = 5 }
        rig.run(for: 2)
        #expect(!rig.ledger.extras.flatMap { $0 }.contains { $0.name == CounterEntry.eventsLost })
    }

    @Test func aRefusedWriteIsKeptAndRetriedInOrder() throws {
        let rig = try Rig()
        rig.pipeline.step()
        rig.ledger.failing = true
        rig.deliver([rig.event(.open, 1, 1001)])
        rig.run(for: 0.3)
        rig.deliver([rig.event(.open, 2, 1002)])
        rig.run(for: 0.3)
        rig.deliver([rig.event(.close, 1, 1001)])
        rig.run(for: 0.3)
        #expect(rig.ledger.applied.isEmpty)
        #expect(rig.pipeline.health.storeErrors >= 1)
        let attempts = rig.ledger.attempts
        rig.run(for: 0.5)
        #expect(rig.ledger.attempts <= attempts + 1, "a full disk is retried once per writeRetry, not every tick")
        rig.ledger.failing = false
        rig.run(for: rig.pipeline.schedule.writeRetry + 0.1)
        #expect(rig.ledger.changes == ["insert 1001", "insert 1002", "delete 1001"], "every batch, in the order it was made")
        #expect(rig.ledger.rows.keys.map(\.port) == [1002])
    }

    @Test func stoppingWritesWhatIsStillInTheWindow() throws {
        let rig = try Rig()
        rig.pipeline.step()
        rig.deliver([rig.event(.open, 1, 9090)])
        #expect(rig.ledger.changes.isEmpty)
        rig.pipeline.finish()
        #expect(rig.ledger.changes == ["insert 9090"])
        #expect(rig.kernel.closed, "the programs are detached")
        #expect(rig.pipeline.phase == .stopping)
    }

    @Test func anOwnerThatExitsHasItsHoldersLookedUpInItsNamespaceWithoutAResync() throws {
        let rig = try Rig()
        rig.pipeline.step()
        rig.deliver([rig.event(.open, 1, 8080)])
        rig.run(for: 0.3)
        #expect(rig.kernel.watched == [42], "the kernel is told whose exit to report")
        let calls = rig.lister.calls
        // The server exits; its child holds the socket now.
        rig.processes.everyone = false
        rig.processes.running = [43: "worker"]
        rig.lister.live = [LiveSocket(cookie: 1, key: key(8080), owner: Owner(pid: 43, comm: "worker", uid: 0), state: .listen)]
        rig.kernel.kernelHealth.ownerChanges = 1
        rig.run(for: rig.pipeline.schedule.healthCheck + 0.1)
        #expect(rig.lister.calls == calls + 1, "an owner's exit brings a lookup that names the new holder")
        #expect(rig.lister.asked.last == [ns0], "of the namespace of its rows only")
        #expect(rig.pipeline.health.resyncs == 1, "not a resync")
        #expect(rig.pipeline.health.holderChecks == 1)
        #expect(rig.ledger.rows[key(8080)]?.owner.pid == 43)
        #expect(rig.ledger.applied.last?.changes.map(\.reason) == [.holder])
    }

    /// A VXLAN socket: the `ip` that brought the device up bound it and exited at once, and no
    /// process holds it. The kernel does.
    @Test func aSocketNoProcessHoldsIsTheKernelsOnceItsCreatorIsGone() throws {
        let rig = try Rig()
        rig.pipeline.step()
        rig.processes.everyone = false   // gone before it could be watched: no exit is reported
        rig.lister.live = [LiveSocket(cookie: 1, key: key(4789, .udp), owner: .kernel(), state: .bound)]
        var open = rig.event(.open, 1, 4789)
        open.key = key(4789, .udp)
        open.state = .bound
        rig.deliver([open])
        rig.run(for: rig.pipeline.schedule.healthCheck + 0.5)
        let row = try #require(rig.ledger.rows[key(4789, .udp)])
        #expect(row.owner.isKernel && row.owner.comm == "kernel" && row.owner.pid == 0, "\(row.owner)")
        #expect(rig.pipeline.health.resyncs == 1)
        #expect(rig.ledger.extra(CounterEntry.resyncCorrections, "insert") + rig.ledger.extra(CounterEntry.resyncCorrections, "delete") == 0)
    }

    /// A namespace the snapshot could not enter or dump (its only process just exited, a dump
    /// failed) is not a namespace whose ports all closed.
    @Test func aResyncChangesNothingInANamespaceItCouldNotList() throws {
        let rig = try Rig(resync: 10)
        rig.pipeline.step()
        rig.deliver([rig.event(.open, 7, 8080)])
        rig.run(for: 1)
        #expect(rig.ledger.changes == ["insert 8080"])
        rig.lister.live = [LiveSocket(cookie: 7, key: key(8080), owner: Owner(pid: 42, comm: "server", uid: 0), state: .listen)]
        rig.lister.unlisted = [ns0]
        rig.kernel.map = [7: RememberedSocket(transport: .tcp, state: .listen, netns: ns0)]
        rig.run(for: 10)
        #expect(rig.pipeline.health.resyncs == 2)
        #expect(rig.ledger.changes == ["insert 8080"], "nothing deleted in a namespace not listed")
        #expect(rig.kernel.forgotten.isEmpty, "nor its map entries taken for stale")
        // Listed again, and the socket really gone: now it closes.
        rig.lister.unlisted = []
        rig.lister.live = []
        rig.run(for: 10)
        #expect(rig.ledger.changes == ["insert 8080", "delete 8080"])
    }

    @Test func periodicResyncFollowsTheSchedule() throws {
        let rig = try Rig(resync: 10)
        rig.pipeline.step()
        rig.run(for: 9.9)
        #expect(rig.lister.calls == 1)
        rig.run(for: 0.2)
        #expect(rig.lister.calls == 2)
        #expect(rig.pipeline.health.resyncs == 2)
    }

    @Test func socketsTheKernelCannotRememberAreCounted() throws {
        let rig = try Rig { kernel, lister, _ in
            kernel.refuseRemember = true
            lister.live = [LiveSocket(cookie: 3, key: key(53, .udp), owner: Owner(pid: 9, comm: "dns", uid: 0), state: .bound)]
        }
        rig.kernel.kernelHealth.mapFull = 2
        rig.pipeline.step()
        rig.run(for: rig.pipeline.schedule.healthCheck + 0.1)
        #expect(rig.pipeline.health.kernel.mapFull >= 3, "2 from the kernel side, 1 refused seed")
    }

    /// The kernel does not always run the release program (about one socket in ten million in
    /// a flood): the socket's entry would stay in its map for good. A resync removes exactly the
    /// entries whose socket it finds gone, and none it cannot be sure of.
    @Test func theKernelsEntriesOfSocketsGoneUnreportedAreRemovedByAResync() throws {
        let owner = Owner(pid: 9, comm: "server", uid: 0)
        let rig = try Rig { kernel, lister, _ in
            lister.seesBoundTCP = false
            lister.live = [LiveSocket(cookie: 101, key: key(53, .udp), owner: owner, state: .bound)]
            kernel.map = [
                100: RememberedSocket(transport: .udp, state: .bound, netns: ns0),                // gone, release never reported
                101: RememberedSocket(transport: .udp, state: .bound, netns: ns0),                // listed: alive
                102: RememberedSocket(transport: .udp, state: .bound, client: true, netns: ns0),  // a client: never listed
                103: RememberedSocket(transport: .tcp, state: .bound, netns: ns0),                // a snapshot cannot see it here
                104: RememberedSocket(transport: .tcp, state: .bound, netns: ns0),                // listens after the snapshot
                105: RememberedSocket(transport: .tcp, state: .listen, netns: ns0),               // bound while listed, listening again after
            ]
            // The second read (after the snapshot): 104 listens now, 106 is new.
            kernel.mapChanges = [[:], [104: RememberedSocket(transport: .tcp, state: .listen, netns: ns0), 106: RememberedSocket(transport: .udp, state: .bound, netns: ns0)]]
            kernel.queued = [[]]  // the step's own poll
        }
        // Raced with the snapshot: 105 was shut down (a bound socket again, which this kernel's
        // snapshot cannot list) and listened again.
        var bound = rig.event(.open, 105, 9000)
        bound.state = .bound
        rig.kernel.queued.append([bound, rig.event(.open, 105, 9000)])
        rig.pipeline.step()
        #expect(rig.kernel.mapReads == 2, "read before and after the snapshot")
        #expect(rig.kernel.forgotten == [100])
        #expect(Set(rig.kernel.map.keys) == [101, 102, 103, 104, 105, 106])
        #expect(rig.pipeline.health.staleEntries == 1)
        rig.run(for: 1)
        #expect(rig.pipeline.health.staleEntries == 1, "counted once")
    }

    @Test func aHeldRowWhoseReleaseWentUnreportedIsClosedAndItsEntryRemoved() throws {
        let rig = try Rig(resync: 10)
        rig.pipeline.step()
        rig.deliver([rig.event(.open, 7, 8080)])
        rig.run(for: 1)
        #expect(rig.ledger.changes == ["insert 8080"])
        // The socket is gone; the kernel reported nothing and its entry stayed.
        rig.kernel.map = [7: RememberedSocket(transport: .tcp, state: .listen, netns: ns0)]
        rig.run(for: 10)
        #expect(rig.ledger.changes == ["insert 8080", "delete 8080"])
        #expect(rig.kernel.forgotten == [7])
        #expect(rig.pipeline.health.staleEntries == 1)
    }

    @Test func historyIsPrunedToTheRetention() throws {
        let rig = try Rig()
        rig.pipeline.step()
        #expect(rig.ledger.prunedBefore == [rig.clock.wallNanoseconds() - 7 * 86_400_000_000_000])
        rig.run(for: 10)
        #expect(rig.ledger.prunedBefore.count == 1, "once per hour")
    }

    @Test func tickIsAQuarterOfTheWindowWithinBounds() {
        #expect(Schedule(window: 200 * ms, resyncInterval: 1).tick == 0.05)
        #expect(Schedule(window: 40 * ms, resyncInterval: 1).tick == 0.01)
        #expect(Schedule(window: 0, resyncInterval: 1).tick == 0.005)
    }
}
