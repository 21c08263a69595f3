import CZlib

enum Gzip {
    /// gzip-framed deflate of `input`; nil if zlib fails.
    static func compress(_ input: [UInt8], level: Int32 = 5) -> [UInt8]? {
        guard let stream = Stream(level: level) else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 + 64)
        return stream.deflate(input[...], flush: Z_FINISH, into: &out) ? out : nil
    }

    /// Whether an Accept-Encoding header allows gzip (q > 0).
    static func accepted(_ header: String?) -> Bool {
        guard let header else { return false }
        for coding in header.split(separator: ",") {
            let parts = coding.split(separator: ";").map { $0.filter { $0 != " " && $0 != "\t" }.lowercased() }
            guard let name = parts.first, name == "gzip" || name == "*" else { continue }
            let q = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            if q > 0 { return true }
        }
        return false
    }

    /// A gzip deflate stream at a fixed address (zlib's state points back at it).
    final class Stream {
        let z: UnsafeMutablePointer<z_stream>

        /// `raw`: no gzip framing (a piece of a member that `Member` frames).
        init?(level: Int32, raw: Bool = false) {
            z = .allocate(capacity: 1)
            z.initialize(to: z_stream())
            guard (raw ? pw_deflate_init_raw(z, level) : pw_deflate_init_gzip(z, level)) == Z_OK else {
                z.deallocate()
                return nil
            }
        }

        deinit {
            deflateEnd(z)
            z.deallocate()
        }

        /// Compresses `input` and appends what comes out: with Z_SYNC_FLUSH up to a byte
        /// boundary, with Z_FINISH to the end of the gzip member.
        func deflate(_ input: ArraySlice<UInt8>, flush: Int32, into out: inout [UInt8]) -> Bool {
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            return input.withUnsafeBufferPointer { inBuf in
                z.pointee.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
                z.pointee.avail_in = uInt(inBuf.count)
                defer { z.pointee.next_in = nil }
                while true {
                    let (rc, produced) = chunk.withUnsafeMutableBufferPointer { c -> (Int32, Int) in
                        z.pointee.next_out = c.baseAddress
                        z.pointee.avail_out = uInt(c.count)
                        let rc = CZlib.deflate(z, flush)
                        return (rc, c.count - Int(z.pointee.avail_out))
                    }
                    guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else { return false }
                    out += chunk[0..<produced]
                    if flush == Z_FINISH ? rc == Z_STREAM_END : (z.pointee.avail_in == 0 && z.pointee.avail_out != 0) { return true }
                    // No progress: done when all input is in (a flush that ended on a full chunk), else stuck.
                    if rc == Z_BUF_ERROR && produced == 0 { return flush != Z_FINISH && z.pointee.avail_in == 0 }
                }
            }
        }
    }

    /// Bytes compressed on their own: raw deflate cut at a sync flush (a byte boundary, no
    /// final block), so that pieces compressed apart, in any number of runs, join into one
    /// deflate stream (a piece refers to nothing before it). With the crc and length the gzip
    /// trailer needs.
    struct Piece: Sendable {
        var compressed: [UInt8]
        var crc: UInt32
        var length: Int

        /// `stream` is a raw stream, reset here (one stream serves many pieces).
        init?(_ bytes: ArraySlice<UInt8>, stream: Stream, finish: Bool = false) {
            guard deflateReset(stream.z) == Z_OK else { return nil }
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count / 4 + 64)
            guard stream.deflate(bytes, flush: finish ? Z_FINISH : Z_SYNC_FLUSH, into: &out) else { return nil }
            // Kept at its size: text compresses far better than the room reserved for it (a
            // chunk of per-port lines to a 30th, where a quarter was reserved).
            compressed = out.capacity > 2 * out.count + 256 ? out.withUnsafeBufferPointer { Array($0) } : out
            length = bytes.count
            crc = bytes.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
        }
    }

    /// The start of a body that many responses share, as compressed pieces: each `finish`
    /// gives a whole gzip member of that start plus a tail, compressing only the tail.
    final class Member: Sendable {
        private let compressed: [UInt8]
        private let crc: UInt32
        private let length: Int
        private let level: Int32

        /// The gzip header and `pieces`, in order.
        init(_ pieces: [Piece], level: Int32 = 5) {
            var out: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]
            out.reserveCapacity(pieces.reduce(10) { $0 + $1.compressed.count })
            var crc: uLong = 0, length = 0
            for piece in pieces {
                out += piece.compressed
                crc = crc32_combine(crc, uLong(piece.crc), off_t(piece.length))
                length += piece.length
            }
            compressed = out
            self.crc = UInt32(crc)
            self.length = length
            self.level = level
        }

        /// The whole member in two parts: the shared start (not copied), then the tail
        /// compressed with the final block, and the trailer (crc, length).
        func finish(_ tail: [UInt8]) -> [ArraySlice<UInt8>]? {
            guard let stream = Stream(level: level, raw: true), var last = Piece(tail[...], stream: stream, finish: true) else { return nil }
            let crc = UInt32(crc32_combine(uLong(self.crc), uLong(last.crc), off_t(last.length)))
            let length = UInt32(truncatingIfNeeded: self.length + last.length)
            for value in [crc, length] { withUnsafeBytes(of: value.littleEndian) { last.compressed += $0 } }
            return [compressed[...], last.compressed[...]]
        }
    }
}
