import Glibc
import PortwatchCore
import PortwatchSystem
import Testing

/// The daemon's threads (capture, HTTP, listener health) and their waits, on pthreads.
@Suite struct ThreadTests {
    /// Names of this process's threads, as `top -H` shows them.
    static func threadNames() -> [String] {
        guard let dir = opendir("/proc/self/task") else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard tid.first?.isNumber == true, let text = try? FileDescriptor.readText(path: "/proc/self/task/\(tid)/comm") else { continue }
            names.append(text.trimmingNewlines)
        }
        return names
    }

    @Test func aThreadRunsUnderItsNameCutToWhatTheKernelKeeps() {
        let gate = Condition()
        nonisolated(unsafe) var started = false, release = false
        SystemThread.start(name: "pw-thread-under-test") {
            gate.withLock {
                started = true
                gate.broadcast()
                while !release { gate.wait() }
            }
        }
        gate.withLock { while !started { gate.wait() } }
        #expect(Self.threadNames().contains("pw-thread-under"))
        gate.withLock {
            release = true
            gate.broadcast()
        }
    }

    @Test func aTimedWaitEndsOnASignalOrWhenItsTimeRunsOut() {
        let condition = Condition()
        let timedOut = condition.withLock { !condition.wait(seconds: 0.01) }
        #expect(timedOut)
        nonisolated(unsafe) var ready = false
        SystemThread.start(name: "pw-signaller") {
            condition.withLock {
                ready = true
                condition.signal()
            }
        }
        // A signal ends the wait long before its 60 s; spurious wakeups loop.
        let signalled = condition.withLock {
            while !ready { guard condition.wait(seconds: 60) else { return false } }
            return true
        }
        #expect(signalled)
    }
}
