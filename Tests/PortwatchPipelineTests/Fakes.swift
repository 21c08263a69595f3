import Logging
import PortwatchCore
import PortwatchPipeline
import PortwatchSystem
import Synchronization

/// A kernel that hands out queued events, one batch per poll.
final class FakeKernel: KernelEvents {
    var queued: [[PortEvent]] = []
    var kernelHealth = KernelHealth()
    var remembered: [LiveSocket] = []
    var refuseRemember = false
    var closed = false

    var timeouts: [Int32] = []
    func poll(timeoutMs: Int32, into events: inout [PortEvent]) throws {
        timeouts.append(timeoutMs)
        if !queued.isEmpty { events += queued.removeFirst() }
    }
    func health() -> KernelHealth { kernelHealth }
    func remember(_ socket: LiveSocket) -> Bool {
        remembered.append(socket)
        return !refuseRemember
    }
    var forgotten: [UInt64] = []
    /// The kernel's map of bound sockets; `forget` removes from it. Each read first takes the
    /// next of `mapChanges`, if any (what changed in the kernel between two reads).
    var map: [UInt64: RememberedSocket] = [:]
    var mapChanges: [[UInt64: RememberedSocket?]] = []
    var mapReads = 0
    func forget(_ cookie: UInt64) {
        forgotten.append(cookie)
        map[cookie] = nil
    }
    func rememberedSockets() -> [UInt64: RememberedSocket]? {
        mapReads += 1
        if !mapChanges.isEmpty { for (cookie, entry) in mapChanges.removeFirst() { map[cookie] = entry } }
        return map
    }
    var watched = Set<Int32>()
    func watchOwners(_ pids: Set<Int32>) { watched = pids }
    /// Whether the pipeline last said it is idle (woken by the first event).
    var idle = false
    func consumerIdle(_ idle: Bool) { self.idle = idle }
    func interrupt() {}
    func close() { closed = true }
}

/// A socket lister that returns what the test sets, or fails.
final class FakeLister: SocketLister {
    var live: [LiveSocket] = []
    var failing = false
    private(set) var calls = 0

    /// False for a kernel whose sock_diag cannot dump bound, not listening TCP sockets.
    var seesBoundTCP = true

    struct Failed: Error {}
    func sees(_ transport: TransportProtocol, _ state: SocketState) -> Bool { seesBoundTCP || !(transport == .tcp && state == .bound) }
    /// Namespaces a snapshot cannot list (their sockets are left out, and so are they).
    var unlisted = Set<UInt32>()
    /// The `only` of each snapshot, in order (nil: every namespace).
    private(set) var asked: [Set<UInt32>?] = []

    func snapshot(only: Set<UInt32>?) throws -> SocketListing {
        calls += 1
        asked.append(only)
        if failing { throw Failed() }
        let shown = live.filter { !unlisted.contains($0.key.netns) && (only?.contains($0.key.netns) ?? true) }
        let namespaces = Set(live.map(\.key.netns)).union([key(0).netns]).subtracting(unlisted)
        return SocketListing(sockets: shown, namespaces: only.map { namespaces.intersection($0) } ?? namespaces)
    }
}

/// A ledger in memory that can be told to refuse writes (a full disk).
final class FakeLedger: Ledger {
    var rows: [BindingKey: Binding] = [:]
    var sockets: [UInt64: BindingKey] = [:]
    var applied: [Batch] = []
    var extras: [[CounterEntry]] = []
    var failing = false
    var attempts = 0
    var prunedBefore: [UInt64] = []

    struct Full: Error {}
    func loadState() throws -> (rows: [BindingKey: Binding], sockets: [UInt64: BindingKey]) { (rows, sockets) }
    func apply(_ batch: Batch, extra: [CounterEntry]) throws {
        attempts += 1
        if failing { throw Full() }
        applied.append(batch)
        extras.append(extra)
        for change in batch.changes {
            rows[change.row.key] = change.action == .delete ? nil : change.row
        }
    }
    func pruneHistory(before cutoff: UInt64) throws -> Int {
        prunedBefore.append(cutoff)
        return 0
    }

    var changes: [String] { applied.flatMap(\.changes).map { "\($0.action) \($0.row.key.port)" } }
    var transients: [TransientBinding] { applied.flatMap(\.transients) }
    /// The total of one extra counter over every write.
    func extra(_ name: CounterName, _ label: String = "") -> UInt64 {
        extras.joined().filter { $0.name == name && $0.label == label }.reduce(0) { $0 + $1.value }
    }
}

/// A clock the test moves by hand.
final class FakeClock: TimeSource, Sendable {
    private let now = Mutex<(mono: Double, wall: UInt64)>((1000, 1_800_000_000_000_000_000))

    func monotonic() -> Double { now.withLock { $0.mono } }
    func wallNanoseconds() -> UInt64 { now.withLock { $0.wall } }
    func advance(_ seconds: Double) {
        now.withLock {
            $0.mono += seconds
            $0.wall += UInt64(seconds * 1e9)
        }
    }
}

let ms: UInt64 = 1_000_000
let window: UInt64 = 200 * ms

/// The namespace of every `key`.
let ns0: UInt32 = 4026531840

func key(_ port: UInt16, _ transport: TransportProtocol = .tcp) -> BindingKey {
    BindingKey(netns: 4026531840, transport: transport, family: .ipv4, address: "127.0.0.1", port: port)
}

/// Names cgroups and processes from tables (unknown ones: no attribution).
final class FakeAttributor: OwnerAttributor {
    var byCgroup: [UInt64: Attribution] = [:]
    var byPid: [Int32: Attribution] = [:]
    func resolve(id cgroup: UInt64) -> Attribution { byCgroup[cgroup] ?? Attribution() }
    func resolve(pid: Int32) -> Attribution { byPid[pid] ?? Attribution() }
}

/// A pipeline on fakes, with its fakes.
struct Rig {
    let kernel = FakeKernel()
    let lister = FakeLister()
    let ledger = FakeLedger()
    let clock = FakeClock()
    let attributor = FakeAttributor()
    let processes = FakeProcesses()
    let pipeline: CapturePipeline

    init(window: UInt64 = window, resync: Double = 300, transients: TransientLog.Limits = .init(),
         configure: (FakeKernel, FakeLister, FakeLedger) -> Void = { _, _, _ in },
         allowed: (@Sendable (Binding) -> Bool)? = nil) throws {
        configure(kernel, lister, ledger)
        pipeline = try CapturePipeline(kernel: kernel, lister: lister, ledger: ledger, attributor: attributor, processes: processes,
                                       clock: clock,
                                       schedule: Schedule(window: window, resyncInterval: resync),
                                       historyRetention: 7 * 86_400_000_000_000, transients: transients, allowed: allowed,
                                       logger: Logger(label: "test"))
    }

    /// An event at the clock's wall time now.
    func event(_ kind: PortEvent.Kind, _ cookie: UInt64, _ port: UInt16, reason: PortEvent.Reason = .released, cgroup: UInt64 = 0) -> PortEvent {
        PortEvent(kind: kind, cookie: cookie, time: clock.wallNanoseconds(), key: key(port),
                  owner: Owner(pid: 42, comm: "server", uid: 0), state: .listen, reason: reason, cgroup: cgroup)
    }

    /// Queues events for the next poll and runs one step.
    func deliver(_ events: [PortEvent]) {
        kernel.queued.append(events)
        pipeline.step()
    }

    /// Moves time on by `seconds` in ticks, stepping the pipeline each time.
    func run(for seconds: Double) {
        let tick = pipeline.schedule.tick
        var elapsed = 0.0
        while elapsed < seconds {
            clock.advance(tick)
            elapsed += tick
            pipeline.step()
        }
    }
}

/// Processes the tests say are alive, and what they run.
final class FakeProcesses: ProcessTable, @unchecked Sendable {
    var running: [Int32: String] = [:]
    var everyone = true

    func alive(_ pid: Int32) -> Bool { everyone || running[pid] != nil }
    func runs(_ pid: Int32, _ comm: String) -> Bool { everyone || running[pid] == comm }
    /// Every process runs /usr/bin/<its pid>.
    func executable(_ pid: Int32) -> String { "/usr/bin/\(pid)" }
}
