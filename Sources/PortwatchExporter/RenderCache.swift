import Synchronization

/// The ledger's series of the last state, rendered once per format (and compressed once when
/// a client takes gzip), served again for every scrape of the same generation. A new
/// generation (the ledger, the policy or the pipeline's health changed) is assembled anew: the
/// per-port families' lines are kept between generations and spliced where entries changed
/// (see `RowSeries.update`), and served as they are, without a copy into one body.
final class RenderCache: Sendable {
    struct Part: @unchecked Sendable {
        var generation: UInt64?
        /// The body in pieces: the per-port families' lines are pieces of their own (cut to the
        /// series cap in place).
        var pieces: [(bytes: ArraySlice<UInt8>, rows: RowSeries?)]
        var gzip: Gzip.Member?

        var body: [ArraySlice<UInt8>] { pieces.map(\.bytes) }
    }

    /// A run of a per-port family's lines compressed on its own, and the entries it was made
    /// from (held: none is freed while it is compared by identity).
    private struct Chunk {
        var entries: [LedgerEntry]
        var piece: Gzip.Piece
    }

    /// A family's chunks, valid for the lines of one scope and `exe` (the same entries have
    /// other lines under others).
    private struct Chunks {
        var scope: PortInfoScope
        var exe: Bool
        var byFirstEntry: [ObjectIdentifier: Chunk] = [:]
    }

    /// Entries per compressed chunk of a per-port family, on average (a power of two).
    static let chunkEntries = 64

    private struct Rendered {
        var parts: [ExpositionFormat: Part] = [:]
        /// The per-port families' lines (the same bytes in both formats), and their generation.
        var segments: [RowSeries: RowSegment] = [:]
        var segmentsGeneration: UInt64?
        /// The compressed chunks of the per-port families' lines, by their first entry.
        var chunks: [RowSeries: Chunks] = [:]
    }

    private let rendered = Mutex(Rendered())
    /// Per-port label sets the last new generation had to render (the others were kept).
    let labelsRendered = Atomic<Int>(0)
    /// Chunks of per-port lines the last gzip member had to compress (the others were kept).
    let chunksCompressed = Atomic<Int>(0)

    /// The state's series in `format`, without OpenMetrics' `# EOF` (the per-scrape series follow).
    func part(_ state: ExporterState, format: ExpositionFormat, gzip: Bool) -> Part {
        rendered.withLock { r in
            var part: Part
            if let generation = state.generation, let cached = r.parts[format], cached.generation == generation {
                part = cached
            } else {
                var count = 0
                let families = PortwatchMetrics.sortedFamilies(state)
                if state.generation == nil || r.segmentsGeneration != state.generation {
                    // The old generation's pieces go first, so that the segments are changed in place.
                    r.parts = [:]
                    Self.update(&r.segments, families, state: state, rendered: &count)
                    r.segmentsGeneration = state.generation
                }
                part = Part(generation: state.generation, pieces: format.render(families, state: state, segments: r.segments, rendered: &count),
                            gzip: nil)
                labelsRendered.store(count, ordering: .relaxed)
            }
            if gzip && part.gzip == nil {
                var compressed = 0
                part.gzip = Self.member(part.pieces, segments: r.segments, chunks: &r.chunks, compressed: &compressed)
                chunksCompressed.store(compressed, ordering: .relaxed)
            }
            if state.generation != nil { r.parts[format] = part }
            return part
        }
    }

    /// The gzip member of `pieces`: the per-port families' lines in chunks (cut at entries that
    /// start one), each compressed on its own and kept while its entries stay the same objects;
    /// a scrape after one change compresses the chunk it is in, and the small pieces between.
    private static func member(_ pieces: [(bytes: ArraySlice<UInt8>, rows: RowSeries?)], segments: [RowSeries: RowSegment],
                               chunks: inout [RowSeries: Chunks], compressed: inout Int) -> Gzip.Member? {
        guard let stream = Gzip.Stream(level: 5, raw: true) else { return nil }
        var out: [Gzip.Piece] = []
        var kept: [RowSeries: Chunks] = [:]
        for (bytes, rows) in pieces {
            guard let rows, let segment = segments[rows] else {
                guard let piece = Gzip.Piece(bytes, stream: stream) else { return nil }
                out.append(piece)
                continue
            }
            let old = chunks[rows].flatMap { $0.scope == segment.scope && $0.exe == segment.exe ? $0.byFirstEntry : nil } ?? [:]
            let entries = segment.entries, end = bytes.endIndex
            var new: [ObjectIdentifier: Chunk] = [:]
            var a = 0
            while a < entries.count, segment.offsets[a] < end {
                var b = a + 1
                while b < entries.count, !entries[b].chunkStart { b += 1 }
                let start = segment.offsets[a], stop = min(segment.offsets[b], end)
                let id = ObjectIdentifier(entries[a])
                if stop == segment.offsets[b], let chunk = old[id], chunk.entries.count == b - a,
                   zip(chunk.entries, entries[a..<b]).allSatisfy({ $0 === $1 }) {
                    out.append(chunk.piece)
                    new[id] = chunk
                } else if stop > start {
                    guard let piece = Gzip.Piece(segment.bytes[start..<stop], stream: stream) else { return nil }
                    out.append(piece)
                    compressed += 1
                    // A chunk cut by the series cap is not kept: it would not be whole next time.
                    if stop == segment.offsets[b] { new[id] = Chunk(entries: Array(entries[a..<b]), piece: piece) }
                }
                a = b
            }
            kept[rows] = Chunks(scope: segment.scope, exe: segment.exe, byFirstEntry: new)
        }
        chunks = kept
        return Gzip.Member(out)
    }

    /// Brings the lines of each spliceable per-port family to `state`; drops the others'.
    private static func update(_ segments: inout [RowSeries: RowSegment], _ families: [MetricFamily], state: ExporterState,
                               rendered: inout Int) {
        var wanted = Set<RowSeries>()
        for family in families {
            guard let rows = family.rows, rows.spliceable(state) else { continue }
            wanted.insert(rows)
            // Out of the dictionary while it changes: the only reference, so changed in place.
            var segment = segments.removeValue(forKey: rows) ?? RowSegment()
            rows.update(&segment, to: state, name: Array(family.sampleName.utf8), rendered: &rendered)
            segments[rows] = segment
        }
        for rows in segments.keys where !wanted.contains(rows) { segments[rows] = nil }
    }
}
