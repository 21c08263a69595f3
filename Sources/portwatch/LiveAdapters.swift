import FoundationEssentials
import Glibc
import PortwatchAttribution
import PortwatchCapture
import PortwatchCore
import PortwatchPipeline
import PortwatchStore
import PortwatchSystem

/// The real kernel, socket lister and ledger behind the pipeline's ports.
extension KernelCapture: KernelEvents {
    public func health() -> KernelHealth {
        KernelHealth(lost: lostEvents(), decodeErrors: decodeErrors, mapFull: mapFullCount(), ownerChanges: ownerChanges,
                     unresolvedListens: unresolvedListens)
    }

    public func watchOwners(_ pids: Set<Int32>) { _ = watchOwners(pids) as Int }
}

/// Lists sockets with sock_diag in every network namespace.
public struct KernelSocketLister: SocketLister {
    /// sock_diag dumps bound, not listening TCP sockets (Linux 6.7+); probed once at start.
    public let dumpsBoundTCP: Bool

    public init() {
        dumpsBoundTCP = SocketSnapshot.dumpsBoundTCP()
    }

    public func snapshot(only: Set<UInt32>?) throws -> SocketListing { try SocketSnapshot.take(only: only) }

    public func sees(_ transport: TransportProtocol, _ state: SocketState) -> Bool {
        dumpsBoundTCP || !(transport == .tcp && state == .bound)
    }

    /// Kernel features that change what portwatch can do, for the log and the
    /// `portwatch_kernel_feature` gauge.
    public var features: [String: Bool] { ["sock_diag_bound_tcp": dumpsBoundTCP] }
}

extension Store: Ledger {}

extension AttributionResolver: OwnerAttributor {}

/// Processes as /proc shows them.
public struct ProcFS: ProcessTable {
    public init() {}

    public func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.ranges(of: ") ").last, let state = stat[close.upperBound...].first else { return false }
        return state != "Z" && state != "X"
    }

    public func executable(_ pid: Int32) -> String {
        (try? FileDescriptor.readLink("/proc/\(pid)/exe")) ?? ""
    }

    /// A zombie (exited, not yet reaped by its parent) runs nothing and holds no descriptor.
    public func runs(_ pid: Int32, _ comm: String) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.ranges(of: ") ").last,
              let state = stat[close.upperBound...].first, state != "Z" && state != "X",
              let name = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) else { return false }
        return name.trimmingNewlines == comm
    }
}
