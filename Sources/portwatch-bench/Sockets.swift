import Foundation
import Glibc

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
        let group = DispatchGroup()
        let start = Measure.now()
        for _ in 0..<threads {
            group.enter()
            Thread {
                for _ in 0..<iterations { close(open(udp: udp).fd) }
                group.leave()
            }.start()
        }
        group.wait()
        return Measure.now() - start
    }

    static func raiseFileLimit(_ n: Int) {
        var limit = rlimit(rlim_cur: rlim_t(n), rlim_max: rlim_t(n))
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    }
}
