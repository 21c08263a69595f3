import FoundationEssentials
import Glibc
import Logging
import PortwatchCore
import PortwatchStore
import PortwatchSystem
import Synchronization

/// Reads the health of every held port's socket (accept queue, its limit, drops) on its own
/// thread, every `interval`: one sock_diag dump per protocol and family in each namespace that
/// holds a port, entered by the handles the pipeline's snapshots found or by /proc/PID/ns/net
/// of a row's holder (no /proc scan). Scrapes read the latest reading; it is never older than
/// one interval, and a scrape never waits for a dump.
public final class ListenerHealthMonitor: @unchecked Sendable {
    public struct Reading: Sendable {
        /// Per held port (an SO_REUSEPORT group's sockets summed).
        public var ports: [BindingKey: SocketHealth]
        /// Changes with every reading.
        public var generation: UInt64
    }

    public let interval: Double
    private let databasePath: String
    private let handles: @Sendable () -> [UInt32: [String]]
    private let take: @Sendable ([UInt32: [String]]) -> [SocketHealth]
    private let ready: @Sendable () -> Bool
    private let logger: Logger
    private let latestValue = Mutex<Reading?>(nil)
    private let wake = Condition()
    private var running = false
    private var reader: StoreReader?

    /// `handles`: how to enter the namespaces the pipeline listed; `take`: the dump itself
    /// (the kernel's, or a fake in tests).
    /// `ready`: the table is the kernel's (the first reading waits for it, so that it covers
    /// every held port at once).
    public init(interval: Double, databasePath: String, handles: @escaping @Sendable () -> [UInt32: [String]],
                take: @escaping @Sendable ([UInt32: [String]]) -> [SocketHealth], ready: @escaping @Sendable () -> Bool = { true },
                logger: Logger) {
        self.ready = ready
        self.interval = interval
        self.databasePath = databasePath
        self.handles = handles
        self.take = take
        self.logger = logger
    }

    /// The latest reading (nil before the first).
    public var latest: Reading? { latestValue.withLock { $0 } }

    /// Reads once now, on the calling thread.
    public func collect() {
        do {
            if reader == nil { reader = try StoreReader(path: databasePath, cacheKiB: StoreReader.daemonCacheKiB) }
            let rows = try reader!.snapshot().rows
            let ports = SocketHealth.perPort(take(Self.namespaces(of: rows, known: handles())))
            latestValue.withLock { latest in
                latest = Reading(ports: ports, generation: (latest?.generation ?? 0) &+ 1)
            }
        } catch {
            reader = nil
            logger.warning("listener health not read", metadata: ["error": "\(error)"])
        }
    }

    /// The namespaces that hold a port, each with its handles: the known ones first, then
    /// those of a few of its rows' holders (fallbacks for a namespace the snapshots have not
    /// listed yet; a few are enough, and a namespace of thousands of holders costs no more).
    static func namespaces(of rows: [Binding], known: [UInt32: [String]]) -> [UInt32: [String]] {
        var out: [UInt32: [String]] = [:]
        var holders: [UInt32: Set<Int32>] = [:]
        for row in rows {
            let netns = row.key.netns
            if out[netns] == nil { out[netns] = known[netns] ?? [] }
            guard row.owner.pid > 0, holders[netns, default: []].count < holderHandles,
                  holders[netns, default: []].insert(row.owner.pid).inserted else { continue }
            out[netns]!.append("/proc/\(row.owner.pid)/ns/net")
        }
        return out
    }

    /// Holders' /proc/PID/ns/net handles tried per namespace at most.
    static let holderHandles = 4

    public func start() {
        wake.lock()
        running = true
        wake.unlock()
        SystemThread.start(name: "listener-health") { [self] in
            while true {
                let isReady = ready()
                if isReady { collect() }
                wake.lock()
                if running { wake.wait(seconds: isReady ? interval : 0.05) }
                let stop = !running
                wake.unlock()
                if stop { return }
            }
        }
    }

    public func stop() {
        wake.lock()
        running = false
        wake.signal()
        wake.unlock()
    }
}
