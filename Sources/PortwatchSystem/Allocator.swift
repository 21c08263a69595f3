import Glibc

/// Tuning of glibc's allocator (malloc.h is not in Swift's Glibc module; the call is looked up).
public enum Allocator {
    /// Blocks of at least `bytes` get their own mapping and go back to the kernel when freed.
    /// Setting it also stops glibc from raising the threshold to the largest block freed so
    /// far, after which such blocks come from the heap, which keeps its high-water mark.
    /// False if the allocator is not glibc's.
    @discardableResult
    public static func mapBlocks(from bytes: Int32) -> Bool {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        return mallopt(mmapThreshold, bytes) == 1
    }

    /// M_MMAP_THRESHOLD in <malloc.h>.
    private static let mmapThreshold: Int32 = -3
}
