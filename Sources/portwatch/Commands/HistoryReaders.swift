import FoundationEssentials
import Dispatch
import Glibc
import PortwatchStore
import PortwatchSystem
import Synchronization

/// Prints a period of history at the speed of the machine rather than of one core: one
/// thread per core reads its partition of the ledger (`HistoryQuery.partition`) through its
/// own connection and formats its lines; this thread merges them in (time, id) order and
/// writes them out. Constant memory: each reader hands over a few batches at a time and
/// waits while they are all in use.
struct HistoryReaders {
    let path: String
    let query: HistoryQuery
    let format: HistoryFormat
    let readers = min(4, max(1, ProcessInfo.processInfo.activeProcessorCount))

    /// Rows per batch handed over, and batches in flight per reader.
    static let batchRows = 256
    static let firstBatchRows = 8
    static let batchesInFlight = 8

    func print(to out: inout StreamWriter) throws {
        let channels = (0..<readers).map { _ in Channel(batches: Self.batchesInFlight, rows: Self.batchRows) }
        for (index, channel) in channels.enumerated() {
            var part = query
            part.partition = (index, readers)
            SystemThread.start(name: "history-\(index)") { [path, format, part] in
                Self.read(path: path, query: part, format: format, into: channel)
            }
        }
        // The batch each reader's next line is in, and that line's index (nil once it has no more).
        var heads: [(batch: Batch, line: Int)?] = try channels.map { try Self.next(from: $0, after: nil) }
        var first = true
        while true {
            // The reader whose next line comes first, and the first next line of the others.
            let live = heads.indices.filter { heads[$0] != nil }
            func key(_ i: Int) -> Key { heads[i]!.batch.keys[heads[i]!.line] }
            guard let pick = live.min(by: { key($0) < key($1) }), let (batch, line) = heads[pick] else { return }
            let bound = live.filter { $0 != pick }.map(key).min() ?? Key(time: .max, id: .max)
            // Every line of this batch before `bound` follows in one copy (the readers' id
            // blocks make runs of hundreds).
            var end = line + 1
            while end < batch.keys.count, batch.keys[end] < bound { end += 1 }
            let start = line == 0 ? 0 : batch.ends[line - 1]
            out.appendLines(UnsafeRawBufferPointer(start: batch.bytes.start + start, count: batch.ends[end - 1] - start))
            // The first line goes out at once; the rest in 64 KiB writes.
            if first { out.flush() }
            first = false
            heads[pick] = end < batch.keys.count ? (batch, end) : try Self.next(from: channels[pick], after: batch)
        }
    }

    /// The reader's next batch with a line in it, giving `done` back; nil when it has finished.
    private static func next(from channel: Channel, after done: Batch?) throws -> (batch: Batch, line: Int)? {
        if let done {
            if done.finished { return nil }
            channel.recycle(done)
        }
        while true {
            let batch = channel.receive()
            if let error = batch.error { throw error }
            if !batch.keys.isEmpty { return (batch, 0) }
            if batch.finished { return nil }
            channel.recycle(batch)
        }
    }

    /// One reader thread: its partition's lines, formatted into batches.
    private static func read(path: String, query: HistoryQuery, format: HistoryFormat, into channel: Channel) {
        var batch = channel.spare()
        var out = StreamWriter(buffer: batch.bytes, flushes: false)
        var handed = 0
        do {
            let reader = try StoreReader(path: path)
            try reader.historyRows(query) { row in
                guard format.write(row, to: &out) else { return }
                batch.keys.append(Key(time: row.uint(.time), id: row.int(.id)))
                batch.ends.append(out.position)
                // The first batch is small, so that the first line is printed at once.
                if batch.keys.count == (handed == 0 ? firstBatchRows : batchRows) {
                    handed += 1
                    channel.send(batch)
                    batch = channel.spare()
                    out.use(batch.bytes)
                }
            }
        } catch {
            batch.error = error
        }
        batch.finished = true
        channel.send(batch)
    }

    struct Key: Comparable {
        var time: UInt64
        var id: Int64
        static func < (a: Key, b: Key) -> Bool { (a.time, a.id) < (b.time, b.id) }
    }

    /// Lines of one reader: their keys, where each ends in `bytes`, and whether the reader is done.
    final class Batch: @unchecked Sendable {
        let bytes: ByteBuffer
        var keys: [Key] = []
        var ends: [Int] = []
        var finished = false
        var error: Error?

        init(rows: Int) {
            bytes = ByteBuffer(capacity: rows * 160)
            keys.reserveCapacity(rows)
            ends.reserveCapacity(rows)
        }

        func reset() {
            bytes.count = 0
            keys.removeAll(keepingCapacity: true)
            ends.removeAll(keepingCapacity: true)
        }
    }

    /// Batches going from one reader to the merge in order, and back empty to be refilled:
    /// a reader waits when all of its batches are full and not yet printed.
    final class Channel: @unchecked Sendable {
        private let batches: Mutex<(full: [Batch], empty: [Batch])>
        private let fullCount = DispatchSemaphore(value: 0)
        private let emptyCount = DispatchSemaphore(value: 0)

        init(batches: Int, rows: Int) {
            self.batches = Mutex(([], (0..<batches).map { _ in Batch(rows: rows) }))
            // Counted up from 0: libdispatch refuses to free a semaphore below its initial value.
            for _ in 0..<batches { emptyCount.signal() }
        }

        func spare() -> Batch {
            emptyCount.wait()
            return self.batches.withLock { $0.empty.removeLast() }
        }

        func send(_ batch: Batch) {
            batches.withLock { $0.full.append(batch) }
            fullCount.signal()
        }

        func receive() -> Batch {
            fullCount.wait()
            return batches.withLock { $0.full.removeFirst() }
        }

        func recycle(_ batch: Batch) {
            batch.reset()
            batches.withLock { $0.empty.append(batch) }
            emptyCount.signal()
        }
    }
}
