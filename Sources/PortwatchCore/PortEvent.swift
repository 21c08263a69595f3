/// One kernel observation, decoded from the ring buffer (or synthesised by a resync).
public struct PortEvent: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// A socket took a port, or changed state on it (bound -> listen).
        case open
        /// The last reference to a bound socket went away.
        case close
    }

    public var kind: Kind
    /// Socket cookie: identifies one socket for its whole life.
    public var cookie: UInt64
    /// Wall-clock nanoseconds since the Unix epoch.
    public var time: UInt64
    public var key: BindingKey
    public var owner: Owner
    public var state: SocketState

    public init(kind: Kind, cookie: UInt64, time: UInt64, key: BindingKey, owner: Owner, state: SocketState) {
        self.kind = kind
        self.cookie = cookie
        self.time = time
        self.key = key
        self.owner = owner
        self.state = state
    }
}
