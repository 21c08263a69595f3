import Synchronization

/// The ledger's series of the last state, rendered once per format (and compressed once when
/// a client takes gzip), served again for every scrape of the same generation. A new
/// generation (the ledger, the policy or the pipeline's health changed) is assembled anew: the
/// per-port families' lines are kept between generations and spliced where entries changed
/// (see `RowSeries.update`), and served as they are, without a copy into one body.
///
/// Those lines are kept only while plain-text scrapes come (one served for this generation or
/// the one before). Prometheus takes gzip: then the per-port families are kept as compressed
/// chunks only (about 6 MB less at 10,000 ports), and a chunk an entry of which changed is
/// rendered again from its entries; a plain-text scrape renders every line once and keeps
/// them again.
final class RenderCache: Sendable {
    struct Part: @unchecked Sendable {
        var generation: UInt64?
        /// The body in pieces: the per-port families' lines are pieces of their own (cut to the
        /// series cap in place), empty when `omitted`.
        var pieces: [(bytes: ArraySlice<UInt8>, rows: RowSeries?)]
        var gzip: Gzip.Member?
        /// The per-port families whose lines are in `gzip` only, with their sample names: the
        /// body lacks them.
        var omitted: [RowSeries: [UInt8]] = [:]

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

        /// The chunk that starts at entry `a` and ends before `b`, if it was made from the same entries.
        func chunk(_ entries: [LedgerEntry], _ a: Int, _ b: Int) -> Chunk? {
            guard let chunk = byFirstEntry[ObjectIdentifier(entries[a])], chunk.entries.count == b - a,
                  zip(chunk.entries, entries[a..<b]).allSatisfy({ $0 === $1 }) else { return nil }
            return chunk
        }
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
        /// The generation scrapes last asked for, and whether one in plain text came for it
        /// and for the one before.
        var generation: UInt64?
        var plainNow = false, plainBefore = false
    }

    private let rendered = Mutex(Rendered())
    /// Per-port label sets the last new generation had to render (the others were kept).
    let labelsRendered = Atomic<Int>(0)
    /// Chunks of per-port lines the last gzip member had to compress (the others were kept).
    let chunksCompressed = Atomic<Int>(0)

    /// Bytes of per-port lines kept uncompressed between scrapes.
    var keptLineBytes: Int { rendered.withLock { $0.segments.values.reduce(0) { $0 + $1.bytes.count } } }

    /// The state's series in `format`, without OpenMetrics' `# EOF` (the per-scrape series follow).
    func part(_ state: ExporterState, format: ExpositionFormat, gzip: Bool) -> Part {
        rendered.withLock { r in
            if state.generation == nil || state.generation != r.generation {
                (r.generation, r.plainBefore, r.plainNow) = (state.generation, r.plainNow, false)
            }
            if !gzip { r.plainNow = true }
            if let generation = state.generation, var part = r.parts[format], part.generation == generation, gzip || part.omitted.isEmpty {
                if gzip && part.gzip == nil {
                    var compressed = 0, count = 0
                    part.gzip = Self.member(part, state: state, segments: r.segments, chunks: &r.chunks, compressed: &compressed, rendered: &count)
                    chunksCompressed.store(compressed, ordering: .relaxed)
                    r.parts[format] = part
                }
                if part.gzip != nil || !gzip { return part }
            }
            // Lines kept while plain-text scrapes come, and when the compressed chunks cannot be made.
            let keepLines = state.generation == nil || r.plainNow || r.plainBefore
            if let part = assemble(&r, state, format: format, gzip: gzip, keepLines: keepLines),
               part.gzip != nil || !gzip || part.omitted.isEmpty {
                return part
            }
            return assemble(&r, state, format: format, gzip: gzip, keepLines: true)!
        }
    }

    /// A new part for `state`: its lines kept (brought to `state` in the segments) or not
    /// (the segments and the parts that share them freed), compressed when `gzip`. Nil when
    /// lines are not kept and compressing failed.
    private func assemble(_ r: inout Rendered, _ state: ExporterState, format: ExpositionFormat, gzip: Bool, keepLines: Bool) -> Part? {
        var count = 0
        let families = PortwatchMetrics.sortedFamilies(state)
        if !keepLines {
            r.segments = [:]
            r.segmentsGeneration = nil
            r.parts = r.parts.filter { $0.value.generation == state.generation && $0.value.generation != nil && !$0.value.omitted.isEmpty }
        } else if state.generation == nil || r.segmentsGeneration != state.generation {
            // The old generation's pieces go first, so that the segments are changed in place.
            r.parts = [:]
            Self.update(&r.segments, families, state: state, rendered: &count)
            r.segmentsGeneration = state.generation
        }
        var omitted: [RowSeries: [UInt8]] = [:]
        var part = Part(generation: state.generation,
                        pieces: format.render(families, state: state, segments: r.segments, omitting: !keepLines, omitted: &omitted,
                                              rendered: &count),
                        gzip: nil, omitted: omitted)
        if gzip {
            var compressed = 0
            part.gzip = Self.member(part, state: state, segments: r.segments, chunks: &r.chunks, compressed: &compressed, rendered: &count)
            chunksCompressed.store(compressed, ordering: .relaxed)
        }
        labelsRendered.store(count, ordering: .relaxed)
        if !part.omitted.isEmpty && part.gzip == nil { return nil }
        if state.generation != nil { r.parts[format] = part }
        return part
    }

    /// The gzip member of `part`: the per-port families' lines in chunks (cut at entries that
    /// start one), each compressed on its own and kept while its entries stay the same objects;
    /// a scrape after one change compresses the chunk it is in, and the small pieces between.
    /// A family whose lines are not kept has the lines of each chunk to compress rendered here.
    private static func member(_ part: Part, state: ExporterState, segments: [RowSeries: RowSegment], chunks: inout [RowSeries: Chunks],
                               compressed: inout Int, rendered: inout Int) -> Gzip.Member? {
        guard let stream = Gzip.Stream(level: 5, raw: true) else { return nil }
        var out: [Gzip.Piece] = []
        var kept: [RowSeries: Chunks] = [:]
        var lines: [UInt8] = []
        for (bytes, rows) in part.pieces {
            guard let rows, segments[rows] != nil || part.omitted[rows] != nil else {
                guard let piece = Gzip.Piece(bytes, stream: stream) else { return nil }
                out.append(piece)
                continue
            }
            let entries = state.entries ?? [], exe = rows.exe(state)
            let old = chunks[rows].flatMap { $0.scope == state.portInfoOnly && $0.exe == exe ? $0 : nil }
            var new = Chunks(scope: state.portInfoOnly, exe: exe)
            // Each chunk: entries a..<b, of which those before `cut` have their lines in the body
            // (the series cap cuts the last one shown).
            var a = 0
            let cuts: (Int, Int) -> Int
            if let segment = segments[rows] {
                let end = bytes.endIndex
                cuts = { a, b in segment.offsets[a] >= end ? a : segment.offsets[b] <= end ? b : (a...b).first { segment.offsets[$0] >= end }! }
            } else {
                let limit = rows.limit(state)
                var taken = 0
                cuts = { a, b in
                    guard taken < limit else { return a }
                    for i in a..<b where rows.value(entries[i], state) != nil {
                        taken += 1
                        if taken == limit { return i + 1 }
                    }
                    return b
                }
            }
            while a < entries.count {
                var b = a + 1
                while b < entries.count, !entries[b].chunkStart { b += 1 }
                let cut = cuts(a, b)
                if cut == a { break }
                if cut == b, let chunk = old?.chunk(entries, a, b) {
                    out.append(chunk.piece)
                    new.byFirstEntry[ObjectIdentifier(entries[a])] = chunk
                } else {
                    let text: ArraySlice<UInt8>
                    if let segment = segments[rows] {
                        text = segment.bytes[segment.offsets[a]..<segment.offsets[cut]]
                    } else {
                        lines.removeAll(keepingCapacity: true)
                        rows.render(entries[a..<cut], state: state, name: part.omitted[rows]!, into: &lines, rendered: &rendered)
                        text = lines[...]
                    }
                    if !text.isEmpty {
                        guard let piece = Gzip.Piece(text, stream: stream) else { return nil }
                        out.append(piece)
                        compressed += 1
                        // A chunk cut by the series cap is not kept: it would not be whole next time.
                        if cut == b { new.byFirstEntry[ObjectIdentifier(entries[a])] = Chunk(entries: Array(entries[a..<b]), piece: piece) }
                    }
                }
                if cut < b { break }
                a = b
            }
            kept[rows] = new
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
