/// A socket that held a port for less than the reconcile window, as the reconciler finds it:
/// its process and its cgroup id, no names and no reference, so that a flood of them is
/// copied and compared as plain bytes. `TransientLog` folds them per owner into
/// `TransientBinding` records and names the service, container and pod once per record.
public struct TransientSocket: Sendable, Hashable {
    public var key: BindingKey
    public var process: OwnerProcess
    /// The cgroup v2 id of the process (0: unknown).
    public var cgroup: UInt64
    /// Its last state (a bind then listen is a listener).
    public var state: SocketState
    /// Wall-clock nanoseconds when the socket took its port.
    public var opened: UInt64
    /// Nanoseconds from open to close.
    public var lifetime: UInt64

    public init(key: BindingKey, process: OwnerProcess, cgroup: UInt64 = 0, state: SocketState, opened: UInt64, lifetime: UInt64) {
        self.key = key
        self.process = process
        self.cgroup = cgroup
        self.state = state
        self.opened = opened
        self.lifetime = lifetime
    }
}

/// A binding that lived less than the reconcile window: never a row of the table, recorded
/// in history. One record can stand for several transients of one owner (see
/// `TransientLog`): `count` of them, on the ports of `held`, the longest `lifetime`.
public struct TransientBinding: Sendable, Hashable {
    /// The first transient's key (its port is the lowest of the group's).
    public var key: BindingKey
    public var owner: Owner
    public var state: SocketState
    /// Wall-clock nanoseconds when the (first) socket took its port.
    public var opened: UInt64
    /// Nanoseconds from open to close; for a group, the longest.
    public var lifetime: UInt64
    public var count: UInt64
    /// The ports of a group whose transients used several; nil when every one used `key.port`.
    public var held: HeldPorts?

    public init(key: BindingKey, owner: Owner, state: SocketState, opened: UInt64, lifetime: UInt64,
                count: UInt64 = 1, held: HeldPorts? = nil) {
        self.key = key
        self.owner = owner
        self.state = state
        self.opened = opened
        self.lifetime = lifetime
        self.count = count
        self.held = held.flatMap { $0.ports.count > 1 ? $0 : nil }
        if let held = self.held { self.key.port = held.low }
    }

    /// A group known only by its range (as an older ledger kept it): `key.port` and
    /// `portMax` held, the other `count - 2` transients somewhere between.
    public init(key: BindingKey, owner: Owner, state: SocketState, opened: UInt64, lifetime: UInt64,
                count: UInt64, portMax: UInt16) {
        let held = portMax > key.port ? HeldPorts(stored: [key.port, portMax], unlisted: count &- min(count, 2)) : nil
        self.init(key: key, owner: owner, state: state, opened: opened, lifetime: lifetime, count: count, held: held)
    }

    /// One transient socket's record, its owner named by `attribution`.
    public init(_ socket: TransientSocket, attribution: Attribution) {
        self.init(key: socket.key, owner: Owner(socket.process, attribution: attribution), state: socket.state,
                  opened: socket.opened, lifetime: socket.lifetime)
    }

    /// The highest port of the group; `key.port` when every transient used one port.
    public var portMax: UInt16 { held?.high ?? key.port }

    /// Its ports, as a group: one port for all of its `count` transients when `held` is nil.
    public var heldPorts: HeldPorts { held ?? HeldPorts(key.port, count: count) }

    /// Its ports as text: "4444", "41001,41500,42000" or "32768-60999" (see `HeldPorts.text`).
    public var ports: String { heldPorts.text }

    /// As a table row would show it, for policy checks.
    public var binding: Binding {
        Binding(key: key, owner: owner, state: state, holders: 1, firstSeen: opened, lastChange: opened &+ lifetime)
    }

    /// One row per listed port, for policy checks: a group is allowed when each port it is
    /// known to have held is.
    public var bindings: [Binding] { heldPorts.bindings(of: binding) }
}
