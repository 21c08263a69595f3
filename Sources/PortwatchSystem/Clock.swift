import Glibc

/// Time as portwatch reads it: one protocol, so that whatever keeps time (the capture loop,
/// the HTTP listener's deadlines, the scrape source, the commands) can be given a fake one.
public protocol TimeSource: Sendable {
    /// Seconds on a clock that never jumps (schedules, deadlines, durations).
    func monotonic() -> Double
    /// Nanoseconds since the Unix epoch (event times, history).
    func wallNanoseconds() -> UInt64
}

extension TimeSource {
    /// Nanoseconds to add to a CLOCK_MONOTONIC time (the kernel's event times) to get wall-clock time.
    public func monotonicToWall() -> Int64 {
        Int64(bitPattern: wallNanoseconds()) - Int64((monotonic() * 1e9).rounded())
    }
}

/// The machine's clocks.
public struct SystemClock: TimeSource {
    public init() {}

    public func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    public func wallNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
