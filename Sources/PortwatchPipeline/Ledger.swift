import PortwatchCore

/// Where reconciled batches go: the table, counters and history, one transaction per batch.
public protocol Ledger: AnyObject {
    func loadState() throws -> (rows: [BindingKey: Binding], sockets: [UInt64: BindingKey])
    func apply(_ batch: Batch, extra: [CounterEntry]) throws
    /// Deletes history older than `cutoff` (wall-clock ns); returns how many entries went.
    func pruneHistory(before cutoff: UInt64) throws -> Int
}
