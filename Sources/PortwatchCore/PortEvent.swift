/// One kernel observation, decoded from the ring buffer (or synthesised by a resync).
public struct PortEvent: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// A socket took a port, or changed state on it (bound -> listen).
        case open
        /// The socket stopped holding its port as a listener (see `Reason`).
        case close
    }

    /// Why a close happened, or that an open was found by a resync rather than seen.
    public enum Reason: String, Sendable, Hashable, CaseIterable {
        /// The last reference to the socket went away (close, exit).
        case released
        /// The socket connected: a client from now on, whose port is only its source port.
        case connected
        /// A listener was shut down and gave its port back.
        case shutdown
        /// A resync found the kernel no longer holds the socket (a lost event, or a change
        /// with no kernel hook, such as a UDP disconnect).
        case resync
        /// For an update: another process holds the port now (the owner exited after a fork,
        /// handed the socket over, or exec'd another program).
        case holder
    }

    public var kind: Kind
    /// Socket cookie: identifies one socket for its whole life.
    public var cookie: UInt64
    /// Wall-clock nanoseconds since the Unix epoch.
    public var time: UInt64
    public var key: BindingKey
    /// Who took the port; the service, container and pod come from `cgroup`.
    public var process: OwnerProcess
    public var state: SocketState
    /// For a close: why. For an open: `resync` when a resync found it, else `released` (unused).
    public var reason: Reason
    /// The cgroup v2 id of the task that took the port (0: unknown): the reconciler names its
    /// service, container and pod from it when it makes a row or a transient record (the
    /// `attribute` function given to `Reconciler.flush`, or to `TransientLog.add`).
    public var cgroup: UInt64

    public init(kind: Kind, cookie: UInt64, time: UInt64, key: BindingKey, process: OwnerProcess, state: SocketState,
                reason: Reason = .released, cgroup: UInt64 = 0) {
        self.kind = kind
        self.cgroup = cgroup
        self.reason = reason
        self.cookie = cookie
        self.time = time
        self.key = key
        self.process = process
        self.state = state
    }

    /// An event of `owner`'s process. An event carries no attribution (it comes from `cgroup`):
    /// `owner` must have none.
    public init(kind: Kind, cookie: UInt64, time: UInt64, key: BindingKey, owner: Owner, state: SocketState,
                reason: Reason = .released, cgroup: UInt64 = 0) {
        assert(owner.attribution == Attribution(), "an event's attribution comes from its cgroup")
        self.init(kind: kind, cookie: cookie, time: time, key: key, process: owner.process, state: state, reason: reason, cgroup: cgroup)
    }
}
