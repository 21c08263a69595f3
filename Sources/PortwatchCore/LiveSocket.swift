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
    /// The socket's network namespace (inode): a resync that could not list it leaves it be.
    public var netns: UInt32

    public init(transport: TransportProtocol, state: SocketState, client: Bool = false, netns: UInt32 = 0) {
        self.transport = transport
        self.state = state
        self.client = client
        self.netns = netns
    }
}

/// What one snapshot of the kernel's sockets saw: the sockets holding ports, and the network
/// namespaces it listed. A namespace it could not list (gone, or its dump failed) is absent, and
/// nothing in it may be taken for closed.
public struct SocketListing: Sendable {
    public var sockets: [LiveSocket]
    public var namespaces: Set<UInt32>
    /// The handles each listed namespace can be entered by (/proc/PID/ns/net, a bind mount),
    /// so that later dumps (the listener health) need no /proc scan of their own.
    public var handles: [UInt32: [String]]

    public init(sockets: [LiveSocket], namespaces: Set<UInt32>, handles: [UInt32: [String]] = [:]) {
        self.sockets = sockets
        self.namespaces = namespaces
        self.handles = handles
    }
}
