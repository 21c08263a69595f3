import Glibc

/// An exclusive advisory lock (flock(2)) on a file, held while its descriptor stays open and
/// released by the kernel when the process ends, however it ends. flock locks are separate
/// from the fcntl locks SQLite takes on the same file, so the two never interfere.
public enum FileLock {
    /// The lock is held by another open file: `holder` is that process when /proc/locks names it.
    public struct Held: Error, Sendable {
        public let path: String
        public let holder: pid_t?
    }

    /// Takes the lock on `path` (which must exist) without waiting; throws `Held` when another
    /// open file has it, `SystemError` when the file cannot be opened.
    public static func exclusive(_ path: String) throws -> FileDescriptor {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        do {
            guard try Syscall.valueOrWouldBlock("flock \(path)", { flock(fd.rawValue, LOCK_EX | LOCK_NB) }) != nil else {
                throw Held(path: path, holder: holder(of: fd))
            }
            return fd
        } catch {
            fd.close()
            throw error
        }
    }

    /// The process that holds a flock on the file open as `fd`, from /proc/locks (in this
    /// process's pid namespace; nil when it cannot be told).
    static func holder(of fd: FileDescriptor) -> pid_t? {
        var info = stat()
        guard fstat(fd.rawValue, &info) == 0, let table = try? String(decoding: FileDescriptor.contents(of: "/proc/locks"), as: UTF8.self) else { return nil }
        // The kernel's new_encode_dev split (glibc's major()/minor() are macros Swift cannot call).
        let dev = UInt64(info.st_dev)
        let major = (dev >> 8) & 0xfff | (dev >> 32) & ~0xfff, minor = dev & 0xff | (dev >> 12) & ~0xff
        return holder(inLocks: table, device: "\(hex(major)):\(hex(minor)):\(info.st_ino)")
    }

    /// The pid of the FLOCK entry for `device` ("08:01:1234" as /proc/locks writes it).
    static func holder(inLocks table: String, device: String) -> pid_t? {
        for line in table.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; blocked waiters carry "->".
            guard fields.count >= 6, fields[1] == "FLOCK", fields[5] == device, let pid = pid_t(fields[4]), pid > 0 else { continue }
            return pid
        }
        return nil
    }

    private static func hex(_ value: UInt64) -> String {
        let text = String(value, radix: 16)
        return text.count < 2 ? "0" + text : text
    }
}
