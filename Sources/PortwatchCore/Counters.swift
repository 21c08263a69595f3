/// What the reconciler has seen and done. Persisted with the rows, exported as counters.
public struct Counters: Sendable, Hashable {
    public var events: [PortEvent.Kind: UInt64] = [:]
    public var transientBindings: [TransportProtocol: UInt64] = [:]
    /// Sockets that bound a port and connected within the window: clients, never listeners.
    public var clientBindings: [TransportProtocol: UInt64] = [:]
    public var orphanCloses: [TransportProtocol: UInt64] = [:]
    public var actions: [RowChange.Action: UInt64] = [:]

    public init() {}

    public var isEmpty: Bool {
        events.isEmpty && transientBindings.isEmpty && clientBindings.isEmpty && orphanCloses.isEmpty && actions.isEmpty
    }

    public mutating func add(_ other: Counters) {
        events.merge(other.events, uniquingKeysWith: +)
        transientBindings.merge(other.transientBindings, uniquingKeysWith: +)
        clientBindings.merge(other.clientBindings, uniquingKeysWith: +)
        orphanCloses.merge(other.orphanCloses, uniquingKeysWith: +)
        actions.merge(other.actions, uniquingKeysWith: +)
    }

    /// Flat (name, label, value) view, as stored in SQLite and exported.
    public var entries: [CounterEntry] {
        var out: [CounterEntry] = []
        for (k, v) in events { out.append(.init(name: CounterEntry.events, label: k.rawValue, value: v)) }
        for (k, v) in transientBindings { out.append(.init(name: CounterEntry.transientBindings, label: k.description, value: v)) }
        for (k, v) in clientBindings { out.append(.init(name: CounterEntry.clientBindings, label: k.description, value: v)) }
        for (k, v) in orphanCloses { out.append(.init(name: CounterEntry.orphanCloses, label: k.description, value: v)) }
        for (k, v) in actions { out.append(.init(name: CounterEntry.actions, label: k.rawValue, value: v)) }
        return out.sorted { ($0.name.rawValue, $0.label) < ($1.name.rawValue, $1.label) }
    }
}

/// The name of a stored or in-memory counter; the raw value is what the ledger stores.
public enum CounterName: String, Sendable, Hashable, CaseIterable {
    case events
    case transientBindings = "transient_bindings"
    case clientBindings = "client_bindings"
    case orphanCloses = "orphan_closes"
    case actions = "reconcile_actions"
    case eventsLost = "events_lost"
    case resyncCorrections = "resync_corrections"
    /// Transients no policy rule allows; the label is "protocol/exposure".
    case unexpectedTransientBindings = "unexpected_transient_bindings"
    /// Transients the history's limits left unrecorded (see `TransientLog`).
    case transientRecordsDropped = "transient_records_dropped"
    /// Kept in memory by the daemon, not stored: failed writes to the database.
    case storeErrors = "store_errors"
    /// Kept in memory by the daemon, not stored: resyncs done since start.
    case resyncs
    /// Kept in memory by the daemon, not stored: ring buffer records the decoder rejected.
    case decodeErrors = "decode_errors"
    /// Kept in memory by the daemon, not stored: bound sockets the kernel's map could not hold.
    case bindingsMapFull = "bindings_map_full"
    /// Kept in memory by the daemon, not stored: entries of that map whose socket was gone
    /// without its release reported, removed by resyncs.
    case bindingsMapStale = "bindings_map_stale"
    /// Kept in memory by the daemon, not stored: lookups of who holds the ports of owners that
    /// exited or exec'd.
    case holderChecks = "holder_checks"
    /// Kept in memory by the daemon, not stored: sockets that listened without binding and
    /// were gone before their port could be found.
    case unresolvedListens = "unresolved_listens"
}

/// One counter value with its single label, the storage form of `Counters` and of the
/// capture layer's own counters (lost events, resync corrections).
public struct CounterEntry: Sendable, Hashable {
    public static let events = CounterName.events
    public static let transientBindings = CounterName.transientBindings
    public static let clientBindings = CounterName.clientBindings
    public static let orphanCloses = CounterName.orphanCloses
    public static let actions = CounterName.actions
    public static let eventsLost = CounterName.eventsLost
    public static let resyncCorrections = CounterName.resyncCorrections
    public static let unexpectedTransientBindings = CounterName.unexpectedTransientBindings
    public static let transientRecordsDropped = CounterName.transientRecordsDropped
    public static let storeErrors = CounterName.storeErrors
    public static let resyncs = CounterName.resyncs
    public static let decodeErrors = CounterName.decodeErrors
    public static let bindingsMapFull = CounterName.bindingsMapFull
    public static let bindingsMapStale = CounterName.bindingsMapStale
    public static let holderChecks = CounterName.holderChecks
    public static let unresolvedListens = CounterName.unresolvedListens

    public var name: CounterName
    public var label: String
    public var value: UInt64

    public init(name: CounterName, label: String, value: UInt64) {
        self.name = name
        self.label = label
        self.value = value
    }
}
