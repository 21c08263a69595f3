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
        guard let head = String(validating: bytes[..<end], as: UTF8.self) else { return .failure(status: 400) }
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)[...]
        guard let requestLine = lines.popFirst() else { return .failure(status: 400) }
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].utf8.allSatisfy(Self.isToken),
              parts[1].first == "/" || parts[1] == "*", parts[1].utf8.allSatisfy({ $0 > 32 && $0 < 127 })
        else { return .failure(status: 400) }
        let version = String(parts[2])
        guard version.hasPrefix("HTTP/"), version.count == 8 else { return .failure(status: 400) }
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { return .failure(status: 505) }

        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { return .failure(status: 400) }
            let name = line[..<colon]
            guard !name.isEmpty, name.utf8.allSatisfy(Self.isToken) else { return .failure(status: 400) }
            let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
            guard value.utf8.allSatisfy({ $0 >= 32 || $0 == 9 }) else { return .failure(status: 400) }
            headers.append((name.lowercased(), String(value.reversed().drop { $0 == " " || $0 == "\t" }.reversed())))
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
        let question = target.firstIndex(of: "?")
        let request = HTTPRequest(method: String(parts[0]), path: String(target[..<(question ?? target.endIndex)]),
                                  query: question.map { String(target[target.index(after: $0)...]) } ?? "",
                                  version: version, headers: headers)
        return .request(request, consumed: consumed)
    }

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
