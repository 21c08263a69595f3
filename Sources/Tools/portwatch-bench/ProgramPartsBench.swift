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
/// once per 64 KiB). Variants in the same repeats: the coarse clock for the timestamp; the small
/// map of bound sockets sized for 262,144 entries (its bucket array 4 MiB instead of 64 KiB), as
/// the one map was before the spill map, which says how much of the entry's cost is reaching a
/// bucket in memory; and (where the kernel has it) the entry kept in socket storage instead.
/// Then the whole bind+listen+close under two designs, alternating: portwatch's three programs
/// and the open deferred (`deferred_*` in parts.bpf.c: one record per transient, at the price of
/// a second map). `connectionFloor` (used by ProgramBench) loads the same object for the floor under the
/// per-connection cost: programs that return at once on the hooks a TCP connection passes.
enum ProgramPartsBench {
    static let parts = ["dispatch and protocol check", "socket cookie", "socket's namespace (2 checked reads)",
                        "owner (pid, uid, cgroup, name)", "entry in the map of bound sockets",
                        "ring buffer record (reserve, fill, submit)", "timestamp (bpf_ktime_get_ns)",
                        "wakeup decision"]

    struct Variant: Hashable { var stage: Int, coarse = false, largeMap = false, storage = false }

    /// One variant's run: each program's run time per run, and the binding thread's CPU time
    /// per bind+close (the kernel's work in the system calls, what the programs leave to the
    /// socket's destruction included).
    struct Sample { var bind: Double, release: Double, cpu: Double }

    static func run(report: Report, repeats: Int) throws {
        let loops = 200_000
        let stats = bpf_enable_stats(BPF_STATS_RUN_TIME)
        guard stats >= 0 else { throw BenchError("cannot enable the kernel's BPF statistics: \(String(cString: strerror(-stats)))") }
        defer { close(stats) }
        // Socket storage for cgroup socket programs (bpf_sk_storage_get): not on 5.10.
        let storage = libbpf_probe_bpf_helper(BPF_PROG_TYPE_CGROUP_SOCK, BPF_FUNC_sk_storage_get, nil) == 1
        let variants = (0..<parts.count).map { Variant(stage: $0) } + [Variant(stage: 6, coarse: true), Variant(stage: 4, largeMap: true)]
            + (storage ? [Variant(stage: 4, storage: true), Variant(stage: 7, storage: true)] : [])
        var samples: [Variant: [Sample]] = [:]
        for run in 0..<repeats {
            Progress.step("parts", run: run, of: repeats)
            for variant in run % 2 == 0 ? variants : variants.reversed() {
                samples[variant, default: []].append(try measure(variant, loops: loops))
            }
        }
        let perBind = samples.mapValues { $0.map(\.bind) }

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
        figures.append(Figure(name: "stage 4 with the map sized for 262,144 entries (as the one map was)", unit: "ns", runs: perBind[Variant(stage: 4, largeMap: true)]!))
        notes.append("coarse clock instead: \(Report.format(median[Variant(stage: 6, coarse: true)]! - median[Variant(stage: 5)]!)) ns for the timestamp")
        notes.append("map entry with 262,144 entries' buckets: \(Report.format(median[Variant(stage: 4, largeMap: true)]! - median[Variant(stage: 3)]!)) ns")
        if storage {
            let hash = Variant(stage: 4), socket = Variant(stage: 4, storage: true)
            let whole = Variant(stage: 7), wholeSocket = Variant(stage: 7, storage: true)
            figures.append(Figure(name: "stage 4 with socket storage instead of the map", unit: "ns", runs: perBind[socket]!))
            figures.append(Figure(name: "release, map lookup and delete (stage 4)", unit: "ns", runs: samples[hash]!.map(\.release)))
            figures.append(Figure(name: "release, socket storage lookup (stage 4)", unit: "ns", runs: samples[socket]!.map(\.release)))
            figures.append(Figure(name: "binding thread's CPU per bind+listen+close, stage 7, map", unit: "ns", runs: samples[whole]!.map(\.cpu)))
            figures.append(Figure(name: "binding thread's CPU per bind+listen+close, stage 7, socket storage", unit: "ns", runs: samples[wholeSocket]!.map(\.cpu)))
            notes.append("map entry in socket storage: \(Report.format(median[socket]! - median[Variant(stage: 3)]!)) ns")
        }
        // The whole bind+listen+close, two designs, alternating.
        var designTimes: [[Double]] = Array(repeating: [], count: designs.count)
        for run in 0..<repeats {
            Progress.step("parts: designs", run: run, of: repeats)
            for i in run % 2 == 0 ? Array(designs.indices) : designs.indices.reversed() {
                designTimes[i].append(try measureDesign(designs[i].programs, loops: loops))
            }
        }
        for (i, design) in designs.enumerated() {
            figures.append(Figure(name: "per bind+listen+close, \(design.name)", unit: "ns", runs: designTimes[i]))
        }
        notes.append("the open deferred / portwatch's programs: \(Report.format(Measure.percentile(designTimes[1], 0.5) / Measure.percentile(designTimes[0], 0.5)))")
        report.add("The bind path taken apart (kernel.bpf_stats per bind, program loaded alone, 1 thread)", figures, notes: notes)
    }

    /// Loads the parts object at `variant`, binds, listens on and closes `loops` TCP sockets, and returns
    /// each program's run time per run and the thread's CPU time per loop.
    static func measure(_ variant: Variant, loops: Int) throws -> Sample {
        let object = try openParts()
        defer { bpf_object__close(object) }
        func set<T>(_ name: String, _ value: T) throws {
            var value = value
            guard pw_set_rodata(object, name, &value, MemoryLayout<T>.size) == 0 else { throw BenchError("parts: cannot set \(name)") }
        }
        try set("stage", UInt32(variant.stage))
        try set("coarse_time", UInt32(variant.coarse ? 1 : 0))
        try set("socket_storage", UInt32(variant.storage ? 1 : 0))
        if variant.largeMap { bpf_map__set_max_entries(bpf_object__find_map_by_name(object, "bindings"), 1 << 18) }
        guard bpf_object__load(object) == 0 else { throw BenchError("parts: the kernel refused the BPF object") }

        let (links, fds) = try attach(["part_post_bind4", "part_sock_release"], of: object)
        defer { links.forEach { bpf_link__destroy($0) } }
        setWakeups(object)

        let consumer = try Consumer(object)
        let fd = fds[0], releaseFD = fds[1]
        let before = runTime(fd), releaseBefore = runTime(releaseFD)
        let churn = Sockets.timedChurn(threads: 1, iterations: loops)
        let after = runTime(fd), releaseAfter = runTime(releaseFD)
        let lost = consumer.stop()
        guard lost == 0 else { throw BenchError("parts: stage \(variant.stage) lost \(lost) records: the consumer fell behind") }
        guard after.runs > before.runs else { throw BenchError("parts: part_post_bind4 never ran") }
        return Sample(bind: Double(after.ns - before.ns) / Double(after.runs - before.runs),
                      release: Double(releaseAfter.ns - releaseBefore.ns) / Double(max(1, releaseAfter.runs - releaseBefore.runs)),
                      cpu: churn.cpu * 1e9 / Double(loops))
    }

    /// Drains the object's ring on another thread as the daemon would, woken by the wakeup
    /// decision or by its 10 ms poll timeout, until `stop()`, which says how many records were lost.
    final class Consumer: @unchecked Sendable {
        let object: OpaquePointer
        let ring: OpaquePointer
        let stopping = Atomic<Bool>(false)
        let done = DispatchSemaphore(value: 0)

        init(_ object: OpaquePointer) throws {
            guard let ring = ring_buffer__new(bpf_map__fd(bpf_object__find_map_by_name(object, "events")), { _, _, _ in 0 }, nil, nil) else {
                throw BenchError("parts: cannot create the ring buffer consumer")
            }
            self.object = object
            self.ring = ring
            let address = UInt(bitPattern: UnsafeMutableRawPointer(ring))
            Thread { [self] in
                let ring = OpaquePointer(bitPattern: address)
                // A poll that times out consumes nothing: consume after each.
                while !self.stopping.load(ordering: .relaxed) {
                    _ = ring_buffer__poll(ring, 10)
                    _ = ring_buffer__consume(ring)
                }
                _ = ring_buffer__consume(ring)
                self.done.signal()
            }.start()
        }

        func stop() -> UInt64 {
            stopping.store(true, ordering: .relaxed)
            done.wait()
            ring_buffer__free(ring)
            return perCPUSum(bpf_map__fd(bpf_object__find_map_by_name(object, "lost")))
        }
    }

    /// The programs of a whole bind+listen+close: portwatch's own (as loaded on kernels without
    /// bpf_cast_to_kern_ctx, so that both read the socket alike) and the deferred-open design's
    /// (parts.bpf.c). Their run time per loop, all three programs summed.
    static let designs: [(name: String, programs: [String])] = [
        ("portwatch's programs (pw_post_bind4, pw_tcp_state, pw_sock_release)", ["pw_post_bind4", "pw_tcp_state", "pw_sock_release"]),
        ("the open deferred: one record per transient (deferred_post_bind4, deferred_tcp_state, deferred_sock_release)",
         ["deferred_post_bind4", "deferred_tcp_state", "deferred_sock_release"]),
    ]

    static func measureDesign(_ programs: [String], loops: Int) throws -> Double {
        let object = try openParts()
        defer { bpf_object__close(object) }
        guard bpf_object__load(object) == 0 else { throw BenchError("parts: the kernel refused the BPF object") }
        setWakeups(object)
        let (links, fds) = try attach(programs, of: object)
        defer { links.forEach { bpf_link__destroy($0) } }
        let consumer = try Consumer(object)
        let before = fds.map(runTime)
        _ = Sockets.timedChurn(threads: 1, iterations: loops)
        let after = fds.map(runTime)
        let lost = consumer.stop()
        guard lost == 0 else { throw BenchError("parts: \(programs[0]) lost \(lost) records: the consumer fell behind") }
        return zip(before, after).reduce(0.0) { $0 + Double($1.1.ns - $1.0.ns) } / Double(loops)
    }

    /// The run time and runs, per loopback TCP connection (both ends), of programs that return
    /// at once on the hooks portwatch's programs use on such a connection.
    static func connectionFloor(connections: Int) throws -> (ns: Double, runs: Double) {
        let object = try openParts()
        defer { bpf_object__close(object) }
        guard bpf_object__load(object) == 0 else { throw BenchError("parts: the kernel refused the BPF object") }
        let (links, fds) = try attach(["floor_tcp_state", "floor_sock_release", "floor_connect4"], of: object)
        defer { links.forEach { bpf_link__destroy($0) } }
        let before = fds.map(runTime)
        _ = try Sockets.connectionChurn(threads: 1, iterations: connections)
        let after = fds.map(runTime)
        let ns = zip(before, after).reduce(0.0) { $0 + Double($1.1.ns - $1.0.ns) }
        let runs = zip(before, after).reduce(0.0) { $0 + Double($1.1.runs - $1.0.runs) }
        return (ns / Double(connections), runs / Double(connections))
    }

    /// The daemon's wakeup setting in a loaded object: the consumer woken once per 64 KiB.
    static func setWakeups(_ object: OpaquePointer) {
        var settings = pw_settings(wakeup_bytes: 64 << 10, consumer_idle: 0)
        var zero: UInt32 = 0
        bpf_map_update_elem(bpf_map__fd(bpf_object__find_map_by_name(object, "settings")), &zero, &settings, 0)
    }

    /// Attaches the named programs of a loaded object: the tracepoint ones (`*tcp_state`) where
    /// their section says, the others to the cgroup v2 root. Their links, to destroy, and
    /// descriptors.
    static func attach(_ names: [String], of object: OpaquePointer) throws -> (links: [OpaquePointer], fds: [Int32]) {
        let root = open(try KernelChecks.cgroup2Root(), O_RDONLY | O_DIRECTORY)
        guard root >= 0 else { throw BenchError("parts: cannot open the cgroup v2 root") }
        defer { close(root) }
        var links: [OpaquePointer] = []
        var fds: [Int32] = []
        for name in names {
            let program = bpf_object__find_program_by_name(object, name)
            guard let link = name.hasSuffix("tcp_state") ? bpf_program__attach(program) : bpf_program__attach_cgroup(program, root) else {
                links.forEach { bpf_link__destroy($0) }
                throw BenchError("parts: cannot attach \(name)")
            }
            links.append(link)
            fds.append(bpf_program__fd(program))
        }
        return (links, fds)
    }

    static func openParts() throws -> OpaquePointer {
        let bytes = Data(base64Encoded: "\(partsBPFObjectBase64)")!
        guard let object = bytes.withUnsafeBytes({ pw_open_object($0.baseAddress, $0.count, "parts") }) else {
            throw BenchError("parts: cannot open the BPF object")
        }
        pw_set_rodata(object, "load_config", [pw_load_config(task_btf: KernelCapture.kernelHandsTaskBTF() ? 1 : 0)], MemoryLayout<pw_load_config>.size)
        bpf_map__set_max_entries(bpf_object__find_map_by_name(object, "events"), 1 << 20)
        return object
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
