import CSystem

/// Tuning of glibc's allocator (malloc.h is not in Swift's Glibc module: it comes through CSystem).
public enum Allocator {
    /// Blocks of at least `bytes` get their own mapping and go back to the kernel when freed.
    /// Setting it also stops glibc from raising the threshold to the largest block freed so
    /// far, after which such blocks come from the heap, which keeps its high-water mark.
    @discardableResult
    public static func mapBlocks(from bytes: Int32) -> Bool { mallopt(M_MMAP_THRESHOLD, bytes) == 1 }

    /// Every thread allocates from the one heap instead of an arena of its own (glibc gives each
    /// thread that allocates one, up to 8 per core). A daemon's threads hand their data to each
    /// other (the capture thread's rows, the scrape's entries, the HTTP thread's buffers): in
    /// arenas of their own, each keeps its free blocks and its top to itself. Small blocks
    /// still come from each thread's own cache without a lock. Call before starting threads.
    @discardableResult
    public static func shareOneArena() -> Bool { mallopt(M_ARENA_MAX, 1) == 1 }

    /// Bytes free inside the heap's arenas: memory the process holds from the kernel (and
    /// counts in its RSS) but does not use. It grows when a large table shrinks: blocks of
    /// all sizes below the mapping threshold are freed in place, and an arena returns only the
    /// free memory at its top by itself.
    public static var freeBytes: Int { Int(pw_heap_free_bytes()) }

    /// Gives the whole free pages inside every arena back to the kernel (`malloc_trim(0)`)
    /// when more than `slack` bytes are free there; true when some were. A walk of every arena,
    /// for a daemon to do now and then, not after each free.
    @discardableResult
    public static func giveBackFreePages(above slack: Int) -> Bool {
        freeBytes > slack && pw_heap_trim() == 1
    }
}
