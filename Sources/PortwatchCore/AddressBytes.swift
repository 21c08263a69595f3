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
    /// Inlinable: the decoder makes one per event.
    @inlinable
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
    @usableFromInline
    static var firstFourBytes: UInt64 { UInt64(littleEndian: 0x0000_0000_ffff_ffff) }

    /// Parses text as inet_pton does; nil when it is not an address of `family`.
    public init?(text: String, family: AddressFamily) {
        var bytes = (UInt64(0), UInt64(0))
        let ok = withUnsafeMutableBytes(of: &bytes) { inet_pton(family == .ipv4 ? AF_INET : AF_INET6, text, $0.baseAddress) == 1 }
        guard ok else { return nil }
        self.init(high: bytes.0, low: bytes.1)
    }

    /// The canonical text form, as inet_ntop writes it ("0.0.0.0", "::1", "::ffff:10.0.0.1"):
    /// written here, since glibc's goes through sprintf, a measurable share of a row's write.
    public func text(_ family: AddressFamily) -> String {
        var bytes = (high, low)
        return withUnsafeBytes(of: &bytes) { raw in
            // Written on the stack: an address of up to 15 characters becomes a String with
            // no allocation at all.
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 48) { buffer in
                var out = TextOut(buffer)
                if family == .ipv4 {
                    Self.appendIPv4(raw, at: 0, to: &out)
                } else {
                    Self.appendIPv6(raw, to: &out)
                }
                return String(decoding: UnsafeBufferPointer(rebasing: buffer.prefix(out.count)), as: UTF8.self)
            }
        }
    }

    /// Bytes appended to a buffer long enough for any address (45 characters).
    private struct TextOut {
        let buffer: UnsafeMutableBufferPointer<UInt8>
        var count = 0
        init(_ buffer: UnsafeMutableBufferPointer<UInt8>) { self.buffer = buffer }
        mutating func append(_ byte: UInt8) {
            buffer[count] = byte
            count += 1
        }
    }

    /// The four bytes from `offset` as a dotted quad.
    private static func appendIPv4(_ raw: UnsafeRawBufferPointer, at offset: Int, to out: inout TextOut) {
        for i in 0..<4 {
            let byte = raw[offset + i]
            if i > 0 { out.append(UInt8(ascii: ".")) }
            if byte >= 100 { out.append(UInt8(ascii: "0") + byte / 100) }
            if byte >= 10 { out.append(UInt8(ascii: "0") + byte / 10 % 10) }
            out.append(UInt8(ascii: "0") + byte % 10)
        }
    }

    /// inet_ntop's IPv6 form: hextets in lower-case hex without leading zeros, the first
    /// longest run of two or more zero hextets as "::", and the last 32 bits as an IPv4
    /// address when the first 96 are zero or ::ffff (IPv4-compatible and -mapped).
    private static func appendIPv6(_ raw: UnsafeRawBufferPointer, to out: inout TextOut) {
        func word(_ i: Int) -> UInt16 { UInt16(raw[2 * i]) << 8 | UInt16(raw[2 * i + 1]) }
        var best = (base: -1, length: 0), run = (base: -1, length: 0)
        for i in 0..<8 {
            if word(i) == 0 {
                run = run.base < 0 ? (i, 1) : (run.base, run.length + 1)
                if run.length > best.length { best = run }
            } else {
                run = (-1, 0)
            }
        }
        if best.length < 2 { best = (-1, 0) }
        var i = 0
        while i < 8 {
            if best.base >= 0 && i >= best.base && i < best.base + best.length {
                if i == best.base { out.append(UInt8(ascii: ":")) }
                i += 1
                continue
            }
            if i > 0 { out.append(UInt8(ascii: ":")) }
            if i == 6 && best.base == 0 && (best.length == 6 || (best.length == 5 && word(5) == 0xffff)) {
                appendIPv4(raw, at: 12, to: &out)
                return
            }
            let hextet = word(i)
            var started = false
            for shift in stride(from: 12, through: 0, by: -4) {
                let nibble = UInt8(hextet >> UInt16(shift) & 0xf)
                if nibble != 0 || started || shift == 0 {
                    out.append(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
                    started = true
                }
            }
            i += 1
        }
        if best.base >= 0 && best.base + best.length == 8 { out.append(UInt8(ascii: ":")) }
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
