import PortwatchCore

/// What the capture pipeline needs from the kernel: events in kernel order, how many it
/// dropped, and a way to tell it about sockets older than the programs.
public protocol KernelEvents: AnyObject {
    /// Waits up to `timeoutMs` for events and appends those that arrived to `events`, in kernel
    /// order (the caller's array is reused from poll to poll: no allocation per poll).
    func poll(timeoutMs: Int32, into events: inout [PortEvent]) throws
    /// Self-health totals since the programs were loaded (never decreasing).
    func health() -> KernelHealth
    /// Seeds the kernel's map of bound sockets so that this socket's release is reported.
    /// Returns false when the kernel refused it (map full).
    func remember(_ socket: LiveSocket) -> Bool
    /// Removes a released socket from that map (one seeded after its release would stay).
    func forget(_ cookie: UInt64)
    /// The sockets that map holds now, by cookie (nil when it cannot be read): a resync removes
    /// the entries of sockets that are gone although no release was reported for them.
    func rememberedSockets() -> [UInt64: RememberedSocket]?
    /// Asks the kernel to report when one of these processes (the owners of held ports)
    /// exits or execs; counted in `KernelHealth.ownerChanges`.
    func watchOwners(_ pids: Set<Int32>)
    /// Says whether the consumer is idle: polling rarely, to be woken by the first event
    /// (true), or polling every tick, with events gathered into few wakeups (false).
    func consumerIdle(_ idle: Bool)
    /// Ends a poll in progress, or the next one, at once (called from another thread).
    func interrupt()
    /// Detaches everything. Idempotent.
    func close()
}

/// Totals the kernel side and its decoder keep.
public struct KernelHealth: Sendable, Equatable {
    /// Events dropped because the ring buffer was full.
    public var lost: UInt64 = 0
    /// Records the decoder rejected (unknown kind, protocol or family).
    public var decodeErrors: UInt64 = 0
    /// Bound sockets the kernel could not remember because its map was full: their release
    /// goes unseen until a resync.
    public var mapFull: UInt64 = 0
    /// Exits and execs of processes named as owners: another process may hold their ports now.
    public var ownerChanges: UInt64 = 0
    /// Sockets that listened without binding and were gone (or their namespace out of reach)
    /// before their port could be found: never reported.
    public var unresolvedListens: UInt64 = 0

    public init(lost: UInt64 = 0, decodeErrors: UInt64 = 0, mapFull: UInt64 = 0, ownerChanges: UInt64 = 0, unresolvedListens: UInt64 = 0) {
        self.unresolvedListens = unresolvedListens
        self.lost = lost
        self.decodeErrors = decodeErrors
        self.mapFull = mapFull
        self.ownerChanges = ownerChanges
    }
}
