import FoundationEssentials
import Dispatch
import Glibc
import Logging
import PortwatchCore
import PortwatchSystem
import Synchronization

/// The capture loop: drain the kernel's events, reconcile them, write batches to the ledger,
/// resync against the kernel's sockets, prune history. Runs on one dedicated thread
/// (`start`), or one `step` at a time (tests, with fake ports and a fake clock).
///
/// Readiness is an explicit phase: `starting` until the first snapshot has been reconciled
/// (`snapshotApplied`), `ready` once everything it produced is written, `stopping` after
/// `stop`. A batch the ledger refuses is kept, with every batch after it, and retried in
/// order; nothing is lost while the process lives.
public final class CapturePipeline: @unchecked Sendable {
    public enum Phase: Int, Sendable, Comparable {
        case starting, snapshotApplied, ready, stopping
        public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    /// Totals of the pipeline's own health, read by scrapes from any thread.
    public struct Health: Sendable, Equatable {
        public var storeErrors: UInt64 = 0
        public var resyncs: UInt64 = 0
        public var kernel = KernelHealth()
        /// Entries of the kernel's map of bound sockets removed by resyncs because their socket
        /// was gone and no release had been reported for it.
        public var staleEntries: UInt64 = 0
        /// Lookups of who holds the ports of owners that exited or exec'd (no resync).
        public var holderChecks: UInt64 = 0

        public init() {}
    }

    private let kernel: KernelEvents
    private let lister: SocketLister
    private let attributor: OwnerAttributor?
    private let processes: ProcessTable
    private let ledger: Ledger
    private let clock: TimeSource
    public let schedule: Schedule
    private let historyRetention: UInt64
    private let logger: Logger

    private var reconciler: Reconciler
    private var transientLog: TransientLog
    /// Whether the policy allows a listener (nil: no policy, nothing is unexpected).
    private let allowed: (@Sendable (Binding) -> Bool)?
    private var unwritten: [(batch: Batch, extra: [CounterEntry])] = []
    /// The events of the last poll (the array is reused).
    private var arrived: [PortEvent] = []
    /// Kernel health already accounted for (lost events are stored as a counter).
    private var kernelSeen = KernelHealth()
    /// Sockets the kernel refused to remember when seeded from a snapshot.
    private var seedRefused: UInt64 = 0
    private var resyncRequested = true
    /// An owner exited or exec'd (or was gone before it was watched): name its rows' holders.
    private var holderCheckRequested = false
    private var watchedOwners = Set<Int32>()
    private var due = Deadlines()
    private var lastFlush = 0.0
    /// Events ingested since the last write: a few are written the moment they fall due, a
    /// burst waits out the gap after the previous write.
    private var arrivedSinceWrite = 0
    /// Transient records the log admitted since the last write, and the policy's verdicts on
    /// the transients found since then.
    private var admitted: [TransientBinding] = []
    private var unexpectedTransients: [String: UInt64] = [:]
    private var droppedRecorded: UInt64 = 0
    /// Polls in a row with nothing arrived and nothing waiting. At `quietPollsBeforeIdle` the
    /// kernel is told the consumer is idle (the first record wakes it); one more poll of a
    /// tick picks up what came before the kernel knew, and from then on each poll sleeps
    /// until the next thing the loop has to do (about a second: the health check), not a
    /// tick: an idle host costs one wakeup a second instead of one a tick. That second also
    /// bounds how late a record is taken if its program read the flag just before the kernel
    /// saw it set (no wakeup then, and the settling poll had already gone by).
    private var quietPolls = 0
    static let quietPollsBeforeIdle = 2
    private var idle: Bool { quietPolls >= Self.quietPollsBeforeIdle }

    private struct Deadlines {
        var flush = 0.0, resync = 0.0, health = 0.0, prune = 0.0, write = 0.0
    }

    private let phaseValue = Atomic<Int>(Phase.starting.rawValue)
    private let healthValue = Mutex(Health())
    private let namespaceHandlesValue = Mutex<[UInt32: [String]]>([:])
    /// The executable last written for each holder's pid (see `refreshExecutables`).
    private var executables: [Int32: String] = [:]
    private let stopRequested = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    public init(kernel: KernelEvents, lister: SocketLister, ledger: Ledger, attributor: OwnerAttributor? = nil,
                processes: ProcessTable, clock: TimeSource = SystemClock(), schedule: Schedule, historyRetention: UInt64,
                transients: TransientLog.Limits = .init(), allowed: (@Sendable (Binding) -> Bool)? = nil,
                logger: Logger) throws {
        self.kernel = kernel
        self.lister = lister
        self.attributor = attributor
        self.processes = processes
        self.ledger = ledger
        self.clock = clock
        self.schedule = schedule
        self.historyRetention = historyRetention
        self.logger = logger
        self.allowed = allowed
        transientLog = TransientLog(limits: transients)
        let state = try ledger.loadState()
        for row in state.rows.values where row.owner.pid > 0 && !row.owner.exe.isEmpty { executables[row.owner.pid] = row.owner.exe }
        reconciler = Reconciler(window: schedule.window, rows: state.rows, sockets: state.sockets)
        // Events dropped before this start belong to no table of ours.
        kernelSeen = kernel.health()
    }

    public var phase: Phase { Phase(rawValue: phaseValue.load(ordering: .acquiring))! }
    public var health: Health { healthValue.withLock { $0 } }
    /// How to enter each network namespace the last snapshots listed (any thread).
    public var namespaceHandles: [UInt32: [String]] { namespaceHandlesValue.withLock { $0 } }
    /// Rows the reconciler holds (written or about to be).
    public var rowCount: Int { reconciler.rows.count }

    private func enter(_ phase: Phase) {
        guard phase != self.phase else { return }
        phaseValue.store(phase.rawValue, ordering: .releasing)
        logger.debug("pipeline phase", metadata: ["phase": "\(phase)"])
    }

    // MARK: Running on a thread

    public func start() {
        SystemThread.start(name: "portwatch-capture") { [self] in
            while !stopRequested.load(ordering: .relaxed) { step() }
            finish()
            finished.signal()
        }
    }

    /// Asks the loop to stop, waits until it has written what it holds and detached the programs.
    public func stop() {
        enter(.stopping)
        stopRequested.store(true, ordering: .relaxed)
        kernel.interrupt()
        finished.wait()
    }

    // MARK: One iteration

    /// Polls the kernel once (waiting up to one tick, or until the oldest pending binding's
    /// window expires), then does whatever is due.
    public func step() {
        do {
            try kernel.poll(timeoutMs: pollTimeout(), into: &arrived)
        } catch {
            logger.error("ring buffer poll failed", metadata: ["error": "\(error)"])
        }
        // What arrived before a failure is kept too.
        let got = arrived.count
        ingest(&arrived)
        arrivedSinceWrite += got
        // Keep the room while a burst lasts; give it back once polls are small again.
        arrived.removeAll(keepingCapacity: arrived.capacity <= max(4096, 4 * arrived.count))
        let now = clock.monotonic()
        var extra: [CounterEntry] = []
        if now >= due.health { extra = checkKernelHealth(now) }
        let deadlinePassed = reconciler.nextDue.map { $0 <= clock.wallNanoseconds() } ?? false
        if now >= due.flush || !extra.isEmpty || (deadlinePassed && writeGapRemaining(now) == 0) {
            due.flush = now + schedule.tick
            var batch = reconciler.flush(now: clock.wallNanoseconds(), attribute: attribute) ?? Batch()
            extra += record(&batch)
            if !batch.isEmpty {
                lastFlush = now
                arrivedSinceWrite = 0
                write(batch, extra)
            } else if !extra.isEmpty {
                write(Batch(), extra)
            } else {
                retryUnwritten()
            }
        }
        if resyncRequested || now >= due.resync {
            resync(now)
        } else if holderCheckRequested {
            checkHolders()
        }
        if now >= due.prune { prune(now) }
        noteQuiet(got == 0 && reconciler.nextDue == nil && unwritten.isEmpty && admitted.isEmpty && unexpectedTransients.isEmpty)
    }

    /// Tells the kernel when the loop becomes idle, and when it is busy again.
    private func noteQuiet(_ quiet: Bool) {
        guard quiet else {
            if idle { kernel.consumerIdle(false) }
            quietPolls = 0
            return
        }
        quietPolls += 1
        if quietPolls == Self.quietPollsBeforeIdle { kernel.consumerIdle(true) }
    }

    /// Milliseconds an idle loop sleeps: until the next health check, resync, prune or
    /// transient record falls due, whichever is first.
    private func idleTimeout() -> Int32 {
        let now = clock.monotonic()
        var wait = min(due.health, due.resync, due.prune) - now
        if let next = transientLog.nextDue {
            let wall = clock.wallNanoseconds()
            wait = min(wait, next > wall ? Double(next - wall) / 1e9 : 0)
        }
        return Int32((min(max(wait, 0), 3600) * 1000).rounded(.up))
    }

    /// Reconciles, and passes the transient listeners found to the log; the service, container
    /// and pod of every open are resolved now, while its cgroup surely exists, and named from
    /// the resolver's cache when a row or a transient record is made of it.
    private func ingest(_ events: inout [PortEvent]) {
        if let attributor {
            for i in events.indices where events[i].kind == .open { _ = attributor.resolve(id: events[i].cgroup) }
        }
        // The reconciler is taken once for the whole poll, not once per event (each access to
        // a class's stored property is checked for exclusivity at run time).
        reconciler.ingest(events)
        reconciler.drainTransients { collect($0) }
    }

    /// The service, container and pod of a cgroup.
    private func attribute(_ cgroup: UInt64) -> Attribution { attributor?.resolve(id: cgroup) ?? Attribution() }

    /// Milliseconds to wait for events: a tick, or less when a pending binding falls due
    /// sooner (and may be written then: a due burst waits out the write gap asleep, not in a
    /// loop of empty polls).
    private func pollTimeout() -> Int32 {
        // The poll right after the kernel was told still takes a tick (see `quietPolls`).
        if quietPolls > Self.quietPollsBeforeIdle { return idleTimeout() }
        guard let next = reconciler.nextDue else { return schedule.pollTimeoutMs }
        let wall = clock.wallNanoseconds()
        let untilDue = next > wall ? Double(next - wall) / 1e9 : 0
        let wait = max(untilDue, writeGapRemaining(clock.monotonic()))
        return min(schedule.pollTimeoutMs, Int32((wait * 1000).rounded(.up)))
    }

    /// Seconds until a write of what is due may follow the last one: none for a few events
    /// (a lone listener is published when its window expires), up to `minimumWriteGap` for a
    /// burst, so that a flood is written in few, large transactions.
    private func writeGapRemaining(_ now: Double) -> Double {
        arrivedSinceWrite <= schedule.smallWrite ? 0 : max(0, lastFlush + schedule.minimumWriteGap - now)
    }

    /// Passes transient listeners to the log as they are found (each poll's few, rather than
    /// a tick's thousands in one array), keeping the records it admits for the next write.
    private func collect(_ transients: [TransientSocket]) {
        guard !transients.isEmpty else { return }
        if let allowed {
            for t in transients where !allowed(TransientBinding(t, attribution: attribute(t.cgroup)).binding) {
                unexpectedTransients["\(t.key.transport)/\(t.key.exposure.rawValue)", default: 0] += 1
            }
        }
        admitted += transientLog.add(transients, now: clock.wallNanoseconds(), attribute: attribute)
    }

    /// Gives the batch the transient records admitted since the last write (folded per owner
    /// and capped, see `TransientLog`) and the folded ones now due, and counts what the policy
    /// does not allow and what the limits left out since then.
    private func record(_ batch: inout Batch, draining: Bool = false) -> [CounterEntry] {
        // The reconciler's transients were taken as they came (see `ingest`), none left in the batch.
        assert(batch.transients.isEmpty)
        let wall = clock.wallNanoseconds()
        batch.transients = admitted + (draining ? transientLog.drain(now: wall) : transientLog.due(now: wall))
        admitted.removeAll(keepingCapacity: admitted.capacity <= 1024)
        var extra = unexpectedTransients.sorted { $0.key < $1.key }
            .map { CounterEntry(name: CounterEntry.unexpectedTransientBindings, label: $0.key, value: $0.value) }
        unexpectedTransients = [:]
        if transientLog.dropped > droppedRecorded {
            extra.append(CounterEntry(name: CounterEntry.transientRecordsDropped, label: "", value: transientLog.dropped - droppedRecorded))
            droppedRecorded = transientLog.dropped
        }
        return extra
    }

    /// Applies and writes everything still buffered (at shutdown), then detaches.
    public func finish() {
        enter(.stopping)
        var last = reconciler.flushAll(attribute: attribute) ?? Batch()
        let extra = record(&last, draining: true)
        if !last.isEmpty || !extra.isEmpty { write(last, extra) }
        if !unwritten.isEmpty {
            due.write = 0
            retryUnwritten()
        }
        if !unwritten.isEmpty {
            logger.error("stopping with changes the database refused", metadata: ["pending_batches": "\(unwritten.count)"])
        }
        kernel.close()
    }

    private func checkKernelHealth(_ now: Double) -> [CounterEntry] {
        due.health = now + schedule.healthCheck
        let current = kernel.health()
        var extra: [CounterEntry] = []
        if current.lost > kernelSeen.lost {
            logger.warning("kernel dropped events: ring buffer full; resyncing", metadata: ["lost": "\(current.lost - kernelSeen.lost)"])
            extra.append(CounterEntry(name: CounterEntry.eventsLost, label: "", value: current.lost - kernelSeen.lost))
            resyncRequested = true
        }
        if current.ownerChanges > kernelSeen.ownerChanges {
            // An owner exited or exec'd: who holds its ports now is looked up for its rows alone.
            logger.debug("owners changed; naming the holders of their ports", metadata: ["changes": "\(current.ownerChanges - kernelSeen.ownerChanges)"])
            holderCheckRequested = true
        }
        if current.mapFull > kernelSeen.mapFull {
            logger.warning("the kernel's map of bound sockets could not hold some (full, or no memory for an entry); their closes are found by resyncs",
                           metadata: ["refused": "\(current.mapFull - kernelSeen.mapFull)"])
            resyncRequested = true
        }
        kernelSeen = current
        publishKernelHealth()
        return extra
    }

    /// The kernel's totals as scrapes see them: seeds the map refused count as map-full too.
    private func publishKernelHealth() {
        var kernel = kernelSeen
        kernel.mapFull += seedRefused
        healthValue.withLock { $0.kernel = kernel }
    }

    // MARK: Resync

    /// Compares the table with the sockets the kernel holds now and repairs it.
    private func resync(_ now: Double) {
        resyncRequested = false
        due.resync = now + schedule.resync
        // The kernel's map before the snapshot: see `removeStale`.
        let rememberedBefore = kernel.rememberedSockets()
        holderCheckRequested = false
        var live: [LiveSocket]
        let namespaces: Set<UInt32>
        do {
            let listing = try lister.snapshot(only: nil)
            (live, namespaces) = listing.parts
            namespaceHandlesValue.withLock { $0 = listing.handles }
        } catch {
            logger.error("socket snapshot failed; will retry", metadata: ["error": "\(error)"])
            due.resync = now + schedule.snapshotRetry
            return
        }
        let listed = Set(live.lazy.map(\.cookie))
        // Sockets that predate the programs get their release reported too.
        let refused = live.reduce(0) { $0 + (kernel.remember($1) ? 0 : 1) }
        if refused > 0 {
            seedRefused += UInt64(refused)
            publishKernelHealth()
        }
        attributeProcesses(&live)
        // Events that raced with the snapshot stay buffered; resync leaves their sockets alone.
        // So does a socket whose life ended in them: a transient listener that took its port
        // before the snapshot and let it go after is listed, but its events are dropped
        // already. A socket released since was seeded in vain: its entry goes.
        let (raced, racedCookies) = takeRaced(from: &live)
        for event in raced where event.kind == .close && event.reason == .released { kernel.forget(event.cookie) }
        removeStale(before: rememberedBefore, listed: listed, namespaces: namespaces, raced: racedCookies)
        let (batch, corrections) = reconciler.resync(live: live, now: clock.wallNanoseconds(), attribute: attribute, sees: lister.sees,
                                                     namespaces: namespaces)
        if let batch {
            let counted = corrections.sorted { $0.key.rawValue < $1.key.rawValue }
                .map { CounterEntry(name: CounterEntry.resyncCorrections, label: $0.key.rawValue, value: $0.value) }
            write(batch, counted)
            logger.info("resync corrected the table", metadata: ["insert": "\(corrections[.insert] ?? 0)", "delete": "\(corrections[.delete] ?? 0)"])
        }
        refreshExecutables()
        healthValue.withLock { $0.resyncs += 1 }
        if phase == .starting {
            enter(.snapshotApplied)
            becomeReadyIfWritten(sockets: live.count)
        }
    }

    /// Removes the entries of the kernel's map of bound sockets whose socket is gone although no
    /// release was reported for it: in the map before the snapshot and unchanged after it, not
    /// listed by it, no event about it since, a listener the snapshot can see (not a client,
    /// which a snapshot never lists). Under floods of short-lived sockets the kernel skips the
    /// release program for about one socket in ten million (measured with the daemon stopped,
    /// so with no user space involved); each such entry would stay for good. A row that socket
    /// held is closed by the same resync, as one whose socket it does not list.
    private func removeStale(before: [UInt64: RememberedSocket]?, listed: Set<UInt64>, namespaces: Set<UInt32>, raced: Set<UInt64>) {
        guard let before, !before.isEmpty, let after = kernel.rememberedSockets() else { return }
        var removed: UInt64 = 0
        for (cookie, entry) in after where before[cookie] == entry && !entry.client && !listed.contains(cookie)
            && namespaces.contains(entry.netns)
            && !raced.contains(cookie) && lister.sees(entry.transport, entry.state) {
            kernel.forget(cookie)
            removed += 1
        }
        guard removed > 0 else { return }
        logger.warning("the kernel's map of bound sockets held sockets that are gone without a reported release; removed",
                       metadata: ["entries": "\(removed)"])
        healthValue.withLock { $0.staleEntries += removed }
    }

    private func becomeReadyIfWritten(sockets: Int? = nil) {
        guard phase == .snapshotApplied, unwritten.isEmpty else { return }
        enter(.ready)
        logger.info("ready", metadata: ["ports": "\(reconciler.rows.count)", "sockets": "\(sockets.map(String.init) ?? "-")"])
    }

    private func prune(_ now: Double) {
        due.prune = now + schedule.prune
        let cutoff = clock.wallNanoseconds() &- historyRetention
        do {
            let removed = try ledger.pruneHistory(before: cutoff)
            if removed > 0 { logger.debug("pruned history", metadata: ["entries": "\(removed)"]) }
        } catch {
            logger.warning("cannot prune history", metadata: ["error": "\(error)"])
        }
    }

    /// Tells the kernel whose exit or exec to report: the owners the table names now. An owner
    /// that is gone already (an `ip` that brought a VXLAN device up and exited within the
    /// window) would never be reported: its rows' holders are looked up at once.
    private func watchOwners() {
        let pids = Set(reconciler.rows.values.map(\.owner.pid).filter { $0 > 0 })
        guard pids != watchedOwners else { return }
        let added = pids.subtracting(watchedOwners)
        watchedOwners = pids
        kernel.watchOwners(pids)
        if added.contains(where: { !processes.alive($0) }) { holderCheckRequested = true }
    }

    /// Names who holds the ports of owners that exited or exec'd: the rows whose owner is gone
    /// or runs another program now, from a snapshot of their namespaces alone (no resync: the
    /// event path keeps the rows, this only renames holders).
    private func checkHolders() {
        holderCheckRequested = false
        // Each owner is looked at once (/proc/PID/stat and comm), however many rows it holds.
        var owners: [Int32: (comm: String, namespaces: Set<UInt32>)] = [:]
        for row in reconciler.rows.values where row.owner.pid > 0 {
            owners[row.owner.pid, default: (row.owner.comm, [])].namespaces.insert(row.key.netns)
        }
        let namespaces = owners.reduce(into: Set<UInt32>()) { gone, owner in
            if !processes.runs(owner.key, owner.value.comm) { gone.formUnion(owner.value.namespaces) }
        }
        guard !namespaces.isEmpty else { return }
        var live: [LiveSocket]
        do {
            let listing = try lister.snapshot(only: namespaces)
            live = listing.sockets
            namespaceHandlesValue.withLock { $0.merge(listing.handles) { $1 } }
        } catch {
            logger.warning("cannot list the sockets of owners that changed; the next resync names them", metadata: ["error": "\(error)"])
            return
        }
        // Events that raced with the snapshot stay theirs, as in a resync.
        _ = takeRaced(from: &live)
        attributeProcesses(&live)
        healthValue.withLock { $0.holderChecks += 1 }
        if let batch = reconciler.refreshHolders(live: live, now: clock.wallNanoseconds()) { write(batch, []) }
    }

    /// Names the service, container and pod of the processes that hold listed sockets (the
    /// kernel's own sockets keep what the snapshot named them after).
    private func attributeProcesses(_ live: inout [LiveSocket]) {
        guard let attributor else { return }
        for i in live.indices where live[i].owner.pid > 0 { live[i].owner.attribution = attributor.resolve(pid: live[i].owner.pid) }
    }

    /// Takes the events that arrived while a snapshot was taken and leaves their sockets to them:
    /// they are reconciled now, and removed from `live`.
    private func takeRaced(from live: inout [LiveSocket]) -> (events: [PortEvent], cookies: Set<UInt64>) {
        var raced: [PortEvent] = []
        try? kernel.poll(timeoutMs: 0, into: &raced)
        ingest(&raced)
        let cookies = Set(raced.lazy.map(\.cookie))
        if !cookies.isEmpty { live.removeAll { cookies.contains($0.cookie) } }
        return (raced, cookies)
    }

    // MARK: Writing

    /// Writes a batch; on failure keeps it (and those after it) to retry in order. The rows it
    /// writes and its transient records name their holder's executable, read now (the process
    /// may be gone by the next step).
    private func write(_ batch: Batch, _ extra: [CounterEntry]) {
        var batch = batch
        for i in batch.changes.indices where batch.changes[i].action != .delete {
            nameExecutable(&batch.changes[i].row.owner)
        }
        for i in batch.transients.indices { nameExecutable(&batch.transients[i].owner) }
        unwritten.append((batch, extra))
        retryUnwritten()
    }

    private func nameExecutable(_ owner: inout Owner) {
        guard owner.pid > 0 else { return }
        if owner.exe.isEmpty { owner.exe = processes.executable(owner.pid) }
        if !owner.exe.isEmpty { executables[owner.pid] = owner.exe }
    }

    /// A holder's executable can be deleted or replaced while it runs (an upgrade waiting for
    /// a restart): at each resync the executables of the rows' holders are read again, and
    /// the rows of a holder whose executable changed are written again (a `holder` entry in
    /// the history), with no event to say so.
    private func refreshExecutables() {
        let holders = Set(reconciler.rows.values.lazy.map(\.owner.pid))
        executables = executables.filter { holders.contains($0.key) }
        var changed: [Int32: String] = [:]
        for (pid, exe) in executables {
            let now = processes.executable(pid)
            if !now.isEmpty, now != exe { changed[pid] = now }
        }
        guard !changed.isEmpty else { return }
        var batch = Batch()
        let time = clock.wallNanoseconds()
        for row in reconciler.rows.values.sorted(by: { $0.key < $1.key }) {
            guard let exe = changed[row.owner.pid] else { continue }
            var updated = row
            updated.owner.exe = exe
            batch.changes.append(RowChange(action: .update, row: updated, time: time, reason: .holder))
        }
        write(batch, [])
    }

    private func retryUnwritten() {
        guard !unwritten.isEmpty, clock.monotonic() >= due.write else { return }
        while let (batch, extra) = unwritten.first {
            do {
                try ledger.apply(batch, extra: extra)
                unwritten.removeFirst()
                if !batch.changes.isEmpty { watchOwners() }
            } catch {
                due.write = clock.monotonic() + schedule.writeRetry
                healthValue.withLock { $0.storeErrors += 1 }
                logger.error("cannot write to the database; keeping the changes in memory and retrying",
                             metadata: ["error": "\(error)", "pending_batches": "\(unwritten.count)"])
                return
            }
        }
        becomeReadyIfWritten()
    }
}
