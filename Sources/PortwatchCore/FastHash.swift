/// Hashing for the keys of the capture path's dictionaries: a few multiplies and shifts per
/// word (splitmix64's finalizer, a bijection), mixed with the dictionary's seed, instead of
/// SipHash. The keys are cookies from a kernel counter and the ports and addresses of this
/// host, not text anyone can choose freely, and the seed differs per dictionary and process.
enum FastHash {
    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// The hash of one word under `seed`.
    @inline(__always)
    static func hash(_ word: UInt64, seed: Int) -> Int {
        Int(truncatingIfNeeded: mix(word ^ UInt64(truncatingIfNeeded: seed)))
    }

    /// The hash of three words under `seed`, each word mixed into the last one's result.
    @inline(__always)
    static func hash(_ a: UInt64, _ b: UInt64, _ c: UInt64, seed: Int) -> Int {
        Int(truncatingIfNeeded: mix(mix(mix(a ^ UInt64(truncatingIfNeeded: seed)) ^ b) ^ c))
    }
}
