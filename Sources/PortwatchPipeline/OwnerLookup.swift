import PortwatchCore

/// Names the service, container and pod an owner runs in (cached; never blocks for long).
public protocol OwnerAttributor: AnyObject {
    func resolve(id cgroup: UInt64) -> Attribution
    func resolve(pid: Int32) -> Attribution
}

/// Whether processes named as owners still run what they ran (/proc, or a fake in tests).
public protocol ProcessTable: Sendable {
    /// The process exists.
    func alive(_ pid: Int32) -> Bool
    /// The process exists and its name is `comm` (an exec changes it).
    func runs(_ pid: Int32, _ comm: String) -> Bool
    /// The process's executable as /proc/PID/exe names it (" (deleted)" at the end when it
    /// was deleted or replaced since the process started); "" when it cannot be read.
    func executable(_ pid: Int32) -> String
}
