/// What the kernel says of one socket that holds a port, beyond who holds it: for a TCP
/// listener its accept queue and that queue's limit (the backlog), and for it or a bound UDP
/// socket the packets it dropped (a full accept queue's SYNs, a full receive buffer's
/// datagrams). Read with sock_diag, one dump per namespace.
public struct SocketHealth: Sendable, Equatable {
    public var key: BindingKey
    public var cookie: UInt64
    /// Connections waiting to be accepted (TCP listeners); nil otherwise.
    public var queue: UInt32?
    /// The accept queue's limit (listen's backlog, capped by net.core.somaxconn).
    public var queueLimit: UInt32?
    /// Packets the socket dropped since it was made; nil where the kernel does not say.
    public var drops: UInt64?

    public init(key: BindingKey, cookie: UInt64, queue: UInt32? = nil, queueLimit: UInt32? = nil, drops: UInt64? = nil) {
        self.key = key
        self.cookie = cookie
        self.queue = queue
        self.queueLimit = queueLimit
        self.drops = drops
    }

    /// The sockets of one port summed (an SO_REUSEPORT group shares its port): queues and
    /// limits add up, as the connections they can hold do; drops add up.
    public static func perPort(_ sockets: [SocketHealth]) -> [BindingKey: SocketHealth] {
        var out: [BindingKey: SocketHealth] = [:]
        for s in sockets {
            guard var sum = out[s.key] else { out[s.key] = s; continue }
            sum.queue = add(sum.queue, s.queue)
            sum.queueLimit = add(sum.queueLimit, s.queueLimit)
            sum.drops = add(sum.drops, s.drops)
            out[s.key] = sum
        }
        return out
    }

    private static func add<T: FixedWidthInteger>(_ a: T?, _ b: T?) -> T? {
        guard let a else { return b }
        guard let b else { return a }
        return a &+ b
    }
}
