/// Parses HTTP/1.x requests from bytes as they arrive: partial input gives `.incomplete`,
/// several pipelined requests are taken one at a time. Pure, so it can be fuzzed.
public struct HTTPParser: Sendable {
    public enum Result: Equatable {
        case incomplete
        /// A request, and how many bytes of the input it used (head and body).
        case request(HTTPRequest, consumed: Int)
        /// The input cannot be a valid request: answer with this status and close.
        case failure(status: Int)
    }

    public var maxHeaderBytes: Int
    public var maxBodyBytes: Int

    public init(maxHeaderBytes: Int = 8192, maxBodyBytes: Int = 65536) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
    }

    public func parse(_ input: some RandomAccessCollection<UInt8>) -> Result {
        let bytes = Array(input.prefix(maxHeaderBytes + 4))
        guard let end = headEnd(bytes) else {
            return bytes.count > maxHeaderBytes ? .failure(status: 431) : .incomplete
        }
        guard end <= maxHeaderBytes else { return .failure(status: 431) }
        // Read as bytes; a head that is not UTF-8 is refused as a whole.
        guard bytes[..<end].allSatisfy({ $0 < 0x80 }) || String(validating: bytes[..<end], as: UTF8.self) != nil else {
            return .failure(status: 400)
        }
        var lines = Self.lines(bytes[..<end])[...]
        guard let requestLine = lines.popFirst() else { return .failure(status: 400) }
        let parts = requestLine.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(Self.isToken),
              parts[1].first == UInt8(ascii: "/") || parts[1].elementsEqual([UInt8(ascii: "*")]),
              parts[1].allSatisfy({ $0 > 32 && $0 < 127 })
        else { return .failure(status: 400) }
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version.utf8.starts(with: "HTTP/".utf8), parts[2].count == 8 else { return .failure(status: 400) }
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { return .failure(status: 505) }

        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return .failure(status: 400) }
            let name = line[..<colon]
            guard !name.isEmpty, name.allSatisfy(Self.isToken) else { return .failure(status: 400) }
            var value = line[(colon + 1)...]
            guard value.allSatisfy({ $0 >= 32 || $0 == 9 }) else { return .failure(status: 400) }
            while let first = value.first, Self.isBlank(first) { value.removeFirst() }
            while let last = value.last, Self.isBlank(last) { value.removeLast() }
            // A token is ASCII: lower-cased byte by byte.
            let lowered = name.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 | 0x20 : $0 }
            headers.append((String(decoding: lowered, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        if headers.contains(where: { $0.0 == "transfer-encoding" }) { return .failure(status: 501) }
        let lengths = headers.filter { $0.0 == "content-length" }.map(\.1)
        var bodyLength = 0
        if let first = lengths.first {
            guard lengths.allSatisfy({ $0 == first }), let n = Int(first), n >= 0 else { return .failure(status: 400) }
            guard n <= maxBodyBytes else { return .failure(status: 413) }
            bodyLength = n
        }
        if version == "HTTP/1.1" && !headers.contains(where: { $0.0 == "host" }) { return .failure(status: 400) }
        let consumed = end + 4 + bodyLength
        guard input.count >= consumed else { return .incomplete }

        let target = parts[1]
        let question = target.firstIndex(of: UInt8(ascii: "?"))
        let request = HTTPRequest(method: String(decoding: parts[0], as: UTF8.self),
                                  path: String(decoding: target[..<(question ?? target.endIndex)], as: UTF8.self),
                                  query: question.map { String(decoding: target[($0 + 1)...], as: UTF8.self) } ?? "",
                                  version: version, headers: headers)
        return .request(request, consumed: consumed)
    }

    /// The head's lines, split at each CRLF (a lone CR or LF stays in its line).
    private static func lines(_ head: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var start = head.startIndex, i = head.startIndex
        while i < head.endIndex {
            if head[i] == 13, i + 1 < head.endIndex, head[i + 1] == 10 {
                out.append(head[start..<i])
                i += 2
                start = i
            } else {
                i += 1
            }
        }
        out.append(head[start..<head.endIndex])
        return out
    }

    private static func isBlank(_ c: UInt8) -> Bool { c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") }

    /// Index of the CRLFCRLF that ends the head.
    private func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }

    static func isToken(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(c)
        }
    }
}
