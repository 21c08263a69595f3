import Glibc

/// The pages of code and constants that only start-up used. A daemon parses its flags, loads
/// and attaches its programs, opens its database and takes its first snapshot once; the code
/// of all that (argument parsing, libbpf and libelf, the snapshot and first resync, the Swift
/// runtime's one-time work) stays mapped and counted in its RSS for as long as it runs, and
/// so do the neighbours the kernel maps with every page touched (fault-around, 64 KiB) and
/// reads with it (read-ahead). `giveBack()` asks the kernel to reclaim the file pages of the
/// read-only mappings (MADV_PAGEOUT, Linux 5.4), as the kernel frees its own init sections
/// once booted: code that runs again is read back from the file when it runs.
public enum CodePages {
    /// One line of /proc/self/maps with a file behind it.
    struct Mapping: Equatable {
        var start: UInt
        var end: UInt
        var writable: Bool
        var path: String
    }

    /// The file-backed mappings of /proc/self/maps text (`start-end perms offset dev inode path`).
    static func mappings(_ maps: String) -> [Mapping] {
        maps.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            // The path is padded to a column: the last field starts with blanks.
            guard fields.count == 6, case let path = fields[5].drop(while: { $0 == " " }), path.hasPrefix("/") else { return nil }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), start < end
            else { return nil }
            return Mapping(start: start, end: end, writable: fields[1].contains("w"), path: String(path))
        }
    }

    /// The mappings `giveBack` advises: the read-only ones (code, constants). A writable one
    /// holds the pages the process changed, which reclaim would write to swap.
    static func reclaimable(_ mappings: [Mapping]) -> [Mapping] { mappings.filter { !$0.writable } }

    /// Asks the kernel to reclaim the pages of every read-only file mapping of the process.
    /// It frees those the process alone maps (a library that other processes use keeps its
    /// pages); they are clean, so nothing is written. For a file the process neither owns nor could
    /// open for writing (newer kernels check, as 6.18 does), or on a kernel without
    /// MADV_PAGEOUT, nothing changes. Returns the number of mappings advised.
    ///
    /// Then the executable's pages nobody maps leave the page cache (POSIX_FADV_DONTNEED), and
    /// its mappings read only the page a fault needs (MADV_RANDOM: no read-around). A fault maps
    /// the cached pages around the one touched (fault-around, 64 KiB) and reads the file ahead
    /// of it (128 KiB by default), so the code a running daemon touches was resident 64 to 128
    /// KiB at a time: on Debian's 6.12 with the binary on ext4, 5.3 MiB of code resident idle,
    /// 2.2 with this. Kernels from 6.16 read ahead of a fault in code whatever the advice; there
    /// only the dropped pages count.
    @discardableResult
    public static func giveBack() -> Int {
        guard let maps = try? FileDescriptor.readText(path: "/proc/self/maps") else { return 0 }
        let exe = try? FileDescriptor.readLink("/proc/self/exe")
        var advised = 0
        for m in reclaimable(mappings(maps)) {
            guard let address = UnsafeMutableRawPointer(bitPattern: m.start) else { continue }
            if madvise(address, Int(m.end - m.start), pageOut) == 0 { advised += 1 }
            if m.path == exe { _ = madvise(address, Int(m.end - m.start), MADV_RANDOM) }
        }
        if let file = try? FileDescriptor.open("/proc/self/exe", O_RDONLY) {
            _ = posix_fadvise(file.rawValue, 0, 0, POSIX_FADV_DONTNEED)
            file.close()
        }
        return advised
    }

    /// MADV_PAGEOUT (Linux 5.4; glibc 2.31 names it, Swift's Glibc import does not).
    static let pageOut: Int32 = 21
}
