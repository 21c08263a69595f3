import Foundation
import Glibc
import PortwatchTestSupport

/// What portwatch costs a fleet's Prometheus: a node with 200 listeners whose services restart
/// every 10 minutes (compressed here: every `restartEvery` seconds, each service at its own
/// moment), scraped every second by a real Prometheus, one fresh Prometheus per mode. Counted by
/// Prometheus itself: `count({job="portwatch"})` for the series per node, and
/// `prometheus_tsdb_head_series_created_total` over the window for the series created, scaled to
/// an hour of 10-minute restarts.
enum SeriesChurnBench {
    static let services = 200
    static let restartEvery = 10.0

    /// Forks one holder per service on ports 20000+i; restarts each in turn, one every
    /// restartEvery/services seconds (a new process on the same port), until stdin closes. A
    /// restart and the stop take turns (a holder forked after the stop killed the others would
    /// outlive the script, and with it the pipe the benchmark waits on), and each holder dies
    /// with the script anyway (PR_SET_PDEATHSIG).
    static let script = #"""
import ctypes, os, socket, sys, threading, time
libc = ctypes.CDLL(None)
n, every = int(sys.argv[1]), float(sys.argv[2])
def serve(i):
    pid = os.fork()
    if pid == 0:
        libc.prctl(1, 9)
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 20000 + i)); s.listen()
        while True: time.sleep(3600)
    return pid
pids = [serve(i) for i in range(n)]
print("ready", flush=True)
stop = False
turn = threading.Lock()
def churn():
    i = 0
    while True:
        time.sleep(every / n)
        with turn:
            if stop: return
            os.kill(pids[i % n], 9); os.waitpid(pids[i % n], 0)
            pids[i % n] = serve(i % n)
        i += 1
threading.Thread(target=churn, daemon=True).start()
sys.stdin.readline()
with turn:
    stop = True
    for p in pids: os.kill(p, 9)
"""#

    static func run(report: Report, seconds: Double) throws {
        let dir = NSTemporaryDirectory() + "pw-bench-series-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let policy = dir + "/policy.yaml"
        let expected = "expected:\n  - { ports: 20000-20199 }\n"
        try expected.write(toFile: policy, atomically: true, encoding: .utf8)
        let daemon = try BenchDaemon(arguments: ["--policy.file", policy])
        defer { daemon.stop() }
        let workload = try Workload(script: script, arguments: ["\(services)", "\(restartEvery)"])
        defer { workload.stop() }
        guard workload.line() == "ready" else { throw BenchError("series churn: the services did not start") }

        let modes: [(String, String)] = [
            ("default (every port, every label)", ""),
            ("drop_labels: [pid]", "metrics: { drop_labels: [pid] }\n"),
            ("port_info: unexpected", "metrics: { port_info: unexpected }\n"),
            ("port_info: none", "metrics: { port_info: none }\n"),
        ]
        var figures: [Figure] = []
        var notes: [String] = []
        for (run, (name, section)) in modes.enumerated() {
            Progress.step("series churn, \(name)", run: run, of: modes.count)
            try (expected + section).write(toFile: policy, atomically: true, encoding: .utf8)
            kill(daemon.pid, SIGHUP)
            let prometheus = try PrometheusHarness(target: daemon.port, scrapesItself: false)
            let deadline = Measure.now() + 30
            while Measure.now() < deadline, prometheus.target()?.health != "up" { usleep(200_000) }
            usleep(3_000_000)  // a few scrapes: every series of the mode is in the head
            let created0 = prometheus.selfMetric("prometheus_tsdb_head_series_created_total") ?? 0
            let start = Measure.now()
            usleep(UInt32(seconds * 1e6))
            let elapsed = Measure.now() - start
            let created = (prometheus.selfMetric("prometheus_tsdb_head_series_created_total") ?? 0) - created0
            let perNode = Double((prometheus.query("count({job=\"portwatch\"})")?.first?["value"] as? [Any])?.last as? String ?? "") ?? 0
            // An hour of 10-minute restarts is 600 / restartEvery times the compressed hour.
            let perHour = created / elapsed * 3600 / (600 / restartEvery)
            figures.append(Figure(name: "\(name): series per node", unit: "series", runs: [perNode]))
            figures.append(Figure(name: "\(name): series created per hour (restarts every 10 min)", unit: "series/h", runs: [perHour]))
            notes.append("\(name): \(Int(created)) series created in \(Report.format(elapsed)) s of restarts every \(Int(restartEvery)) s")
        }
        report.add("Series on Prometheus: \(services) listeners whose services restart every 10 minutes (compressed \(Int(600 / restartEvery))x), one node",
                   figures, notes: notes)
    }
}
