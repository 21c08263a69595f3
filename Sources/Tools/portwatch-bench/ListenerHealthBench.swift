import Foundation
import Glibc
import Logging
import PortwatchCapture
import PortwatchCore
import PortwatchScrape
import PortwatchStore
import PortwatchTestSupport

/// The cost of reading the listener health (`--listen-stats.interval`): 10,000 held TCP
/// listeners in 100 network namespaces (100 listeners in each, held by one process per
/// namespace), read as the daemon reads them (the table from the ledger, then one sock_diag
/// dump per protocol and family in each namespace), against `nsenter -t PID -n ss -Htlnm` in
/// each namespace (what a script would run), in the same run. CPU is this process's
/// (user + system, the kernel's dump work included) and ss's (its children's).
enum ListenerHealthBench {
    static let namespaces = 100, perNamespace = 100

    /// Forks one holder per namespace (each unshares its network namespace and listens on
    /// `perNamespace` ports), prints their pids, and waits for its stdin to close.
    static let script = #"""
import ctypes, os, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
namespaces, per = int(sys.argv[1]), int(sys.argv[2])
pids = []
for _ in range(namespaces):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        assert libc.unshare(0x40000000) == 0
        held = []
        for i in range(per):
            s = socket.socket(); s.bind(("127.0.0.1", 20000 + i)); s.listen(16); held.append(s)
        os.write(w, b"x")
        while True: time.sleep(3600)
    os.read(r, 1)
    pids.append(pid)
print(" ".join(map(str, pids)), flush=True)
sys.stdin.readline()
for pid in pids: os.kill(pid, 9)
"""#

    static func run(report: Report, runs: Int) throws {
        let workload = try Workload(script: script, arguments: ["\(namespaces)", "\(perNamespace)"])
        defer { workload.stop() }
        let pids = (workload.line() ?? "").split(separator: " ").compactMap { Int32($0) }
        guard pids.count == namespaces else { throw BenchError("listener health: the holders did not start") }
        var handles: [UInt32: [String]] = [:]
        for pid in pids {
            var st = stat()
            guard stat("/proc/\(pid)/ns/net", &st) == 0 else { throw BenchError("no namespace for holder \(pid)") }
            handles[UInt32(truncatingIfNeeded: st.st_ino)] = ["/proc/\(pid)/ns/net"]
        }
        let names = pids.map(String.init)
        // The ledger the daemon would hold: a row per listener.
        let dir = NSTemporaryDirectory() + "pw-bench-health-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try Store(path: dir + "/pw.db")
        var reconciler = Reconciler(window: 0)
        var cookie: UInt64 = 1
        for netns in handles.keys {
            for i in 0..<perNamespace {
                reconciler.ingest(PortEvent(kind: .open, cookie: cookie, time: 1,
                                            key: BindingKey(netns: netns, transport: .tcp, family: .ipv4, address: "127.0.0.1", port: UInt16(20000 + i)),
                                            owner: Owner(pid: 0, comm: "python3", uid: 0), state: .listen))
                cookie += 1
            }
        }
        if let batch = reconciler.flush(now: 2) { try store.apply(batch) }
        let known = handles
        let monitor = ListenerHealthMonitor(interval: 1, databasePath: dir + "/pw.db", handles: { known },
                                            take: { ListenerHealthDump.take($0).sockets }, logger: Logger(label: "bench"))
        var ours: [Double] = [], oursWall: [Double] = [], theirs: [Double] = [], theirsWall: [Double] = [], seen: [Double] = []
        for run in 0..<runs {
            Progress.step("listener health, \(namespaces * perNamespace) listeners in \(namespaces) namespaces", run: run, of: runs)
            let cpu0 = Self.cpu(RUSAGE_SELF.rawValue)
            oursWall.append(Measure.time { monitor.collect() } * 1000)
            ours.append((Self.cpu(RUSAGE_SELF.rawValue) - cpu0) * 1000)
            seen.append(Double(monitor.latest?.ports.count ?? 0))
            let child0 = Self.cpu(RUSAGE_CHILDREN.rawValue)
            theirsWall.append(Measure.time {
                for pid in names { _ = TestProcess.sh("nsenter -t \(pid) -n ss -Htlnm > /dev/null") }
            } * 1000)
            theirs.append((Self.cpu(RUSAGE_CHILDREN.rawValue) - child0) * 1000)
        }
        let figures = [
            Figure(name: "portwatch: CPU per collection (the table read, then one dump per namespace)", unit: "ms", runs: ours),
            Figure(name: "portwatch: wall time per collection", unit: "ms", runs: oursWall),
            Figure(name: "baseline: nsenter -t PID -n ss -Htlnm for each namespace, CPU (with the shell and nsenter)", unit: "ms", runs: theirs),
            Figure(name: "baseline: the same, wall time", unit: "ms", runs: theirsWall),
            Figure(name: "held ports read per collection", unit: "ports", runs: seen),
        ]
        report.add("Listener health: \(namespaces * perNamespace) TCP listeners in \(namespaces) namespaces", figures, notes: [
            "CPU per collection, portwatch / ss: \(Report.format(figures[0].median / figures[2].median))",
            "at the default --listen-stats.interval of 15 s: \(Report.format(figures[0].median / 15_000 * 100))% of a core",
        ])
    }

    private static func cpu(_ who: __rusage_who_t) -> Double {
        var usage = rusage()
        getrusage(who, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}

