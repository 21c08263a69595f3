import Glibc
import PortwatchCore

/// One entry of the history table: a port opened or closed, taken over by another holder,
/// or a transient listener (one that lived less than the window).
public struct HistoryEntry: Sendable, Equatable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case open, close, holder, transient

        /// The `action` column's word.
        public var stored: String {
            switch self {
            case .open: RowChange.Action.insert.rawValue
            case .close: RowChange.Action.delete.rawValue
            case .holder: RowChange.Action.update.rawValue
            case .transient: "transient"
            }
        }

        /// `stored` of every case, in `allCases` order, as bytes.
        static let storedBytes = allCases.map { Array($0.stored.utf8) }

        public init?(stored: String) {
            switch stored {
            case Self.open.stored: self = .open
            case Self.close.stored: self = .close
            case Self.holder.stored: self = .holder
            case Self.transient.stored: self = .transient
            default: return nil
            }
        }
    }

    /// Increases with every entry written: a reader that follows the history asks for ids above the last it saw.
    public var id: Int64
    public var time: UInt64
    public var kind: Kind
    public var row: Binding
    /// When the binding opened (wall-clock ns).
    public var opened: UInt64
    /// For a close: why the port stopped being held; for an open, `resync` when a resync
    /// found it; `holder` for a holder change. Nil otherwise (and in ledgers older than the reason column).
    public var reason: PortEvent.Reason?
    /// Nanoseconds the binding was held: for a close and a transient (the longest of a group).
    public var lifetime: UInt64?
    /// Transients this entry stands for (1 for every other kind).
    public var count: UInt64
    /// The ports of a transient group that used several; nil when it used `row.key.port` alone.
    public var held: HeldPorts?

    /// The highest port of a transient group; `row.key.port` otherwise.
    public var portMax: UInt16 { held?.high ?? row.key.port }

    /// Its ports, as a group.
    public var heldPorts: HeldPorts { held ?? HeldPorts(row.key.port, count: count) }

    /// Its ports as text: "4444", "41001,41500,42000" or "32768-60999" (see `HeldPorts.text`).
    public var ports: String { heldPorts.text }

    /// One row per port the entry is known to have held, for policy checks.
    public var bindings: [Binding] { heldPorts.bindings(of: row) }
}

/// The history table's columns, in the order every statement writes and reads them: the
/// one list the inserts, the selects and the positional reads are made from.
public enum HistoryColumn: Int32, CaseIterable, Sendable {
    case time, action
    // The key (`BindingColumn.key`'s order).
    case netns, transport, family, address, port
    // The owner (`BindingColumn.owner`'s order).
    case pid, comm, uid, unit, containerID, pod, namespace, container, exe
    case state, opened, reason, lifetime, count, portMax, ports, portsUnlisted
    /// Read, never written (SQLite assigns it).
    case id

    /// Its name in the table.
    public var name: String { ColumnName.of("\(self)") }

    /// The columns an insert writes, in order.
    static let written = allCases.filter { $0 != .id }
    /// Every column, in order, as a select lists them.
    static let selected = allCases.map(\.name).joined(separator: ", ")
}

/// One history row as SQLite holds it, for `StoreReader.historyRows`: valid only inside the
/// call that hands it over (its texts point into SQLite's row).
public struct HistoryRow {
    public typealias Field = HistoryColumn
    let row: Statement.Row

    public func int(_ field: Field) -> Int64 { row.int(field.rawValue) }
    public func uint(_ field: Field) -> UInt64 { UInt64(bitPattern: row.int(field.rawValue)) }
    /// A text column's UTF-8 bytes, in place.
    public func bytes(_ field: Field) -> UnsafeBufferPointer<UInt8> { row.bytes(field.rawValue) }

    /// The kind, from the action word's bytes (nil for a word this version does not know).
    public var kind: HistoryEntry.Kind? {
        let word = bytes(.action)
        for (kind, stored) in zip(HistoryEntry.Kind.allCases, HistoryEntry.Kind.storedBytes) where stored.count == word.count {
            if stored.withUnsafeBytes({ memcmp($0.baseAddress!, word.baseAddress!, word.count) }) == 0 { return kind }
        }
        return nil
    }

    /// The whole entry, decoded.
    public var entry: HistoryEntry? { RowCodec.historyEntry(row) }

    /// The ports of a transient group that used several (nil otherwise).
    public var held: HeldPorts? { RowCodec.heldPorts(row) }
}

/// Which history entries to read.
public struct HistoryQuery: Sendable {
    /// Only entries that held one of these ports: a transient group matches when one of its
    /// listed ports is among them, or its range meets them and some of its ports are not listed.
    public var ports: ClosedRange<UInt16>?
    /// Wall-clock ns: entries at or after this time.
    public var since: UInt64
    /// Only these kinds (nil: all).
    public var kinds: Set<HistoryEntry.Kind>?
    /// Only entries written after this id, in the order they were written (following);
    /// nil: in time order.
    public var afterID: Int64?
    /// Only entries written up to this id (a consistent cut while the daemon writes).
    public var throughID: Int64?
    /// Only this share of the entries: blocks of `HistoryQuery.partitionBlock` consecutive ids,
    /// every `count`-th one from `index`. Readers of all `count` parts together read every
    /// entry once, each from its own pages of the ledger.
    public var partition: (index: Int, count: Int)?

    /// Ids per block of a partition (about 30 pages of history rows).
    public static let partitionBlock: Int64 = 1024

    public init(ports: ClosedRange<UInt16>? = nil, since: UInt64 = 0, kinds: Set<HistoryEntry.Kind>? = nil, afterID: Int64? = nil) {
        self.ports = ports
        self.since = since
        self.kinds = kinds
        self.afterID = afterID
    }

    public init(port: UInt16, since: UInt64 = 0, kinds: Set<HistoryEntry.Kind>? = nil) {
        self.init(ports: port...port, since: since, kinds: kinds)
    }

    /// How an entry with these ports meets `ports` (exact when no ports are asked for).
    public func match(_ held: HeldPorts?, port: UInt16) -> PortMatch? {
        guard let ports else { return .exact }
        guard let held else { return ports.contains(port) ? .exact : nil }
        return held.match(ports)
    }
}

