import PortwatchCore

/// Lists the sockets that hold ports now (a snapshot of the kernel's truth).
public protocol SocketLister {
    /// The sockets of every network namespace that exists (or of those in `only`), with the
    /// namespaces it could list.
    func snapshot(only: Set<UInt32>?) throws -> SocketListing
    /// Whether a snapshot can show sockets of this kind at all (older kernels cannot list
    /// bound, not listening TCP sockets); rows it cannot see are left to the event path.
    func sees(_ transport: TransportProtocol, _ state: SocketState) -> Bool
}

extension SocketListing {
    var parts: ([LiveSocket], Set<UInt32>) { (sockets, namespaces) }
}
