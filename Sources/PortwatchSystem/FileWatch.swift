import Glibc

/// Tells when a few files changed as a reader of their paths sees them: through symbolic links
/// (Kubernetes swaps a ConfigMap's or Secret's `..data` link, so `policy.yaml`, a link, never
/// changes itself), after an editor renames a new file over the old one, or after a write in
/// place. Each path is stat'ed through its links (device, inode, size, modification time);
/// when that changed, the bytes are read and compared, so a touch alone is not a change.
public struct FileWatch: Sendable {
    public let paths: [String]
    private var stamps: [Stamp?]
    private var digests: [UInt64?]

    struct Stamp: Equatable, Sendable {
        var device: UInt64, inode: UInt64, size: Int64, seconds: Int, nanoseconds: Int
    }

    /// Remembers the files as they are now; call it before reading them, so that a change
    /// made while they are read is seen by the next `changed()`.
    public init(paths: [String]) {
        self.paths = paths
        stamps = paths.map(Self.stamp)
        digests = paths.map(Self.digest)
    }

    /// Whether any file's bytes differ from when last seen (a file that went missing, or came
    /// back, counts); remembers them as they are now.
    public mutating func changed() -> Bool {
        var changed = false
        for i in paths.indices {
            let stamp = Self.stamp(paths[i])
            guard stamp != stamps[i] else { continue }
            stamps[i] = stamp
            let digest = Self.digest(paths[i])
            if digest != digests[i] {
                digests[i] = digest
                changed = true
            }
        }
        return changed
    }

    static func stamp(_ path: String) -> Stamp? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Stamp(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                     seconds: info.st_mtim.tv_sec, nanoseconds: info.st_mtim.tv_nsec)
    }

    /// FNV-1a over the file's bytes (nil when it cannot be read).
    static func digest(_ path: String) -> UInt64? {
        guard let bytes = try? FileDescriptor.contents(of: path) else { return nil }
        return bytes.reduce(0xcbf2_9ce4_8422_2325 as UInt64) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }
}

extension FileDescriptor {
    /// The whole file at `path`, read to its end.
    public static func contents(of path: String) throws -> [UInt8] {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = try chunk.withUnsafeMutableBytes { buffer in
                try Syscall.valueOrErrno("read \(path)") { Glibc.read(fd.rawValue, buffer.baseAddress, buffer.count) }
            }
            if count == 0 { return bytes }
            bytes += chunk[..<count]
        }
    }
}
