import CBPF
import Foundation
import Glibc

/// The kernel side's own cost: the run time of each of the daemon's BPF programs per
/// bind+listen+close loop, from the kernel's BPF statistics (`BPF_ENABLE_STATS`, which adds
/// two clock reads to every run it measures), with the owner read by plain loads from the
/// task's BTF pointer (and the socket from the context cast to it, where the kernel has
/// bpf_cast_to_kern_ctx) against the programs loaded as for Linux 5.10 (`PORTWATCH_BPF_TASK_BTF=0`),
/// alternating daemons in one run; and per TCP connection that binds nothing (both ends), the
/// cost every connection on a monitored host pays, next to the floor under it: programs that
/// return at once on the same hooks (`ProgramPartsBench.connectionFloor`). With
/// `PORTWATCH_BENCH_BASELINE`, the same for that build, in alternation.
enum ProgramBench {
    struct Counts { var runTime: UInt64 = 0, runs: UInt64 = 0 }

    static func run(report: Report, repeats: Int) throws {
        let loops = 100_000, connections = 20_000
        var perLoop: [Bool: [Double]] = [true: [], false: []]
        var perProgram: [Bool: [String: [Double]]] = [true: [:], false: [:]]
        var perConnection: [Double] = [], runsPerConnection: [Double] = []
        var floor: [Double] = [], floorRuns: [Double] = []
        let baseline = ProcessInfo.processInfo.environment["PORTWATCH_BENCH_BASELINE"].flatMap { $0.isEmpty ? nil : $0 }
        var baselineLoop: [Double] = [], baselineConnection: [Double] = [], baselineRuns: [Double] = []
        let stats = bpf_enable_stats(BPF_STATS_RUN_TIME)
        guard stats >= 0 else { throw BenchError("cannot enable the kernel's BPF statistics: \(String(cString: strerror(-stats)))") }
        defer { close(stats) }
        var loaded: [Bool: Bool] = [:], casts = false
        for run in 0..<repeats {
            Progress.step("programs", run: run, of: repeats)
            for taskBTF in run % 2 == 0 ? [true, false] : [false, true] {
                let daemon = try BenchDaemon(environment: taskBTF ? [:] : ["PORTWATCH_BPF_TASK_BTF": "0"])
                loaded[taskBTF] = daemon.value("portwatch_kernel_feature{feature=\"bpf_task_btf\"}") == 1
                if taskBTF { casts = daemon.value("portwatch_kernel_feature{feature=\"bpf_cast_to_kern_ctx\"}") == 1 }
                let before = try programs(of: daemon.pid)
                _ = Sockets.churn(threads: 1, iterations: loops)
                let after = try programs(of: daemon.pid)
                daemon.stop()
                var total = 0.0
                for (name, end) in after {
                    let start = before[name] ?? Counts()
                    let ns = Double(end.runTime - start.runTime)
                    total += ns
                    if end.runs > start.runs { perProgram[taskBTF]![name, default: []].append(ns / Double(end.runs - start.runs)) }
                }
                perLoop[taskBTF]!.append(total / Double(loops))
            }
            // Connections: this build (plain loads where the kernel allows them), then the baseline's.
            let (ns, runs) = try connectionCost(BenchDaemon(), connections: connections)
            perConnection.append(ns)
            runsPerConnection.append(runs)
            // The floor: programs that return at once on the hooks such a connection passes.
            let nothing = try ProgramPartsBench.connectionFloor(connections: connections)
            floor.append(nothing.ns)
            floorRuns.append(nothing.runs)
            if let baseline {
                let daemon = try BenchDaemon(binary: baseline)
                let before = try programs(of: daemon.pid)
                _ = Sockets.churn(threads: 1, iterations: loops)
                let after = try programs(of: daemon.pid)
                daemon.stop()
                baselineLoop.append(after.reduce(0.0) { $0 + Double($1.value.runTime - (before[$1.key] ?? Counts()).runTime) } / Double(loops))
                let (ns, runs) = try connectionCost(BenchDaemon(binary: baseline), connections: connections)
                baselineConnection.append(ns)
                baselineRuns.append(runs)
            }
        }
        guard loaded[true] == true, loaded[false] == false else {
            throw BenchError("programs: the daemon did not load what was asked (plain loads: \(loaded[true] ?? false), checked reads: \(loaded[false] ?? false))")
        }
        let plain = Figure(name: "BPF run time per bind+listen+close loop, owner read by plain loads (bpf_task_btf)" + (casts ? ", the socket too (bpf_cast_to_kern_ctx)" : ""),
                           unit: "ns", runs: perLoop[true]!)
        let checked = Figure(name: "the same with the programs loaded as for Linux 5.10 (checked reads)", unit: "ns", runs: perLoop[false]!)
        func perRun(_ taskBTF: Bool) -> String {
            perProgram[taskBTF]!.keys.sorted().map { "\($0) \(Report.format(Measure.percentile(perProgram[taskBTF]![$0]!, 0.5)))" }.joined(separator: ", ")
        }
        var figures = [plain, checked,
                       Figure(name: "BPF run time per TCP connection that binds nothing (both ends, \(connections.formatted()) connections)", unit: "ns", runs: perConnection),
                       Figure(name: "program runs per TCP connection", unit: "runs", runs: runsPerConnection),
                       Figure(name: "the floor: programs that return at once on the same hooks, per TCP connection", unit: "ns", runs: floor),
                       Figure(name: "their runs per TCP connection", unit: "runs", runs: floorRuns)]
        var notes = [
            "plain loads / checked reads: \(Report.format(plain.median / checked.median))",
            "per TCP connection, this build / the floor: \(Report.format(Measure.percentile(perConnection, 0.5) / Measure.percentile(floor, 0.5)))",
            "ns per run, plain loads: \(perRun(true))",
            "ns per run, checked reads: \(perRun(false))",
        ]
        if baseline != nil {
            figures += [Figure(name: "baseline build: BPF run time per bind+listen+close loop", unit: "ns", runs: baselineLoop),
                        Figure(name: "baseline build: BPF run time per TCP connection", unit: "ns", runs: baselineConnection),
                        Figure(name: "baseline build: program runs per TCP connection", unit: "runs", runs: baselineRuns)]
            notes.append("this build / baseline: per loop \(Report.format(plain.median / Measure.percentile(baselineLoop, 0.5))), per connection \(Report.format(Measure.percentile(perConnection, 0.5) / Measure.percentile(baselineConnection, 0.5)))")
        }
        report.add("The kernel programs' own time (kernel.bpf_stats, 1 thread, alternating daemons)", figures, notes: notes)
    }

    /// The programs' run time and runs per loopback TCP connection (client and server ends),
    /// over `connections` of them; stops the daemon.
    static func connectionCost(_ daemon: BenchDaemon, connections: Int) throws -> (ns: Double, runs: Double) {
        defer { daemon.stop() }
        let before = try programs(of: daemon.pid)
        _ = try Sockets.connectionChurn(threads: 1, iterations: connections)
        let after = try programs(of: daemon.pid)
        var ns = 0.0, runs = 0.0
        for (name, end) in after {
            let start = before[name] ?? Counts()
            ns += Double(end.runTime - start.runTime)
            runs += Double(end.runs - start.runs)
        }
        return (ns / Double(connections), runs / Double(connections))
    }

    /// Run time and run count of each BPF program the process holds, by name.
    static func programs(of pid: Int32) throws -> [String: Counts] {
        var out: [String: Counts] = [:]
        let dir = "/proc/\(pid)/fdinfo"
        for fd in try FileManager.default.contentsOfDirectory(atPath: dir) {
            guard let text = try? String(contentsOfFile: "\(dir)/\(fd)", encoding: .utf8),
                  let line = text.split(separator: "\n").first(where: { $0.hasPrefix("prog_id:") }),
                  let id = UInt32(line.split(separator: "\t").last ?? "") else { continue }
            let progFD = bpf_prog_get_fd_by_id(id)
            guard progFD >= 0 else { continue }
            defer { close(progFD) }
            var info = bpf_prog_info()
            var size = UInt32(MemoryLayout<bpf_prog_info>.size)
            guard bpf_obj_get_info_by_fd(progFD, &info, &size) == 0 else { continue }
            let name = withUnsafeBytes(of: &info.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            out[name] = Counts(runTime: info.run_time_ns, runs: info.run_cnt)
        }
        guard !out.isEmpty else { throw BenchError("programs: no BPF program found in /proc/\(pid)/fdinfo") }
        return out
    }
}
