/// The two wire formats Prometheus understands.
public enum ExpositionFormat: Sendable, Equatable {
    /// Prometheus text format 0.0.4.
    case text
    /// OpenMetrics 1.0.0.
    case openMetrics

    public var contentType: String {
        switch self {
        case .text: "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
        }
    }

    /// Renders families in the order given; the caller sorts them. `last: false` leaves out
    /// OpenMetrics' closing `# EOF`, for a part that more families follow.
    /// `sizeHint` is the size a previous rendering of similar families came to: the buffer
    /// starts there instead of doubling its way up (each doubling a copy of the body).
    public func render(_ families: [MetricFamily], last: Bool = true, sizeHint: Int = 0) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(max(sizeHint + sizeHint / 16, 4096 + families.reduce(0) { $0 + $1.samples.count * 96 }))
        var rendered = 0
        for family in families { render(family, state: nil, into: &out, rendered: &rendered) }
        if self == .openMetrics && last { out.append(contentsOf: "# EOF\n".utf8) }
        return out
    }

    /// Renders families whose per-port samples (`MetricFamily.rows`) come from `state`'s entries,
    /// in pieces: the lines of a family in `segments` are served as they are (see
    /// `RowSeries.update`), the others rendered here; no `# EOF`. `rendered` counts the entries'
    /// label sets that were not cached yet. `omitting`: the spliceable per-port families without
    /// a segment are left out, an empty piece where their lines go (they are kept compressed
    /// only; see `RenderCache`), and their sample names are added to `omitted`.
    func render(_ families: [MetricFamily], state: ExporterState, segments: [RowSeries: RowSegment], omitting: Bool = false,
                omitted: inout [RowSeries: [UInt8]], rendered: inout Int) -> [(bytes: ArraySlice<UInt8>, rows: RowSeries?)] {
        var pieces: [(bytes: ArraySlice<UInt8>, rows: RowSeries?)] = []
        var out: [UInt8] = []
        out.reserveCapacity(16_384)
        for family in families {
            let rows = family.rows
            let omit = omitting && rows.map { segments[$0] == nil && $0.spliceable(state) } == true
            render(family, state: state, segment: rows.flatMap { segments[$0] }, omit: omit, into: &out, rendered: &rendered)
            guard let rows, omit || segments[rows] != nil else { continue }
            pieces.append((out[...], nil))
            out = []
            out.reserveCapacity(16_384)
            if omit {
                omitted[rows] = Array(family.sampleName.utf8)
                pieces.append(([][...], rows))
            } else if let segment = segments[rows] {
                pieces.append((segment.lines(limit: rows.limit(state)), rows))
            }
        }
        pieces.append((out[...], nil))
        return pieces.filter { !$0.bytes.isEmpty || $0.rows.map { omitted[$0] != nil } == true }
    }

    /// One family's header and samples; a per-port family's lines from the entries unless they
    /// come from `segment` or are omitted (then the caller adds them).
    private func render(_ family: MetricFamily, state: ExporterState?, segment: RowSegment? = nil, omit: Bool = false,
                        into out: inout [UInt8], rendered: inout Int) {
        // Text 0.0.4 names a counter family by its sample name; OpenMetrics by its base name.
        let familyName = self == .text ? family.sampleName : family.name
        out.append(contentsOf: "# HELP \(familyName) ".utf8)
        escape(family.help, inHelp: true, into: &out)
        out.append(contentsOf: "\n# TYPE \(familyName) \(family.kind.rawValue)\n".utf8)
        if self == .openMetrics, let unit = family.unit {
            out.append(contentsOf: "# UNIT \(familyName) \(unit)\n".utf8)
        }
        let sampleName = Array(family.sampleName.utf8)
        for sample in family.samples {
            out.append(contentsOf: sampleName)
            if !sample.labels.isEmpty {
                out.append(UInt8(ascii: "{"))
                for (i, (name, value)) in sample.labels.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    out.append(contentsOf: name.utf8)
                    out.append(contentsOf: "=\"".utf8)
                    escape(value, inHelp: false, into: &out)
                    out.append(UInt8(ascii: "\""))
                }
                out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: " "))
            out.append(contentsOf: Self.format(sample.value).utf8)
            out.append(UInt8(ascii: "\n"))
        }
        if let rows = family.rows, let state, segment == nil, !omit { rows.render(state, name: sampleName, into: &out, rendered: &rendered) }
    }

    /// A label value's escapes (the same in both formats): backslash, newline, double quote.
    static func escapeLabelValue(_ s: String, into out: inout [UInt8]) { ExpositionFormat.text.escape(s, inHelp: false, into: &out) }

    /// Backslash and newline always; double quote in label values, and in OpenMetrics HELP too.
    private func escape(_ s: String, inHelp: Bool, into out: inout [UInt8]) {
        let escapeQuote = !inHelp || self == .openMetrics
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\"") where escapeQuote: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            default: out.append(byte)
            }
        }
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    /// Picks the format from an Accept header by q-value; never refuses (text is the fallback).
    public static func negotiate(accept: String?) -> ExpositionFormat {
        guard let accept else { return .text }
        var best: (format: ExpositionFormat, q: Double)? = nil
        for range in accept.split(separator: ",") {
            let parts = range.split(separator: ";").map { $0.trimmingOWS }
            guard let type = parts.first?.lowercased() else { continue }
            var q = 1.0
            var version: String?
            for param in parts.dropFirst() {
                let kv = param.split(separator: "=", maxSplits: 1).map { $0.trimmingOWS }
                guard kv.count == 2 else { continue }
                switch kv[0].lowercased() {
                case "q": q = Double(kv[1]) ?? 0
                case "version": version = String(kv[1])
                default: break
                }
            }
            let format: ExpositionFormat?
            switch type {
            case "application/openmetrics-text":
                format = (version == nil || version == "1.0.0" || version == "0.0.1") ? .openMetrics : nil
            case "text/plain", "text/*", "*/*":
                format = .text
            default:
                format = nil
            }
            guard let format, q > 0 else { continue }
            if best == nil || q > best!.q || (q == best!.q && format == .openMetrics && best!.format == .text && type != "*/*") {
                best = (format, q)
            }
        }
        return best?.format ?? .text
    }
}

private extension Substring {
    /// Without the blanks HTTP allows around a header's parts (spaces and tabs, RFC 9110's OWS).
    var trimmingOWS: Substring {
        var utf8 = self.utf8[...]
        while let first = utf8.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") { utf8.removeFirst() }
        while let last = utf8.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { utf8.removeLast() }
        return Substring(utf8)
    }
}
