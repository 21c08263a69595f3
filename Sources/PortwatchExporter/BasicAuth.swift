import CCrypt
import FoundationEssentials
import Glibc
import Synchronization

/// HTTP basic authentication against bcrypt hashes, as Prometheus's exporter-toolkit does it:
/// constant-time comparison, the same cost for unknown users as for known ones, and a cache of
/// recent successes (keyed by a per-process random hash, never the password) so that a scrape
/// every few seconds does not pay bcrypt each time.
public final class BasicAuth: Sendable {
    private let users: [String: String]
    private let decoy: String
    private let verified = Mutex<[String: Int]>([:])

    /// `users`: name -> bcrypt hash ($2a$, $2b$ or $2y$).
    public init(users: [String: String]) {
        self.users = users
        // A hash with the cost of the first user's, for names that do not exist.
        let cost = users.values.sorted().first.map { String($0.prefix(7)) } ?? "$2b$10$"
        decoy = cost + "abcdefghijklmnopqrstuu5V4IMrFaq5GhlPDl.1RVcMo2IanqVW"
    }

    /// True if the Authorization header carries a known user and the right password.
    public func allows(authorization: String?) -> Bool {
        guard let authorization, authorization.lowercased().hasPrefix("basic "),
              let decoded = Data(base64Encoded: authorization.dropFirst(6).trimmingBlanks),
              let text = String(data: decoded, encoding: .utf8), let colon = text.firstIndex(of: ":") else { return false }
        let user = String(text[..<colon]), password = String(text[text.index(after: colon)...])
        var hasher = Hasher()
        hasher.combine(user)
        hasher.combine(password)
        let key = hasher.finalize()
        if verified.withLock({ $0[user] == key }) { return true }
        let expected = users[user]
        let ok = Self.verify(password, against: expected ?? decoy) && expected != nil
        if ok { verified.withLock { $0[user] = key } }
        return ok
    }

    static func verify(_ password: String, against hash: String) -> Bool {
        var out = [CChar](repeating: 0, count: 512)
        guard pw_crypt(password, hash, &out, Int32(out.count)) == 0 else { return false }
        let computed = Array(String(cString: out).utf8), wanted = Array(hash.utf8)
        guard computed.count == wanted.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<wanted.count { difference |= computed[i] ^ wanted[i] }
        return difference == 0
    }
}
