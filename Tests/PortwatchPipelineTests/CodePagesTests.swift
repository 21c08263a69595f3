import Glibc
@testable import PortwatchSystem
import PortwatchTestSupport
import Testing

/// The code and constants only start-up used leave the daemon's resident memory. One test at a
/// time: each reclaims the pages of the test process, and one reads the whole executable.
@Suite(.serialized) struct CodePagesTests {
    @Test func theMapsFileBehindEachMappingIsReadWithItsPath() {
        let maps = """
        5566a5f06000-5566a6185000 r--p 00000000 fe:00 16646872                   /usr/bin/portwatch
        5566a6185000-5566a6bca000 r-xp 0027e000 fe:00 16646872                   /usr/bin/portwatch
        5566a6c22000-5566a6e45000 rw-p 00d19000 fe:00 16646872                   /usr/bin/portwatch
        5566a7e45000-5566a7f90000 rw-p 00000000 00:00 0                          [heap]
        7f2dd37ff000-7f2dd3800000 ---p 00000000 00:00 0 
        7f2de081d000-7f2de0a1d000 r--s 00000000 00:0f 2087                       anon_inode:bpf-map
        7f2de0b00000-7f2de0b28000 r--p 00000000 fe:00 1311                       /usr/lib/x86_64-linux-gnu/lib with space.so (deleted)
        7ffdf75a9000-7ffdf75ca000 rw-p 00000000 00:00 0                          [stack]
        """
        let mappings = CodePages.mappings(maps)
        #expect(mappings == [
            .init(start: 0x5566a5f06000, end: 0x5566a6185000, writable: false, path: "/usr/bin/portwatch"),
            .init(start: 0x5566a6185000, end: 0x5566a6bca000, writable: false, path: "/usr/bin/portwatch"),
            .init(start: 0x5566a6c22000, end: 0x5566a6e45000, writable: true, path: "/usr/bin/portwatch"),
            .init(start: 0x7f2de0b00000, end: 0x7f2de0b28000, writable: false,
                  path: "/usr/lib/x86_64-linux-gnu/lib with space.so (deleted)"),
        ])
        // The data the process writes stays: only swap could take it.
        #expect(CodePages.reclaimable(mappings).map(\.start) == [0x5566a5f06000, 0x5566a6185000, 0x7f2de0b00000])
    }

    /// This test process's own code: what it ran so far leaves its RSS. (The executable's pages
    /// are written to disk first: a binary just linked has dirty pages, which reclaim leaves
    /// to writeback; an installed daemon's are clean.)
    @Test func theCodeRunSoFarLeavesTheResidentMemory() throws {
        let exe = try FileDescriptor.open(try FileDescriptor.readLink("/proc/self/exe"), O_RDONLY)
        defer { exe.close() }
        #expect(fsync(exe.rawValue) == 0)
        let before = try #require(ProcessMemory.executableCodeKiB("self"))
        try #require(before > 1024, "only \(before) KiB of code resident")
        #expect(CodePages.giveBack() >= 2)
        let after = try #require(ProcessMemory.executableCodeKiB("self"))
        #expect(after < before / 2, "\(before) KiB of code resident before, \(after) KiB after")
    }

    /// Once start-up's code is given back, the executable's pages nobody maps leave the page
    /// cache (the kernel maps the cached pages around each page a fault touches, so a cached
    /// binary came back 64 KiB at a time), and its mappings read no more than the page a fault
    /// needs (MADV_RANDOM, `rr` in smaps: kernels before 6.16 then read no neighbours).
    @Test func theExecutablesUnmappedPagesLeaveThePageCache() throws {
        let path = try FileDescriptor.readLink("/proc/self/exe")
        let exe = try FileDescriptor.open(path, O_RDONLY)
        defer { exe.close() }
        #expect(fsync(exe.rawValue) == 0)
        // Read all of it, as a binary just linked or copied is.
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while chunk.withUnsafeMutableBytes({ read(exe.rawValue, $0.baseAddress, $0.count) }) > 0 {}
        let before = try Self.cachedPages(exe.rawValue)
        CodePages.giveBack()
        let after = try Self.cachedPages(exe.rawValue).cached
        #expect(after < before.total / 2 && before.cached > before.total * 9 / 10,
                "\(before.cached) of \(before.total) pages cached before, \(after) after")
        let smaps = try FileDescriptor.readText(path: "/proc/self/smaps")
        // The VmFlags line of each read-only mapping of the executable.
        var flags: [Substring] = [], readOnlyExe = false
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            if fields.first?.hasSuffix(":") == false {
                readOnlyExe = fields.count == 6 && fields[5].drop(while: { $0 == " " }) == path && !fields[1].contains("w")
            } else if readOnlyExe, line.hasPrefix("VmFlags:") {
                flags.append(line)
            }
        }
        #expect(!flags.isEmpty && flags.allSatisfy { $0.split(separator: " ").contains("rr") }, "\(flags)")
    }

    /// The pages of the open file `fd` in the page cache, and all its pages (mincore of a mapping).
    static func cachedPages(_ fd: Int32) throws -> (cached: Int, total: Int) {
        var st = stat()
        try #require(fstat(fd, &st) == 0)
        let size = Int(st.st_size), page = Int(getpagesize())
        let total = (size + page - 1) / page
        let map = try #require(mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0))
        try #require(map != MAP_FAILED)
        defer { munmap(map, size) }
        var vector = [UInt8](repeating: 0, count: total)
        try #require(mincore(map, size, &vector) == 0)
        return (vector.reduce(0) { $0 + Int($1 & 1) }, total)
    }
}
