/// The transient listeners of one owner over a recent period (what the dashboard's
/// "short-lived listeners" table shows): how many, on which ports, living how long at most.
public struct TransientSummary: Sendable, Equatable {
    public var transport: TransportProtocol
    public var exposure: Exposure
    public var comm: String
    public var unit: String
    public var namespace: String
    public var pod: String
    public var count: UInt64
    /// Their ports, merged as a folded record's are.
    public var held: HeldPorts
    /// Nanoseconds: the longest-lived of them.
    public var longestLifetime: UInt64
    /// Wall-clock ns of the latest.
    public var last: UInt64

    public init(transport: TransportProtocol, exposure: Exposure, comm: String, unit: String, namespace: String, pod: String,
                count: UInt64, held: HeldPorts, longestLifetime: UInt64, last: UInt64) {
        self.transport = transport
        self.exposure = exposure
        self.comm = comm
        self.unit = unit
        self.namespace = namespace
        self.pod = pod
        self.count = count
        self.held = held
        self.longestLifetime = longestLifetime
        self.last = last
    }

    /// "4444", "41001,41500,42000", or "32768-60999" when they used many ports (`HeldPorts.text`).
    public var ports: String { held.text }

    /// Merges the summaries of one owner (same labels), keeps the `limit` with the most
    /// transients (then the most recent), and says how many owners were left out.
    public static func top(_ parts: [TransientSummary], limit: Int) -> (top: [TransientSummary], dropped: Int) {
        struct Owner: Hashable { var t: TransportProtocol; var e: Exposure; var comm, unit, namespace, pod: String }
        var merged: [Owner: TransientSummary] = [:]
        for p in parts {
            let owner = Owner(t: p.transport, e: p.exposure, comm: p.comm, unit: p.unit, namespace: p.namespace, pod: p.pod)
            guard var m = merged[owner] else { merged[owner] = p; continue }
            m.count += p.count
            m.held.merge(p.held)
            m.longestLifetime = max(m.longestLifetime, p.longestLifetime)
            m.last = max(m.last, p.last)
            merged[owner] = m
        }
        let sorted = merged.values.sorted {
            ($1.count, $1.last, $0.comm, $0.held.low, $0.unit, $0.pod) < ($0.count, $0.last, $1.comm, $1.held.low, $1.unit, $1.pod)
        }
        return (Array(sorted.prefix(limit)), max(0, sorted.count - limit))
    }
}

/// Port ranges as text, the one place they are written.
public enum PortRange {
    public static func text(_ low: UInt16, _ high: UInt16) -> String { high <= low ? "\(low)" : "\(low)-\(high)" }
}
