import Foundation
import PortwatchCore
import PortwatchStore

// Test helper for the store's crash test: applies deterministic batches to a database
// forever, printing "committed N" after each commit, until it is killed.
// Batch N inserts port N and deletes port N-50, and adds 1 to the open-events counter,
// so the state after N committed batches is known exactly.
//   StoreCrashWriter PATH

let path = CommandLine.arguments[1]
let store = try Store(path: path)
var done = Int(try store.counters().first { $0.name == CounterEntry.events && $0.label == "open" }?.value ?? 0)
var state = try store.loadState()
var reconciler = Reconciler(window: 0, rows: state.rows, sockets: state.sockets)


func key(_ n: Int) -> BindingKey {
    BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "10.0.0.1", port: UInt16(n % 65536))
}

while true {
    let n = done + 1
    let time = UInt64(n) * 1_000
    reconciler.ingest(PortEvent(kind: .open, cookie: UInt64(n), time: time, key: key(n),
                                owner: Owner(pid: Int32(n), comm: "w\(n)", uid: 0), state: .listen))
    var batch = reconciler.flush(now: time)!
    if n > 50 {
        reconciler.ingest(PortEvent(kind: .close, cookie: UInt64(n - 50), time: time, key: key(n - 50),
                                    owner: Owner(pid: 0, comm: "", uid: 0), state: .listen))
        let close = reconciler.flush(now: time)!
        batch.changes += close.changes
        batch.socketsRemoved.formUnion(close.socketsRemoved)
        batch.counters.actions.merge(close.counters.actions, uniquingKeysWith: +)
    }
    batch.counters.events = [.open: 1]
    try store.apply(batch)
    done = n
    FileHandle.standardOutput.write(Data("committed \(n)\n".utf8))
}
