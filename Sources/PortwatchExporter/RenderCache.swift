import Synchronization

/// The ledger's series of the last state, rendered once per format (and compressed once when
/// a client takes gzip), served again for every scrape of the same generation. A new
/// generation (the ledger, the policy or the pipeline's health changed) is assembled anew,
/// its per-port lines from the labels each entry keeps (see `LedgerEntry`).
final class RenderCache: Sendable {
    struct Part: @unchecked Sendable {
        var generation: UInt64?
        var body: [UInt8]
        var gzip: Gzip.Prefix?
    }

    private let parts = Mutex<[ExpositionFormat: Part]>([:])
    /// Per-port label sets the last new generation had to render (the others were kept).
    let labelsRendered = Atomic<Int>(0)

    /// The state's series in `format`, without OpenMetrics' `# EOF` (the per-scrape series follow).
    func part(_ state: ExporterState, format: ExpositionFormat, gzip: Bool) -> Part {
        parts.withLock { parts in
            var part: Part
            if let generation = state.generation, let cached = parts[format], cached.generation == generation {
                part = cached
            } else {
                // The per-port lines come from the entries' cached labels: a row that did not
                // change since the last generation is not rendered again.
                var rendered = 0
                let body = format.render(PortwatchMetrics.sortedFamilies(state), state: state, last: false,
                                         sizeHint: parts[format]?.body.count ?? 0, rendered: &rendered)
                labelsRendered.store(rendered, ordering: .relaxed)
                part = Part(generation: state.generation, body: body, gzip: nil)
            }
            if gzip && part.gzip == nil { part.gzip = Gzip.Prefix(part.body) }
            if state.generation != nil { parts[format] = part }
            return part
        }
    }
}
