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
        var body: [ArraySlice<UInt8>]
        var gzip: Gzip.Prefix?
    }

    private struct Rendered {
        var parts: [ExpositionFormat: Part] = [:]
        /// The per-port families' lines (the same bytes in both formats), and their generation.
        var segments: [RowSeries: RowSegment] = [:]
        var segmentsGeneration: UInt64?
    }

    private let rendered = Mutex(Rendered())
    /// Per-port label sets the last new generation had to render (the others were kept).
    let labelsRendered = Atomic<Int>(0)

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
                part = Part(generation: state.generation, body: format.render(families, state: state, segments: r.segments, rendered: &count),
                            gzip: nil)
                labelsRendered.store(count, ordering: .relaxed)
            }
            if gzip && part.gzip == nil { part.gzip = Gzip.Prefix(part.body) }
            if state.generation != nil { r.parts[format] = part }
            return part
        }
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
