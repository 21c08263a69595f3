/// A change to the reconciled table, the unit the store writes and the history records.
public struct RowChange: Sendable, Hashable {
    public enum Action: String, Sendable, Hashable, CaseIterable {
        case insert, update, delete
    }

    public var action: Action
    /// The row after an insert or update; the row as it was for a delete.
    public var row: Binding
    /// Wall-clock nanoseconds of the event that caused the change.
    public var time: UInt64
    /// For a delete: why the last holder stopped holding the port. For an insert: `resync`
    /// when a resync found the port (the event path missed it), else nil.
    public var reason: PortEvent.Reason?

    public init(action: Action, row: Binding, time: UInt64, reason: PortEvent.Reason? = nil) {
        self.action = action
        self.row = row
        self.time = time
        self.reason = reason
    }
}

/// Everything one reconcile step produced; the store applies it in one transaction.
public struct Batch: Sendable, Hashable {
    public var changes: [RowChange] = []
    /// Sockets now known to hold a key that their row does not keep (cookie -> key; a row keeps
    /// its first socket, see `Binding.socket`), and sockets no longer listed.
    public var socketsAdded: [UInt64: BindingKey] = [:]
    public var socketsRemoved: Set<UInt64> = []
    public var counters = Counters()
    /// Listeners that lived less than the window, for the history (never rows).
    public var transients: [TransientBinding] = []

    public init() {}

    public var isEmpty: Bool {
        changes.isEmpty && socketsAdded.isEmpty && socketsRemoved.isEmpty && counters.isEmpty && transients.isEmpty
    }
}
