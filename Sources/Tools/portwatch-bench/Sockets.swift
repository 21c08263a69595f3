import Foundation
import Glibc
import Synchronization

/// Socket work for the load generators, on raw system calls.
enum Sockets {
    /// A socket bound to 127.0.0.1 on an ephemeral port (listening for TCP); returns fd and port.
    static func open(udp: Bool = false, listen: Bool = true) -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = UInt32(0x7f000001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = bind(fd, $0, len)
                _ = getsockname(fd, $0, &len)
            }
        }
        if !udp && listen { _ = Glibc.listen(fd, 8) }
        return (fd, UInt16(bigEndian: sa.sin_port))
    }

    /// `threads` threads each doing socket + bind(port 0) + listen + close `iterations` times.
    /// Returns the wall time.
    static func churn(threads: Int, iterations: Int, udp: Bool = false) -> Double {
        timedChurn(threads: threads, iterations: iterations, udp: udp).wall
    }

    /// `churn`, with the CPU time its threads took in all (their CLOCK_THREAD_CPUTIME_ID): the
    /// kernel's work in their system calls, portwatch's programs included, without the time
    /// they waited for a core or the hypervisor.
    static func timedChurn(threads: Int, iterations: Int, udp: Bool = false) -> (wall: Double, cpu: Double) {
        let group = DispatchGroup()
        let cpu = Mutex(0.0)
        let start = Measure.now()
        for _ in 0..<threads {
            group.enter()
            Thread {
                let before = threadCPU()
                for _ in 0..<iterations { close(open(udp: udp).fd) }
                let used = threadCPU() - before
                cpu.withLock { $0 += used }
                group.leave()
            }.start()
        }
        group.wait()
        return (Measure.now() - start, cpu.withLock { $0 })
    }

    /// Seconds of CPU the calling thread has used.
    static func threadCPU() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    /// TCP connection churn on loopback: `threads` clients each connect, and close, `iterations`
    /// times to one listener whose thread accepts and closes. No client binds a port itself, yet
    /// every socket passes portwatch's programs. Returns the wall time.
    static func connectionChurn(threads: Int, iterations: Int) throws -> Double {
        let failed = Atomic<Int>(0)
        let (listener, port) = open()
        _ = Glibc.listen(listener, 4096)
        defer { close(listener) }
        let total = threads * iterations
        let accepted = DispatchSemaphore(value: 0)
        Thread {
            for _ in 0..<total {
                let fd = accept(listener, nil, nil)
                if fd >= 0 { close(fd) }
            }
            accepted.signal()
        }.start()
        let group = DispatchGroup()
        let start = Measure.now()
        for _ in 0..<threads {
            group.enter()
            Thread {
                var sa = sockaddr_in()
                sa.sin_family = sa_family_t(AF_INET)
                sa.sin_port = port.bigEndian
                sa.sin_addr.s_addr = UInt32(0x7f000001).bigEndian
                // Closed with a reset (linger 0): no TIME_WAIT, so the ephemeral ports never run out.
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                for _ in 0..<iterations {
                    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                    let ok = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
                    if ok != 0 { failed.add(1, ordering: .relaxed) }
                    close(fd)
                }
                group.leave()
            }.start()
        }
        group.wait()
        let elapsed = Measure.now() - start
        guard failed.load(ordering: .relaxed) == 0 else { throw BenchError("connection churn: \(failed.load(ordering: .relaxed)) connects failed") }
        accepted.wait()
        return elapsed
    }

    static func raiseFileLimit(_ n: Int) {
        var limit = rlimit(rlim_cur: rlim_t(n), rlim_max: rlim_t(n))
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    }
}
