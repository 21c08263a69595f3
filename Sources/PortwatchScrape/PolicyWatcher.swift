import Dispatch
import FoundationEssentials
import Glibc
import Logging
import PortwatchCore
import PortwatchPolicy
import PortwatchSystem
import Synchronization

/// Keeps the expected-listener policy current: loaded at start, reloaded on SIGHUP and when
/// the file users see changes (followed through links: a ConfigMap's `..data` swap, an
/// editor's rename-over and a write in place alike). A bad file is refused with a message naming the line, and the policy
/// in force stays.
/// Unchecked: `sources` is written once, in `start()`, before any handler runs.
public final class PolicyWatcher: @unchecked Sendable {
    public struct Status: Sendable {
        public var policy: Policy
        public var lastSuccess: Bool
        public var lastSuccessTime: Double
    }

    public let path: String
    private let status: Mutex<Status>
    /// The file as users see it (through Kubernetes' `..data` link), as last loaded.
    private let watch: Mutex<FileWatch>
    private let logger: Logger
    private let clock: TimeSource
    private var sources: [DispatchSourceProtocol] = []

    /// Loads the file once; a bad file at start is an error (nothing to fall back to).
    public init(path: String, clock: TimeSource = SystemClock(), logger: Logger) throws {
        self.path = path
        self.clock = clock
        self.logger = logger
        watch = Mutex(FileWatch(paths: [path]))
        let policy = try PolicyFile.load(path: path)
        status = Mutex(Status(policy: policy, lastSuccess: true, lastSuccessTime: Double(clock.wallNanoseconds()) / 1e9))
        logger.info("policy loaded", metadata: ["file": "\(path)", "rules": "\(policy.rules.count)"])
    }

    public var current: Status { status.withLock { $0 } }

    /// Reloads now. Returns whether the new file was taken.
    @discardableResult
    public func reload() -> Bool {
        // Noted before reading, so that a write during the read is seen by the next check.
        _ = watch.withLock { $0.changed() }
        do {
            let policy = try PolicyFile.load(path: path)
            status.withLock {
                $0 = Status(policy: policy, lastSuccess: true, lastSuccessTime: Double(clock.wallNanoseconds()) / 1e9)
            }
            logger.info("policy reloaded", metadata: ["file": "\(path)", "rules": "\(policy.rules.count)"])
            return true
        } catch {
            status.withLock { $0.lastSuccess = false }
            logger.error("policy file refused; the previous policy stays in force", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Watches for changes of the file (checked every `interval` seconds). SIGHUP is the
    /// daemon's to route: it calls `reload()`.
    public func start(interval: Double = 1) {
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [self] in
            if watch.withLock({ $0.changed() }) { reload() }
        }
        timer.resume()
        sources = [timer]
    }
}
