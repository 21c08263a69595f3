import Glibc

/// Every raw system call portwatch makes outside libbpf and SQLite, each behind one helper:
/// errno is read right after the call, EINTR is retried, failures become `SystemError`.
public enum Syscall {
    /// Runs `body` until it does not fail with EINTR; a negative result throws with errno.
    @discardableResult
    public static func valueOrErrno<T: BinaryInteger>(_ operation: @autoclosure () -> String, retryOnInterrupt: Bool = true,
                                                     _ body: () -> T) throws -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = Glibc.errno
            if code == EINTR && retryOnInterrupt { continue }
            throw SystemError(operation(), errno: code)
        }
    }

    /// Like `valueOrErrno`, but "try again later" (EAGAIN) gives nil instead of an error.
    static func valueOrWouldBlock<T: BinaryInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) throws -> T? {
        do { return try valueOrErrno(operation(), body) } catch let error as SystemError
            where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
            return nil
        }
    }

    public static func poll(_ fds: inout [pollfd], timeoutMs: Int32) throws -> Int {
        Int(try valueOrErrno("poll") { Glibc.poll(&fds, nfds_t(fds.count), timeoutMs) })
    }
}
