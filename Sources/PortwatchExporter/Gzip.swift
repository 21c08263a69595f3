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

        init?(level: Int32) {
            z = .allocate(capacity: 1)
            z.initialize(to: z_stream())
            guard pw_deflate_init_gzip(z, level) == Z_OK else {
                z.deallocate()
                return nil
            }
        }

        /// A stream that goes on from where `source` is, without compressing again what it has.
        init?(copying source: Stream) {
            z = .allocate(capacity: 1)
            z.initialize(to: z_stream())
            guard deflateCopy(z, source.z) == Z_OK else {
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

    /// The compressed start of a body that many responses share: each `finish` gives a whole
    /// gzip body of that start plus a tail, compressing only the tail.
    final class Prefix: @unchecked Sendable {
        private let stream: Stream
        private let compressed: [UInt8]

        init?(_ prefix: [ArraySlice<UInt8>], level: Int32 = 5) {
            guard let stream = Stream(level: level) else { return nil }
            var out: [UInt8] = []
            out.reserveCapacity(prefix.reduce(0) { $0 + $1.count } / 4 + 64)
            for (i, piece) in prefix.enumerated() {
                guard stream.deflate(piece, flush: i == prefix.count - 1 ? Z_SYNC_FLUSH : Z_NO_FLUSH, into: &out) else { return nil }
            }
            if prefix.isEmpty { guard stream.deflate([], flush: Z_SYNC_FLUSH, into: &out) else { return nil } }
            self.stream = stream
            compressed = out
        }

        /// The whole gzip body in two parts: the shared compressed prefix (not copied) and the
        /// compressed tail. Reads the prefix's stream only (a copy goes on), so several threads
        /// may finish at once.
        func finish(_ tail: [UInt8]) -> [[UInt8]]? {
            guard let copy = Stream(copying: stream) else { return nil }
            var out: [UInt8] = []
            return copy.deflate(tail[...], flush: Z_FINISH, into: &out) ? [compressed, out] : nil
        }
    }
}
