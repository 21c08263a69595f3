#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An IP address's 16 bytes as the kernel holds them: network order, an IPv4 address in the
/// first 4 and zeros after. A fixed-size value with no reference, ordered by value.
public struct AddressBytes: Sendable, Hashable, Comparable {
    /// Bytes 0-7 and 8-15, loaded in memory order.
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64 = 0, low: UInt64 = 0) {
        self.high = high
        self.low = low
    }

    /// The address of `family` at the start of `raw` (4 bytes for IPv4, 16 for IPv6); what
    /// follows an IPv4 address is ignored, so that every source of a key compares alike.
    public init(_ raw: UnsafeRawBufferPointer, family: AddressFamily) {
        if raw.count >= 16 {
            // The decoder's path, once per event: two loads and a mask.
            let high = raw.loadUnaligned(as: UInt64.self)
            self.init(high: family == .ipv4 ? high & Self.firstFourBytes : high,
                      low: family == .ipv4 ? 0 : raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            return
        }
        var bytes = (UInt64(0), UInt64(0))
        let count = min(raw.count, family == .ipv4 ? 4 : 16)
        withUnsafeMutableBytes(of: &bytes) { out in
            if count > 0 { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw.prefix(count))) }
        }
        self.init(high: bytes.0, low: bytes.1)
    }

    /// Keeps the first four bytes in memory of a loaded UInt64, whatever the byte order.
    private static let firstFourBytes = UInt64(littleEndian: 0x0000_0000_ffff_ffff)

    /// Parses text as inet_pton does; nil when it is not an address of `family`.
    public init?(text: String, family: AddressFamily) {
        var bytes = (UInt64(0), UInt64(0))
        let ok = withUnsafeMutableBytes(of: &bytes) { inet_pton(family == .ipv4 ? AF_INET : AF_INET6, text, $0.baseAddress) == 1 }
        guard ok else { return nil }
        self.init(high: bytes.0, low: bytes.1)
    }

    /// The canonical text form, as inet_ntop writes it ("0.0.0.0", "::1", "::ffff:10.0.0.1").
    public func text(_ family: AddressFamily) -> String {
        var bytes = (high, low)
        // INET6_ADDRSTRLEN (46) bytes, on the stack.
        var out: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &out) { buffer in
            let chars = buffer.baseAddress!.assumingMemoryBound(to: CChar.self)
            let ok = withUnsafeBytes(of: &bytes) { inet_ntop(family == .ipv4 ? AF_INET : AF_INET6, $0.baseAddress, chars, socklen_t(buffer.count)) } != nil
            return ok ? String(cString: chars) : "?"
        }
    }

    /// By value, as the bytes read in network order.
    public static func < (a: Self, b: Self) -> Bool {
        (UInt64(bigEndian: a.high), UInt64(bigEndian: a.low)) < (UInt64(bigEndian: b.high), UInt64(bigEndian: b.low))
    }
}

/// A process name as the kernel keeps it (comm: at most 15 bytes), held in place: a
/// fixed-size value with no reference. Text of more than 16 bytes is cut at a character.
public struct ProcessName: Sendable, Hashable, CustomStringConvertible {
    private var high: UInt64
    private var low: UInt64

    public init(_ text: String) {
        var bytes = (UInt64(0), UInt64(0))
        var count = 0
        for scalar in text.unicodeScalars {
            let length = UTF8.width(scalar)
            guard count + length <= 16 else { break }
            count += length
        }
        withUnsafeMutableBytes(of: &bytes) { out in
            for (i, byte) in text.utf8.prefix(count).enumerated() { out[i] = byte }
        }
        high = bytes.0
        low = bytes.1
    }

    /// The kernel's NUL-padded name, read as text the way every other source of a name is
    /// (bytes that are not UTF-8 become U+FFFD), so that names from the kernel and from the
    /// ledger compare alike.
    public init(kernel raw: UnsafeRawBufferPointer) {
        self.init(String(decoding: raw.prefix(16).prefix { $0 != 0 }, as: UTF8.self))
    }

    public var text: String {
        var bytes = (high, low)
        return withUnsafeBytes(of: &bytes) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    public var isEmpty: Bool { high == 0 && low == 0 }

    public var description: String { text }
}
