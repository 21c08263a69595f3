/// Durations as people read them in a table or a comment: `5ms`, `1m30s`, `2d3h`.
public enum DurationText {
    /// Below a second in milliseconds; above, days, hours, minutes and seconds, keeping the
    /// `largestUnits` largest parts that are not zero.
    public static func format(_ ns: UInt64, largestUnits: Int = 4) -> String {
        var text = ""
        parts(ns, largestUnits: largestUnits) { text += String($0) + $1.description }
        return text
    }

    /// The number and unit of each part `format` writes, in order, for a writer that makes
    /// no String per duration.
    public static func parts(_ ns: UInt64, largestUnits: Int = 4, _ part: (UInt64, StaticString) -> Void) {
        let ms = ns / 1_000_000
        if ms < 1000 { return part(ms, "ms") }
        var s = ms / 1000, count = 0
        for (unit, size) in units where s >= size || (size == 1 && count == 0) {
            if count < largestUnits { part(s / size, unit) }
            count += 1
            s %= size
        }
    }

    private static let units: [(StaticString, UInt64)] = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
}
