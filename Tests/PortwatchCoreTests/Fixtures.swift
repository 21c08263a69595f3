import PortwatchCore

let ms: UInt64 = 1_000_000
let window: UInt64 = 200 * ms

func key(_ port: UInt16, _ transport: TransportProtocol = .tcp, address: String = "127.0.0.1",
         family: AddressFamily = .ipv4, netns: UInt32 = 4026531840) -> BindingKey {
    BindingKey(netns: netns, transport: transport, family: family, address: address, port: port)
}

func event(_ kind: PortEvent.Kind, _ cookie: UInt64, at time: UInt64, _ key: BindingKey,
           pid: Int32 = 100, comm: String = "server", state: SocketState = .listen,
           reason: PortEvent.Reason = .released) -> PortEvent {
    PortEvent(kind: kind, cookie: cookie, time: time, key: key,
              owner: Owner(pid: pid, comm: comm, uid: 0), state: state, reason: reason)
}

func row(_ key: BindingKey, pid: Int32 = 50, comm: String = "old", holders: Int = 1, at time: UInt64 = 0) -> Binding {
    Binding(key: key, owner: Owner(pid: pid, comm: comm, uid: 0), state: .listen,
            holders: holders, firstSeen: time, lastChange: time)
}

struct NothingToWrite: Error {}

extension Reconciler {
    /// `flush(now:)` for a step that must produce a batch.
    mutating func mustFlush(now: UInt64) throws -> Batch {
        guard let batch = flush(now: now) else { throw NothingToWrite() }
        return batch
    }
}
