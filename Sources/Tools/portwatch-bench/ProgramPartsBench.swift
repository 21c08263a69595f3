import CBPF
import Foundation
import Glibc
import PortwatchCapture
import Synchronization

/// The bind path's parts: `bpf/parts.bpf.c` does the first k parts of pw_post_bind4's work
/// (cookie, namespace, owner, map entry, record, timestamp, wakeup decision) with the same
/// helpers and maps, loaded alone (no daemon) and attached to the cgroup v2 root; each part's
/// cost is the difference between two stages' run time per bind (`kernel.bpf_stats`), all
/// stages in turn in each repeat. A consumer thread drains the ring as the daemon would (woken
/// once per 64 KiB). Two variants in the same repeats: the coarse clock for the timestamp, and
/// the map of bound sockets sized for 4,096 entries instead of 262,144 (its bucket array 64 KiB
/// instead of 4 MiB), which says how much of the entry's cost is reaching a bucket in memory.
enum ProgramPartsBench {
    static let parts = ["dispatch and protocol check", "socket cookie", "socket's namespace (2 checked reads)",
                        "owner (pid, uid, cgroup, name)", "entry in the map of bound sockets",
                        "ring buffer record (reserve, fill, submit)", "timestamp (bpf_ktime_get_ns)",
                        "wakeup decision"]

    struct Variant: Hashable { var stage: Int, coarse = false, smallMap = false }

    static func run(report: Report, repeats: Int) throws {
        let loops = 200_000
        let stats = bpf_enable_stats(BPF_STATS_RUN_TIME)
        guard stats >= 0 else { throw BenchError("cannot enable the kernel's BPF statistics: \(String(cString: strerror(-stats)))") }
        defer { close(stats) }
        let variants = (0..<parts.count).map { Variant(stage: $0) } + [Variant(stage: 6, coarse: true), Variant(stage: 4, smallMap: true)]
        var perBind: [Variant: [Double]] = [:]
        for run in 0..<repeats {
            Progress.step("parts", run: run, of: repeats)
            for variant in run % 2 == 0 ? variants : variants.reversed() {
                perBind[variant, default: []].append(try measure(variant, loops: loops))
            }
        }
        let median = perBind.mapValues { Measure.percentile($0, 0.5) }
        var figures: [Figure] = []
        var notes: [String] = []
        for (stage, part) in parts.enumerated() {
            let variant = Variant(stage: stage)
            figures.append(Figure(name: "stage \(stage): \(stage == 0 ? "" : "+ ")\(part)", unit: "ns", runs: perBind[variant]!))
            if stage > 0 {
                notes.append("\(part): \(Report.format(median[variant]! - median[Variant(stage: stage - 1)]!)) ns")
            }
        }
        figures.append(Figure(name: "stage 6 with bpf_ktime_get_coarse_ns", unit: "ns", runs: perBind[Variant(stage: 6, coarse: true)]!))
        figures.append(Figure(name: "stage 4 with a map of 4,096 entries", unit: "ns", runs: perBind[Variant(stage: 4, smallMap: true)]!))
        notes.append("coarse clock instead: \(Report.format(median[Variant(stage: 6, coarse: true)]! - median[Variant(stage: 5)]!)) ns for the timestamp")
        notes.append("map entry with 4,096 entries' buckets: \(Report.format(median[Variant(stage: 4, smallMap: true)]! - median[Variant(stage: 3)]!)) ns")
        report.add("The bind path taken apart (kernel.bpf_stats per bind, program loaded alone, 1 thread)", figures, notes: notes)
    }

    /// Loads the parts object at `variant`, binds and closes `loops` TCP sockets, and returns
    /// part_post_bind4's run time per run.
    static func measure(_ variant: Variant, loops: Int) throws -> Double {
        let bytes = Data(base64Encoded: "\(partsBPFObjectBase64)")!
        guard let object = bytes.withUnsafeBytes({ pw_open_object($0.baseAddress, $0.count, "parts") }) else {
            throw BenchError("parts: cannot open the BPF object")
        }
        defer { bpf_object__close(object) }
        func set<T>(_ name: String, _ value: T) throws {
            var value = value
            guard pw_set_rodata(object, name, &value, MemoryLayout<T>.size) == 0 else { throw BenchError("parts: cannot set \(name)") }
        }
        try set("stage", UInt32(variant.stage))
        try set("coarse_time", UInt32(variant.coarse ? 1 : 0))
        try set("load_config", pw_load_config(task_btf: KernelCapture.kernelHandsTaskBTF() ? 1 : 0))
        bpf_map__set_max_entries(bpf_object__find_map_by_name(object, "events"), 1 << 20)
        if variant.smallMap { bpf_map__set_max_entries(bpf_object__find_map_by_name(object, "bindings"), 4096) }
        guard bpf_object__load(object) == 0 else { throw BenchError("parts: the kernel refused the BPF object") }

        let root = open(try KernelChecks.cgroup2Root(), O_RDONLY | O_DIRECTORY)
        guard root >= 0 else { throw BenchError("parts: cannot open the cgroup v2 root") }
        defer { close(root) }
        let bind = bpf_object__find_program_by_name(object, "part_post_bind4")
        var links: [OpaquePointer] = []
        defer { links.forEach { bpf_link__destroy($0) } }
        for name in ["part_post_bind4", "part_sock_release"] {
            guard let link = bpf_program__attach_cgroup(bpf_object__find_program_by_name(object, name), root) else {
                throw BenchError("parts: cannot attach \(name)")
            }
            links.append(link)
        }
        var settings = pw_settings(wakeup_bytes: 64 << 10, consumer_idle: 0)
        var zero: UInt32 = 0
        bpf_map_update_elem(bpf_map__fd(bpf_object__find_map_by_name(object, "settings")), &zero, &settings, 0)

        // The consumer: drains the ring on the other core, woken by the wakeup decision (stage
        // 7) or by its 10 ms poll timeout.
        guard let ring = ring_buffer__new(bpf_map__fd(bpf_object__find_map_by_name(object, "events")), { _, _, _ in 0 }, nil, nil) else {
            throw BenchError("parts: cannot create the ring buffer consumer")
        }
        defer { ring_buffer__free(ring) }
        let stop = Atomic<Bool>(false)
        let done = DispatchSemaphore(value: 0)
        let address = UInt(bitPattern: UnsafeMutableRawPointer(ring))
        Thread {
            let ring = OpaquePointer(bitPattern: address)
            // A poll that times out consumes nothing: consume after each.
            while !stop.load(ordering: .relaxed) {
                _ = ring_buffer__poll(ring, 10)
                _ = ring_buffer__consume(ring)
            }
            _ = ring_buffer__consume(ring)
            done.signal()
        }.start()

        let fd = bpf_program__fd(bind)
        let before = runTime(fd)
        _ = Sockets.churn(threads: 1, iterations: loops)
        let after = runTime(fd)
        stop.store(true, ordering: .relaxed)
        done.wait()
        let lost = perCPUSum(bpf_map__fd(bpf_object__find_map_by_name(object, "lost")))
        guard lost == 0 else { throw BenchError("parts: stage \(variant.stage) lost \(lost) records: the consumer fell behind") }
        guard after.runs > before.runs else { throw BenchError("parts: part_post_bind4 never ran") }
        return Double(after.ns - before.ns) / Double(after.runs - before.runs)
    }

    static func runTime(_ fd: Int32) -> (ns: UInt64, runs: UInt64) {
        var info = bpf_prog_info()
        var size = UInt32(MemoryLayout<bpf_prog_info>.size)
        guard bpf_obj_get_info_by_fd(fd, &info, &size) == 0 else { return (0, 0) }
        return (info.run_time_ns, info.run_cnt)
    }

    static func perCPUSum(_ fd: Int32) -> UInt64 {
        var values = [UInt64](repeating: 0, count: Int(libbpf_num_possible_cpus()))
        var zero: UInt32 = 0
        guard bpf_map_lookup_elem(fd, &zero, &values) == 0 else { return 0 }
        return values.reduce(0, &+)
    }
}
