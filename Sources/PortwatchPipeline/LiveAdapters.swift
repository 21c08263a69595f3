import PortwatchCapture
import PortwatchCore
import PortwatchStore

/// The real kernel, socket lister and ledger behind the pipeline's ports.
extension KernelCapture: KernelEvents {
    public func health() -> KernelHealth {
        KernelHealth(lost: lostEvents(), decodeErrors: decodeErrors, mapFull: mapFullCount())
    }
}

/// Lists sockets with sock_diag in every network namespace.
public struct KernelSocketLister: SocketLister {
    public init() {}
    public func snapshot() throws -> [LiveSocket] { try SocketSnapshot.take() }
}

extension Store: Ledger {}
