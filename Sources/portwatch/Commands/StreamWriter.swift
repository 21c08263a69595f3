import Glibc
import PortwatchSystem
import PortwatchCore

/// Buffered output to stdout for commands that print many lines: cells, numbers and JSON
/// fields go straight into one byte buffer, written out per 64 KiB (and on `flush`), with no
/// intermediate strings per line.
struct StreamWriter {
    private(set) var buffer: ByteBuffer
    /// Whether a full buffer goes to stdout at the end of a line (false: the owner hands the
    /// buffer on, as the history's reader threads do).
    private let flushes: Bool
    /// Whether the current JSON object has a field yet.
    private var firstField = true
    private var inArray = false, firstElement = true
    /// The last second formatted as RFC 3339, and its text: rows come in time order, so most reuse it.
    private var cachedSecond: UInt64 = .max
    private var cachedTime: [UInt8] = []

    init(buffer: ByteBuffer = ByteBuffer(), flushes: Bool = true) {
        self.buffer = buffer
        self.flushes = flushes
    }

    /// Goes on writing into another buffer (keeping what it caches).
    mutating func use(_ buffer: ByteBuffer) { self.buffer = buffer }

    // MARK: Text

    mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { buffer.append(UnsafeRawBufferPointer($0)) }
    }

    mutating func append(byte: UInt8) { buffer.append(byte) }

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) { buffer.append(UnsafeRawBufferPointer(bytes)) }

    /// Whole lines formatted elsewhere.
    mutating func appendLines(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(bytes)
        if flushes && buffer.count >= 1 << 16 { flush() }
    }

    /// A duration as `DurationText.format` writes it (950ms, 1h2m3s), without making a String.
    mutating func append(duration ns: UInt64) {
        DurationText.parts(ns) { number, unit in
            append(unsigned: number, width: 0)
            buffer.append(unit)
        }
    }

    mutating func append(_ value: Int64) {
        if value < 0 { buffer.append(UInt8(ascii: "-")) }
        append(unsigned: value.magnitude, width: 0)
    }

    /// `value` in decimal, zero-padded to `width`.
    mutating func append(unsigned value: UInt64, width: Int) {
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes: enough for 20 digits
        let count = withUnsafeMutableBytes(of: &digits) { raw -> Int in
            var v = value, n = 0
            repeat {
                raw[31 - n] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                n += 1
            } while v > 0
            while n < min(width, 32) {
                raw[31 - n] = UInt8(ascii: "0")
                n += 1
            }
            return n
        }
        withUnsafeBytes(of: &digits) { buffer.append(UnsafeRawBufferPointer(rebasing: $0[(32 - count)...])) }
    }

    /// RFC 3339 in UTC to the second (2026-01-01T00:00:00Z), as `LedgerOutput.time` writes it.
    mutating func append(time ns: UInt64) {
        let second = ns / 1_000_000_000
        if second != cachedSecond {
            cachedSecond = second
            cachedTime = Array(LedgerOutput.time(ns).utf8)
        }
        cachedTime.withUnsafeBytes { buffer.append($0) }
    }

    // MARK: Table lines

    /// Ends the current cell: pads it to `width` characters plus the two-space gap (a longer
    /// cell pushes the rest of the line right).
    mutating func endCell(at cellStart: Int, width: Int) {
        let characters = buffer.characters(from: cellStart)
        buffer.append(repeating: UInt8(ascii: " "), count: max(0, width - characters) + 2)
    }

    /// `endCell` for a cell known to be ASCII (numbers, times, fixed words): no scan.
    mutating func endASCIICell(at cellStart: Int, width: Int) {
        buffer.append(repeating: UInt8(ascii: " "), count: max(0, width - (buffer.count - cellStart)) + 2)
    }

    /// Where the next cell starts (pass it to `endCell`).
    var position: Int { buffer.count }

    mutating func cell(_ text: String, width: Int) {
        let start = position
        append(text)
        endCell(at: start, width: width)
    }

    /// A cell of text bytes, or "-" when there are none.
    mutating func cell(_ bytes: UnsafeBufferPointer<UInt8>, width: Int) {
        let start = position
        if bytes.isEmpty { buffer.append(UInt8(ascii: "-")) } else { append(bytes) }
        endCell(at: start, width: width)
    }

    mutating func endLine() {
        buffer.append(10)
        if flushes && buffer.count >= 1 << 16 { flush() }
    }

    // MARK: JSON: one object per line, or one array of them

    /// Starts an array: the objects until `endArray` are its elements, one per line.
    mutating func beginArray() {
        buffer.append(UInt8(ascii: "["))
        inArray = true
        firstElement = true
    }

    mutating func endArray() {
        buffer.append(UInt8(ascii: "]"))
        inArray = false
        endLine()
    }

    mutating func beginObject() {
        if inArray {
            if !firstElement { buffer.append(",\n") }
            firstElement = false
        }
        buffer.append(UInt8(ascii: "{"))
        firstField = true
    }

    /// Ends the object, and its line outside an array (JSON Lines).
    mutating func endObject() {
        buffer.append(UInt8(ascii: "}"))
        if !inArray { endLine() }
    }

    /// An array of numbers.
    mutating func field(_ key: StaticString, numbers: [Int64]) {
        field(key)
        buffer.append(UInt8(ascii: "["))
        for (i, n) in numbers.enumerated() {
            if i > 0 { buffer.append(UInt8(ascii: ",")) }
            append(n)
        }
        buffer.append(UInt8(ascii: "]"))
    }

    mutating func field(_ key: StaticString) {
        if !firstField { buffer.append(UInt8(ascii: ",")) }
        firstField = false
        buffer.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { buffer.append(UnsafeRawBufferPointer($0)) }
        buffer.append("\":")
    }

    mutating func field(_ key: StaticString, _ value: String?) {
        guard var value else { return field(key, bytes: nil) }
        value.withUTF8 { field(key, bytes: $0) }
    }

    /// A string field from UTF-8 bytes (nil: null).
    mutating func field(_ key: StaticString, bytes: UnsafeBufferPointer<UInt8>?) {
        field(key)
        guard let bytes else { return buffer.append("null") }
        buffer.append(UInt8(ascii: "\""))
        // Most values need no escaping: copied in one go.
        if bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "\""): buffer.append("\\\"")
                case UInt8(ascii: "\\"): buffer.append("\\\\")
                case 10: buffer.append("\\n")
                case 13: buffer.append("\\r")
                case 9: buffer.append("\\t")
                case 0..<0x20:
                    buffer.append("\\u00")
                    buffer.append(Self.hex[Int(byte >> 4)])
                    buffer.append(Self.hex[Int(byte & 15)])
                default: buffer.append(byte)
                }
            }
        } else {
            buffer.append(UnsafeRawBufferPointer(bytes))
        }
        buffer.append(UInt8(ascii: "\""))
    }

    private static let hex = Array("0123456789abcdef".utf8)

    mutating func field(_ key: StaticString, _ value: Int64) {
        field(key)
        append(value)
    }

    /// Nanoseconds as seconds with the fraction it has (1.5, 2, 0.000001), or null.
    mutating func field(_ key: StaticString, seconds ns: UInt64?) {
        field(key)
        guard let ns else { return buffer.append("null") }
        append(unsigned: ns / 1_000_000_000, width: 0)
        var fraction = ns % 1_000_000_000
        guard fraction > 0 else { return }
        var width = 9
        while fraction % 10 == 0 { fraction /= 10; width -= 1 }
        buffer.append(UInt8(ascii: "."))
        append(unsigned: fraction, width: width)
    }

    mutating func flush() {
        do { try FileDescriptor.writeAll(UnsafeRawBufferPointer(start: buffer.start, count: buffer.count), to: STDOUT_FILENO) } catch {
            // The reader went away (`| head`): nothing more to say.
            exit(0)
        }
        buffer.count = 0
    }
}

/// A growable byte buffer written through a pointer: no copy-on-write checks per byte.
final class ByteBuffer {
    private(set) var start: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    var count = 0

    init(capacity: Int = 1 << 17) {
        self.capacity = capacity
        start = .allocate(capacity: capacity)
    }

    deinit { start.deallocate() }

    @inline(__always)
    private func reserve(_ n: Int) {
        if count + n > capacity { grow(n) }
    }

    @inline(never)
    private func grow(_ n: Int) {
        capacity = max(capacity * 2, count + n)
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        grown.update(from: start, count: count)
        start.deallocate()
        start = grown
    }

    @inline(__always)
    func append(_ byte: UInt8) {
        reserve(1)
        start[count] = byte
        count += 1
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        reserve(bytes.count)
        (start + count).update(from: base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        count += bytes.count
    }

    func append(_ text: StaticString) {
        text.withUTF8Buffer { append(UnsafeRawBufferPointer($0)) }
    }

    func append(repeating byte: UInt8, count n: Int) {
        reserve(max(n, 32))
        if n <= 32 {
            // A cell's padding: four word stores beat a call to memset.
            let word = UInt64(byte) &* 0x0101_0101_0101_0101
            let p = UnsafeMutableRawPointer(start + count)
            for i in 0..<4 { p.storeBytes(of: word, toByteOffset: i * 8, as: UInt64.self) }
        } else {
            (start + count).initialize(repeating: byte, count: n)
        }
        count += n
    }

    /// UTF-8 characters (scalars) from `offset` to the end.
    func characters(from offset: Int) -> Int {
        var n = 0
        for i in offset..<count where start[i] & 0xC0 != 0x80 { n += 1 }
        return n
    }
}
