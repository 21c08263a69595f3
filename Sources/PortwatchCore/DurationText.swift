/// Durations as people read them in a table or a comment: `5ms`, `1m30s`, `2d3h`.
public enum DurationText {
    /// Below a second in milliseconds; above, days, hours, minutes and seconds, keeping the
    /// `largestUnits` largest parts that are not zero.
    public static func format(_ ns: UInt64, largestUnits: Int = 4) -> String {
        let ms = ns / 1_000_000
        if ms < 1000 { return "\(ms)ms" }
        var s = ms / 1000
        var parts: [String] = []
        for (unit, size) in [("d", UInt64(86400)), ("h", 3600), ("m", 60)] where s >= size {
            parts.append("\(s / size)\(unit)")
            s %= size
        }
        if s > 0 || parts.isEmpty { parts.append("\(s)s") }
        return parts.prefix(largestUnits).joined()
    }
}
