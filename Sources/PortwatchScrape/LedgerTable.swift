import PortwatchCore
import PortwatchExporter
import PortwatchPolicy
import PortwatchStore

/// The ledger's rows as scrapes keep them between reads: sorted by key, each judged by the
/// policy and given its listener health. A read of the rows changed since the last one makes
/// new entries for those rows alone; the others keep theirs, with the labels rendered for them.
struct LedgerTable {
    private(set) var entries: [LedgerEntry] = []
    /// The row log's position the entries are at (see `StoreReader.read(since:)`).
    private(set) var position: Int64?
    private var policy: Policy?
    /// The policy's load time and the health reading's generation the entries were judged by.
    private var judged: (policy: Double?, health: UInt64?) = (nil, nil)
    private var health: [BindingKey: SocketHealth]?

    /// Changes up to this many are put in place one by one; more are merged in one pass.
    static let inPlaceChanges = 64

    mutating func apply(_ read: TableRead) {
        position = read.position
        switch read.rows {
        case .whole(let rows):
            entries = rows.map(entry)
        case .changed(let changes) where changes.count <= Self.inPlaceChanges:
            for (key, row) in changes {
                let (index, found) = find(key)
                switch (found, row) {
                case (true, let row?): entries[index] = entry(row)
                case (true, nil): entries.remove(at: index)
                case (false, let row?): entries.insert(entry(row), at: index)
                case (false, nil): break
                }
            }
        case .changed(let changes):
            let changed = changes.sorted { $0.key < $1.key }
            var merged: [LedgerEntry] = []
            merged.reserveCapacity(entries.count + changed.count)
            var i = 0
            for (key, row) in changed {
                while i < entries.count, entries[i].row.key < key {
                    merged.append(entries[i])
                    i += 1
                }
                if i < entries.count, entries[i].row.key == key { i += 1 }
                if let row { merged.append(entry(row)) }
            }
            merged += entries[i...]
            entries = merged
        }
    }

    /// Judges every entry again when the policy was (re)loaded or a new health reading came.
    mutating func judge(policy current: (policy: Policy, loaded: Double)?, health reading: ListenerHealthMonitor.Reading?) {
        guard current?.loaded != judged.policy || reading?.generation != judged.health else { return }
        policy = current?.policy
        health = reading?.ports
        judged = (current?.loaded, reading?.generation)
        entries = entries.map { e in
            let (ignored, unexpected) = verdict(e.row)
            return e.with(ignored: ignored, unexpected: unexpected, health: health?[e.row.key])
        }
    }

    private func entry(_ row: Binding) -> LedgerEntry {
        let (ignored, unexpected) = verdict(row)
        return LedgerEntry(row, ignored: ignored, unexpected: unexpected, health: health?[row.key])
    }

    private func verdict(_ row: Binding) -> (ignored: Bool, unexpected: Bool) {
        guard let policy else { return (false, false) }
        return (policy.ignores(row), !policy.allows(row))
    }

    /// Where `key` is, or would go.
    private func find(_ key: BindingKey) -> (index: Int, found: Bool) {
        var low = 0, high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].row.key < key { low = mid + 1 } else { high = mid }
        }
        return (low, low < entries.count && entries[low].row.key == key)
    }
}
