/// Every interval the capture pipeline keeps, in seconds, named, and the ones derived from
/// `--reconcile.window`: the one place that value is turned into timings.
public struct Schedule: Sendable, Equatable {
    /// `--reconcile.window`, in nanoseconds: how long a binding waits before it is published
    /// (and below which it is transient).
    public let window: UInt64
    /// How long one poll of the ring buffer waits, and how often batches are written under
    /// load: a quarter of the window, kept between 5 ms and 50 ms, so that the window and
    /// not the poll bounds the latency, while transactions stay few and large.
    public var tick: Double
    /// Under load, at most one write this often: a binding is published when its window
    /// expires (a deadline on the oldest pending event), but batches stay a few ms wide.
    public var minimumWriteGap: Double = 0.002
    /// Up to this many events since the last write are written as soon as they fall due,
    /// whatever the gap: a quiet host's changes are published without waiting.
    public var smallWrite = 64
    /// `--resync.interval`: compare the table with the kernel's sockets.
    public var resync: Double
    /// Read the kernel's self-health counters (lost events schedule a resync at once).
    public var healthCheck: Double = 1
    /// After a snapshot failed, try again this much later.
    public var snapshotRetry: Double = 5
    /// After a failed write, wait this long before the next attempt (a full disk must not
    /// spin the loop).
    public var writeRetry: Double = 1
    /// Delete history older than the retention.
    public var prune: Double = 3600

    public init(window: UInt64, resyncInterval: Double) {
        self.window = window
        tick = Double(max(5, min(50, window / 4_000_000))) / 1000
        resync = resyncInterval
    }

    /// Whether the kernel may gather events into few wakeups of the consumer: with a window
    /// the poll tick picks up what is gathered; without one, each event wakes the idle consumer.
    public var gathersWakeups: Bool { window > 0 }

    /// The poll timeout, in the unit the ring buffer takes.
    var pollTimeoutMs: Int32 { Int32((tick * 1000).rounded()) }
}
