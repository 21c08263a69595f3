import Dispatch
import Foundation
import Logging
import PortwatchCore
import PortwatchPolicy
import Synchronization

/// Keeps the expected-listener policy current: loaded at start, reloaded on SIGHUP and when
/// the file changes. A bad file is refused with a message naming the line, and the policy
/// in force stays.
/// Unchecked: `sources` is written once, in `start()`, before any handler runs.
final class PolicyWatcher: @unchecked Sendable {
    struct Status: Sendable {
        var policy: Policy
        var lastSuccess: Bool
        var lastSuccessTime: Double
        var modification: Date?
    }

    let path: String
    private let status: Mutex<Status>
    private let logger: Logger
    private var sources: [DispatchSourceProtocol] = []

    /// Loads the file once; a bad file at start is an error (nothing to fall back to).
    init(path: String, logger: Logger) throws {
        self.path = path
        self.logger = logger
        let policy = try PolicyFile.load(path: path)
        status = Mutex(Status(policy: policy, lastSuccess: true, lastSuccessTime: Date().timeIntervalSince1970,
                              modification: Self.modification(path)))
        logger.info("policy loaded", metadata: ["file": "\(path)", "rules": "\(policy.rules.count)"])
    }

    var current: Status { status.withLock { $0 } }

    static func modification(_ path: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }

    /// Reloads now. Returns whether the new file was taken.
    @discardableResult
    func reload() -> Bool {
        let modification = Self.modification(path)
        do {
            let policy = try PolicyFile.load(path: path)
            status.withLock {
                $0 = Status(policy: policy, lastSuccess: true, lastSuccessTime: Date().timeIntervalSince1970, modification: modification)
            }
            logger.info("policy reloaded", metadata: ["file": "\(path)", "rules": "\(policy.rules.count)"])
            return true
        } catch {
            status.withLock {
                $0.lastSuccess = false
                $0.modification = modification
            }
            logger.error("policy file refused; the previous policy stays in force", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Watches for SIGHUP and for changes of the file (checked every `interval` seconds).
    func start(interval: Double = 1) {
        signal(SIGHUP, SIG_IGN)
        let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hup.setEventHandler { [self] in reload() }
        hup.resume()
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [self] in
            let seen = status.withLock { $0.modification }
            if Self.modification(path) != seen { reload() }
        }
        timer.resume()
        sources = [hup, timer]
    }
}
