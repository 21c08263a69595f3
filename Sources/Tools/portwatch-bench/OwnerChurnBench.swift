import Foundation
import Glibc

/// A busy node's holders: 100 network namespaces with a listener each, while 5 holders a second
/// exit among them, half of them after passing their socket to a forked child (the port stays
/// and its holder changes), half taking it with them. Per minute of that: resyncs, lookups of
/// holders, and the daemon's CPU time, for this build and, with PORTWATCH_BENCH_BASELINE, for
/// an older one in alternating runs (which did a full resync per exiting owner).
enum OwnerChurnBench {
    /// The workload: forks the namespaces' holders, says "ready", churns on "go" for the given
    /// seconds, says "done".
    static let script = #"""
import ctypes, os, random, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
namespaces, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
homes = []
for _ in range(namespaces):
    pid = os.fork()
    if pid == 0:
        assert libc.unshare(0x40000000) == 0
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
        while True: time.sleep(3600)
    homes.append(pid)
print("ready", flush=True)
sys.stdin.readline()
random.seed(1)
live, n, start = [], 0, time.monotonic()
while time.monotonic() - start < seconds:
    home = homes[n % len(homes)]
    pid = os.fork()
    if pid == 0:
        fd = os.open(f"/proc/{home}/ns/net", os.O_RDONLY)
        libc.setns(fd, 0x40000000)
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
        time.sleep(1.5)                       # long past the window: a row, watched
        if n % 2 == 0 and os.fork() == 0:     # the child keeps the socket a second longer
            time.sleep(1.0)
        os._exit(0)
    live.append(pid)
    n += 1
    time.sleep(max(0, start + n / rate - time.monotonic()))
    while True:
        try:
            done, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if done == 0: break
time.sleep(3)
for pid in homes: os.kill(pid, 9)
print("done", n, flush=True)
"""#

    struct Outcome { var resyncs: Double, holderChecks: Double, cpuSeconds: Double }

    static func measure(binary: String, namespaces: Int, rate: Double, seconds: Double) throws -> Outcome {
        let daemon = try BenchDaemon(binary: binary)
        defer { daemon.stop() }
        let workload = Process()
        workload.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        workload.arguments = ["python3", "-c", script, "\(namespaces)", "\(rate)", "\(seconds)"]
        let input = Pipe(), output = Pipe()
        workload.standardInput = input
        workload.standardOutput = output
        try workload.run()
        defer { if workload.isRunning { workload.terminate() } }
        let lines = LineReader(output.fileHandleForReading)
        guard lines.next() == "ready" else { throw BenchError("owner churn: the workload did not start") }
        // Every namespace's listener in the table before the clock starts.
        let deadline = Measure.now() + 60
        while Measure.now() < deadline, daemon.value("portwatch_ports_held") < Double(namespaces) { usleep(100_000) }
        let before = daemon.values(["portwatch_resyncs_total", "portwatch_holder_checks_total"])
        let cpu = Measure.cpuSeconds(pid: daemon.pid)
        input.fileHandleForWriting.write(Data("go\n".utf8))
        guard lines.next()?.hasPrefix("done") == true else { throw BenchError("owner churn: the workload did not finish") }
        let after = daemon.values(["portwatch_resyncs_total", "portwatch_holder_checks_total"])
        let minutes = (seconds + 3) / 60
        return Outcome(resyncs: (after[0] - before[0]) / minutes, holderChecks: (after[1] - before[1]) / minutes,
                       cpuSeconds: (Measure.cpuSeconds(pid: daemon.pid) - cpu) / minutes)
    }

    static func run(report: Report, runs: Int, seconds: Double) throws {
        let namespaces = 100, rate = 5.0
        let baseline = ProcessInfo.processInfo.environment["PORTWATCH_BENCH_BASELINE"].flatMap { $0.isEmpty ? nil : $0 }
        var ours: [Outcome] = [], theirs: [Outcome] = []
        for run in 0..<runs {
            Progress.step("owner churn", run: run, of: runs)
            let order = run % 2 == 0 ? [BenchDaemon.builtBinary, baseline] : [baseline, BenchDaemon.builtBinary]
            for binary in order.compactMap({ $0 }) {
                let outcome = try measure(binary: binary, namespaces: namespaces, rate: rate, seconds: seconds)
                if binary == baseline { theirs.append(outcome) } else { ours.append(outcome) }
            }
        }
        var figures = [
            Figure(name: "resyncs per minute", unit: "/min", runs: ours.map(\.resyncs)),
            Figure(name: "holder lookups per minute (one namespace's dump and /proc each)", unit: "/min", runs: ours.map(\.holderChecks)),
            Figure(name: "daemon CPU per minute", unit: "s", runs: ours.map(\.cpuSeconds)),
        ]
        var notes: [String] = []
        if !theirs.isEmpty {
            figures += [
                Figure(name: "the baseline build: resyncs per minute", unit: "/min", runs: theirs.map(\.resyncs)),
                Figure(name: "the baseline build: daemon CPU per minute", unit: "s", runs: theirs.map(\.cpuSeconds)),
            ]
            notes.append("daemon CPU per minute, this build / the baseline: \(Report.format(figures[2].median / figures[4].median))")
        }
        report.add("Owners that exit on a busy node (\(namespaces) namespaces with a listener each, \(Int(rate)) holders exiting a second, half handing their socket to a child; \(Int(seconds)) s runs)",
                   figures, notes: notes)
    }
}

/// Lines from a pipe, one at a time.
final class LineReader {
    private let handle: FileHandle
    private var buffered = ""

    init(_ handle: FileHandle) { self.handle = handle }

    func next() -> String? {
        while !buffered.contains("\n") {
            let chunk = handle.availableData
            if chunk.isEmpty { return nil }
            buffered += String(decoding: chunk, as: UTF8.self)
        }
        let index = buffered.firstIndex(of: "\n")!
        defer { buffered = String(buffered[buffered.index(after: index)...]) }
        return String(buffered[..<index])
    }
}
