import Synchronization

/// The ledger's series of the last state, rendered once per format (and compressed once when
/// a client takes gzip), served again for every scrape of the same generation. A new
/// generation (the ledger, the policy or the pipeline's health changed) renders anew.
final class RenderCache: Sendable {
    struct Part: @unchecked Sendable {
        var generation: UInt64?
        var body: [UInt8]
        var gzip: Gzip.Prefix?
    }

    private let parts = Mutex<[ExpositionFormat: Part]>([:])

    /// The state's series in `format`, without OpenMetrics' `# EOF` (the per-scrape series follow).
    func part(_ state: ExporterState, format: ExpositionFormat, gzip: Bool) -> Part {
        parts.withLock { parts in
            var part: Part
            if let generation = state.generation, let cached = parts[format], cached.generation == generation {
                part = cached
            } else {
                var families = PortwatchMetrics.families(state)
                families.sort { $0.name < $1.name }
                let body = format.render(families, last: false, sizeHint: parts[format]?.body.count ?? 0)
                part = Part(generation: state.generation, body: body, gzip: nil)
            }
            if gzip && part.gzip == nil { part.gzip = Gzip.Prefix(part.body) }
            if state.generation != nil { parts[format] = part }
            return part
        }
    }
}
