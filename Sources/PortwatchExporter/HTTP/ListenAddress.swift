import Glibc
import PortwatchSystem

/// A `--web.listen-address` value: `host:port`, `[v6]:port` or `:port` (every interface).
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        else if host.contains(":") { return nil }
        if host == "localhost" { host = "127.0.0.1" }
        if !host.isEmpty && Self.family(of: host) == nil { return nil }
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    static func family(of host: String) -> Int32? {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return AF_INET }
        if inet_pton(AF_INET6, host, &v6) == 1 { return AF_INET6 }
        return nil
    }

    /// A non-blocking listening socket, SO_REUSEADDR so that a restart rebinds at once.
    /// An empty host listens on every interface, IPv6 and IPv4 alike.
    func openListener() throws -> FileDescriptor {
        let family = host.isEmpty ? AF_INET6 : Self.family(of: host)!
        let fd = try FileDescriptor.socket(family, Int32(SOCK_STREAM.rawValue), nonBlocking: true)
        do {
            try fd.setOption(SOL_SOCKET, SO_REUSEADDR, 1)
            if family == AF_INET6 {
                try fd.setOption(Int32(IPPROTO_IPV6), IPV6_V6ONLY, host.isEmpty ? 0 : 1)
                var sa = sockaddr_in6()
                sa.sin6_family = sa_family_t(AF_INET6)
                sa.sin6_port = port.bigEndian
                if !host.isEmpty { inet_pton(AF_INET6, host, &sa.sin6_addr) }
                try withUnsafePointer(to: &sa) {
                    try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        try fd.bind($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                    }
                }
            } else {
                var sa = sockaddr_in()
                sa.sin_family = sa_family_t(AF_INET)
                sa.sin_port = port.bigEndian
                inet_pton(AF_INET, host, &sa.sin_addr)
                try withUnsafePointer(to: &sa) {
                    try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        try fd.bind($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
            try fd.listen(backlog: 128)
            return fd
        } catch {
            fd.close()
            throw error
        }
    }
}
