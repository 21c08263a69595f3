import Glibc
@testable import PortwatchSystem
import PortwatchTestSupport
import Testing

/// The code and constants only start-up used leave the daemon's resident memory.
@Suite struct CodePagesTests {
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
}
