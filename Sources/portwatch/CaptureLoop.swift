import Foundation
import Logging
import PortwatchCapture
import PortwatchCore
import PortwatchStore
import Synchronization

/// The dedicated capture thread: drain the ring buffer, reconcile, write batches.
/// Owns the kernel capture, the reconciler and the store's writer connection.
final class CaptureLoop: @unchecked Sendable {
    struct Settings {
        var window: UInt64
        var resyncInterval: Double
        var historyRetention: UInt64
    }

    private let capture: KernelCapture
    private let store: Store
    private let settings: Settings
    private let logger: Logger
    private var reconciler: Reconciler
    private var unwritten: [(Batch, [CounterEntry])] = []
    private var lostSeen: UInt64 = 0
    private var resyncDue = true
    private var nextResync = 0.0
    private var nextPrune = 0.0
    private var nextLostCheck = 0.0
    /// After a failed write, the next attempt waits (a full disk should not spin the loop).
    private var nextWriteAttempt = 0.0

    let ready = Atomic<Bool>(false)
    let storeErrors = Atomic<Int>(0)
    /// Snapshots compared with the table since start (the start-up one included).
    let resyncs = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    init(capture: KernelCapture, store: Store, settings: Settings, logger: Logger) throws {
        self.capture = capture
        self.store = store
        self.settings = settings
        self.logger = logger
        let state = try store.loadState()
        reconciler = Reconciler(window: settings.window, rows: state.rows, sockets: state.sockets)
        lostSeen = capture.lostEvents()
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "portwatch-capture"
        thread.start()
    }

    /// Asks the loop to stop, waits for it to write what it holds, and returns.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        finished.wait()
    }

    private func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func wallNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    private func run() {
        // Poll often enough that the window, not the poll, bounds the latency.
        let tick = Int32(max(5, min(50, settings.window / 4_000_000)))
        // Under load the ring buffer is never empty and poll returns at once: reconcile and
        // write once per tick, not per poll, so that transactions stay few and large.
        var nextFlush = 0.0
        while !stopping.load(ordering: .relaxed) {
            do {
                reconciler.ingest(try capture.poll(timeoutMs: tick))
            } catch {
                logger.error("ring buffer poll failed", metadata: ["error": "\(error)"])
            }
            let now = monotonic()
            var extra: [CounterEntry] = []
            if now >= nextLostCheck {
                nextLostCheck = now + 1
                let lost = capture.lostEvents()
                if lost > lostSeen {
                    logger.warning("kernel dropped events: ring buffer full; resyncing", metadata: ["lost": "\(lost - lostSeen)"])
                    extra.append(CounterEntry(name: CounterEntry.eventsLost, label: "", value: lost - lostSeen))
                    lostSeen = lost
                    resyncDue = true
                }
            }
            if now >= nextFlush || !extra.isEmpty {
                nextFlush = now + Double(tick) / 1000
                if let batch = reconciler.flush(now: Self.wallNanoseconds()) {
                    write(batch, extra)
                } else if !extra.isEmpty {
                    write(Batch(), extra)
                } else {
                    retryUnwritten()
                }
            }
            if resyncDue || now >= nextResync { resync(now: now) }
            if now >= nextPrune { prune(now: now) }
        }
        if let batch = reconciler.flushAll() { write(batch, []) }
        capture.close()
        finished.signal()
    }

    /// Compares the table with the sockets the kernel holds now and repairs it.
    private func resync(now: Double) {
        resyncDue = false
        nextResync = now + settings.resyncInterval
        let live: [LiveSocket]
        do { live = try SocketSnapshot.take() } catch {
            logger.error("socket snapshot failed; will retry", metadata: ["error": "\(error)"])
            nextResync = now + 5
            return
        }
        // Sockets that predate the programs get their release reported too.
        for socket in live { capture.remember(cookie: socket.cookie, key: socket.key, owner: socket.owner, state: socket.state) }
        // Events that raced with the snapshot stay buffered; resync leaves their sockets alone.
        if let events = try? capture.poll(timeoutMs: 0) { reconciler.ingest(events) }
        let (batch, corrections) = reconciler.resync(live: live,
                                                     now: Self.wallNanoseconds())
        let counted = corrections.map { CounterEntry(name: CounterEntry.resyncCorrections, label: $0.key.rawValue, value: $0.value) }
        if let batch {
            write(batch, counted)
        }
        resyncs.add(1, ordering: .relaxed)
        if !corrections.isEmpty {
            logger.info("resync corrected the table", metadata: ["insert": "\(corrections[.insert] ?? 0)", "delete": "\(corrections[.delete] ?? 0)"])
        }
        if !ready.load(ordering: .relaxed) && unwritten.isEmpty {
            ready.store(true, ordering: .relaxed)
            logger.info("ready", metadata: ["ports": "\(reconciler.rows.count)", "sockets": "\(live.count)"])
        }
    }

    private func prune(now: Double) {
        nextPrune = now + 3600
        let cutoff = Self.wallNanoseconds() &- settings.historyRetention
        do {
            let removed = try store.pruneHistory(before: cutoff)
            if removed > 0 { logger.debug("pruned history", metadata: ["entries": "\(removed)"]) }
        } catch {
            logger.warning("cannot prune history", metadata: ["error": "\(error)"])
        }
    }

    /// Writes a batch; on failure keeps it (and those after it) to retry in order.
    private func write(_ batch: Batch, _ extra: [CounterEntry]) {
        unwritten.append((batch, extra))
        retryUnwritten()
    }

    private func retryUnwritten() {
        guard !unwritten.isEmpty, monotonic() >= nextWriteAttempt else { return }
        while let (batch, extra) = unwritten.first {
            do {
                try store.apply(batch, extra: extra)
                unwritten.removeFirst()
            } catch {
                nextWriteAttempt = monotonic() + 1
                storeErrors.add(1, ordering: .relaxed)
                logger.error("cannot write to the database; keeping the changes in memory and retrying",
                             metadata: ["error": "\(error)", "pending_batches": "\(unwritten.count)"])
                return
            }
        }
    }
}
