/// A socket holding a port as a listener now, as a snapshot of the kernel reports it: a TCP
/// socket in LISTEN, a TCP socket bound and neither listening nor connected, or a UDP socket
/// bound and not connected.
public struct LiveSocket: Sendable, Hashable {
    public var cookie: UInt64
    public var key: BindingKey
    public var owner: Owner
    public var state: SocketState

    public init(cookie: UInt64, key: BindingKey, owner: Owner, state: SocketState) {
        self.cookie = cookie
        self.key = key
        self.owner = owner
        self.state = state
    }
}

/// What the kernel's map of bound sockets says about one socket.
public struct RememberedSocket: Sendable, Equatable {
    public var transport: TransportProtocol
    public var state: SocketState
    /// A client now (it connected): a snapshot does not list it, and its release reports nothing.
    public var client: Bool

    public init(transport: TransportProtocol, state: SocketState, client: Bool = false) {
        self.transport = transport
        self.state = state
        self.client = client
    }
}
