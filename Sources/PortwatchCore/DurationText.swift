/// Durations as people read them in a table or a comment: `5ms`, `1m30s`, `2d3h`.
public enum DurationText {
    /// Below a second in milliseconds; above, days, hours, minutes and seconds, keeping the
    /// `largestUnits` largest parts that are not zero.
    public static func format(_ ns: UInt64, largestUnits: Int = 4) -> String {
        let ms = ns / 1_000_000
        if ms < 1000 { return String(ms) + "ms" }
        var s = ms / 1000
        var text = "", parts = 0
        for (unit, size) in [("d", UInt64(86400)), ("h", 3600), ("m", 60), ("s", 1)] where s >= size || (size == 1 && parts == 0) {
            if parts < largestUnits { text += String(s / size) + unit }
            parts += 1
            s %= size
        }
        return text
    }
}
