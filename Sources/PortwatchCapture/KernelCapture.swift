import CBPF
import FoundationEssentials
import Glibc
import Logging
import PortwatchCore
import PortwatchSystem

/// The BPF programs loaded and attached to the cgroup v2 root, and the ring buffer they
/// fill. Owns every libbpf handle; `close()` (or deinit) detaches everything.
/// Not thread-safe: one thread (the capture thread) polls it.
public final class KernelCapture {
    public struct Options: Sendable {
        /// Ring buffer size in bytes (rounded up to a power of two, at least one page).
        public var ringBufferBytes: Int = 1 << 20
        /// Wake the consumer only when this much data waits (0: every event).
        public var wakeupBytes: UInt32 = 64 << 10
        /// How the programs read the owner from the current task.
        public var taskBTF = TaskBTF.whereAllowed
        /// Capacity of the small map of bound sockets (see bpf/portwatch.bpf.c), whose buckets
        /// stay in cache; sockets beyond it go to the spill map.
        public var nearEntries: UInt32 = 4096
        public init() {}
    }

    /// How the programs read the owner from the current task (bpf_get_current_task_btf) and the
    /// socket from their context (bpf_cast_to_kern_ctx): plain loads or a checked read each.
    public enum TaskBTF: Sendable {
        /// Plain loads wherever the kernel has what each needs.
        case whereAllowed
        /// Checked reads, as on Linux 5.10 (to compare the two on one kernel).
        case never
        /// Plain loads without asking the kernel first (to test the fallback on a kernel
        /// without them: if the kernel refuses the programs, the socket's reads and then the
        /// owner's fall back to checked reads).
        case always
    }

    /// The libbpf this process runs with, e.g. "1.1".
    public static var libbpfVersion: String { "\(libbpf_major_version()).\(libbpf_minor_version())" }

    /// Program name (as in the BPF object) -> attached.
    public private(set) var attached: [String: Bool] = [:]
    /// The loaded programs read the current task's fields with plain loads (the kernel hands
    /// cgroup socket programs the task as a BTF pointer, Linux 6.1+), not with a
    /// checked read per pointer (Linux 5.10). Read back from the loaded object.
    public private(set) var readsTaskBTF = false
    /// The loaded cgroup programs read the kernel's socket behind their context with plain
    /// loads (bpf_cast_to_kern_ctx, Linux 6.2+), not with a checked read per field.
    public private(set) var castsContext = false

    /// Kernel features that change what the programs cost, for the log and the
    /// `portwatch_kernel_feature` gauge.
    public var features: [String: Bool] { ["bpf_task_btf": readsTaskBTF, "bpf_cast_to_kern_ctx": castsContext] }
    /// Reads the kernel memory of the loaded maps (from any thread).
    public private(set) var mapMemory = MapMemory()
    public static let programNames = ["pw_connect4", "pw_connect6", "pw_post_bind4", "pw_post_bind6",
                                      "pw_owner_exec", "pw_owner_exit", "pw_sendmsg4", "pw_sendmsg6", "pw_sock_release",
                                      "pw_tcp_state"]
    /// Programs attached to a tracepoint rather than to the cgroup v2 root.
    static let tracingPrograms: Set<String> = ["pw_owner_exec", "pw_owner_exit", "pw_tcp_state"]
    /// Programs that read the socket behind their context: each has a second form in the
    /// object, named with `_k`, that reads it with plain loads. One of the two is loaded.
    static let socketReaders: Set<String> = ["pw_post_bind4", "pw_post_bind6", "pw_sendmsg4", "pw_sendmsg6", "pw_sock_release"]

    /// The name in the object of the form of `program` that is loaded.
    private func loadedForm(_ program: String) -> String {
        castsContext && Self.socketReaders.contains(program) ? program + "_k" : program
    }

    private var object: OpaquePointer?
    private var links: [OpaquePointer] = []
    /// The consumer of the ring buffer (`pw_ring` in CBPF's shim: the ring's data mapped once,
    /// where libbpf's consumer maps it twice); open once `ringOpen`.
    private let ring = UnsafeMutablePointer<pw_ring>.allocate(capacity: 1)
    private var ringOpen = false
    private var cgroup: FileDescriptor?
    /// What the ring buffer callback writes into, reached through a raw pointer so that the
    /// per-event path has no class-property access checks.
    private struct Sink {
        var decoder = EventDecoder()
        var events: [PortEvent] = []
        var rejected: UInt64 = 0
        /// Exits and execs of processes named as owners (see `watchOwners`).
        var ownerChanges: UInt64 = 0
        /// listen() on sockets no program saw bind, to be found (see `resolveUnboundListens`).
        var unbound: [PortEvent] = []
    }
    /// Unbound listens not found yet, and since when (monotonic seconds).
    private var unresolved: [(listen: PortEvent, since: Double)] = []
    /// How long an unbound listen is looked for: its port is the kernel's a moment after the
    /// state change; a socket closed before it was found is not reported.
    static let unboundListenPatience = 1.0
    /// How often unbound listens not found yet are looked for again (new ones at once).
    static let unboundListenRetry = 0.02
    private var nextUnboundRetry = 0.0
    /// Unbound listens whose socket was gone (or its namespace out of reach) before it was found.
    public private(set) var unresolvedListens: UInt64 = 0
    private let sink = UnsafeMutablePointer<Sink>.allocate(capacity: 1)
    private let logger: Logger
    /// The maps of bound sockets: the small one, then the spill map.
    private var bindingsFDs: [Int32] = []
    private var spillFD: Int32 { bindingsFDs[1] }
    private var lostFD: Int32 = -1
    private var mapFullFD: Int32 = -1
    private var ownersFD: Int32 = -1
    private var settingsFD: Int32 = -1
    private var settings = pw_settings()
    private var watched = Set<Int32>()
    /// Written by `interrupt` to end a poll early (an idle poll sleeps about a second).
    private let wake: (read: FileDescriptor, write: FileDescriptor)
    /// What a poll waits on: the ring buffer map and the wake pipe (kept, so
    /// that a poll allocates nothing).
    private var waitSet: [pollfd] = []

    public init(options: Options = Options(), logger: Logger) throws {
        self.logger = logger
        wake = try FileDescriptor.wakePipe()
        sink.initialize(to: Sink())
        ring.initialize(to: pw_ring())
        try KernelChecks.requirePrivileges()
        try KernelChecks.requireBTF()
        KernelChecks.raiseMemlockToHardLimit()
        let cgroupRoot = try KernelChecks.cgroup2Root()
        LibbpfLog.install(logger)

        do {
            try load(options)
            do { cgroup = try FileDescriptor.open(cgroupRoot, O_RDONLY | O_DIRECTORY) } catch let error as SystemError {
                throw CaptureError("cannot open the cgroup v2 root \(cgroupRoot): \(SystemError.text(error.errno))")
            }
            try attachAll(cgroupRoot: cgroupRoot, cgroup: cgroup!)
        } catch {
            close()
            throw error
        }
    }

    deinit {
        close()
        // Here, not in close(): `interrupt` may still be called until the object goes.
        wake.read.close()
        wake.write.close()
        sink.deinitialize(count: 1)
        sink.deallocate()
        ring.deinitialize(count: 1)
        ring.deallocate()
    }

    private func load(_ options: Options) throws {
        // The ways to read, best first; each step back gives up the plain loads of the socket,
        // then of the owner.
        var ways: [(task: Bool, cast: Bool)]
        switch options.taskBTF {
        case .whereAllowed: ways = [(Self.kernelHandsTaskBTF(), Self.kernelCastsContext())]
        case .never: ways = [(false, false)]
        case .always: ways = [(true, true)]
        }
        if ways[0].cast { ways.append((ways[0].task, false)) }
        if ways[0].task { ways.append((false, false)) }
        for (i, way) in ways.enumerated() {
            do {
                try open(options, taskBTF: way.task, cast: way.cast)
                try check("cannot load the BPF programs into the kernel", bpf_object__load(object))
                break
            } catch where i < ways.count - 1 {
                // A kernel whose verifier takes the probe but not our loads through the pointer:
                // the programs still work with checked reads. (Any other failure fails at each
                // step, and the last error is the one reported.)
                bpf_object__close(object)
                object = nil
                let next = ways[i + 1]
                if way.cast && !next.cast {
                    logger.warning("the kernel refused the BPF programs that read the socket through their context with plain loads; loading them with checked reads",
                                   metadata: ["error": "\(error)", "feature": "bpf_cast_to_kern_ctx"])
                } else {
                    logger.warning("the kernel refused the BPF programs that read the owner with plain loads; loading them with checked reads",
                                   metadata: ["error": "\(error)", "feature": "bpf_task_btf"])
                }
            }
        }

        let events = try map("events")
        let size = Int(bpf_map__max_entries(events))
        var loaded = pw_load_config()
        try check("cannot read the BPF programs' configuration", pw_get_rodata(object, "load_config", &loaded, MemoryLayout<pw_load_config>.size))
        readsTaskBTF = loaded.task_btf != 0
        bindingsFDs = [bpf_map__fd(try map("bindings")), bpf_map__fd(try map("bindings_spill"))]
        lostFD = bpf_map__fd(try map("lost"))
        mapFullFD = bpf_map__fd(try map("map_full"))
        ownersFD = bpf_map__fd(try map("owners"))
        settingsFD = bpf_map__fd(try map("settings"))
        var maps: [(name: String, fd: Int32)] = []
        var next = bpf_object__next_map(object, nil)
        while let m = next {
            // libbpf names the maps of global variables "<object>.bss" and the like: by their section.
            let name = String(cString: bpf_map__name(m))
            maps.append((name.split(separator: ".").last.map(String.init) ?? name, bpf_map__fd(m)))
            next = bpf_object__next_map(object, m)
        }
        mapMemory = MapMemory(maps)
        // Past a quarter of the ring, always wake the consumer, however small the ring.
        settings = pw_settings(wakeup_bytes: min(options.wakeupBytes, UInt32(size / 4)), consumer_idle: 0)
        try check("cannot write the BPF settings", writeSettings())

        try check("cannot map the ring buffer",
                  pw_ring_open(ring, bpf_map__fd(events), size, { ctx, data, size in
                      let sink = ctx!.assumingMemoryBound(to: Sink.self)
                      // The layout is shared through bpf/portwatch.h; a short record cannot occur.
                      if let data, let event = sink.pointee.decoder.decode(data, size: size) {
                          sink.pointee.events.append(event)
                      } else if let data, let listen = sink.pointee.decoder.decodeUnboundListen(data, size: size) {
                          sink.pointee.unbound.append(listen)
                      } else if let data, EventDecoder.isOwnerChange(data, size: size) {
                          sink.pointee.ownerChanges += 1
                      } else {
                          sink.pointee.rejected += 1
                      }
                  }, UnsafeMutableRawPointer(sink)))
        ringOpen = true
        waitSet = [pollfd(fd: bpf_map__fd(events), events: Int16(POLLIN), revents: 0),
                   wake.read.pollRequest(Int32(POLLIN))]
    }

    /// Opens the embedded object and sets what must be set before load: `cast` loads the `_k`
    /// form of the programs that read the socket, and not the other.
    private func open(_ options: Options, taskBTF: Bool, cast: Bool) throws {
        let bytes = Data(base64Encoded: "\(portwatchBPFObjectBase64)")!
        object = try bytes.withUnsafeBytes { raw in
            try check("cannot open the embedded BPF object", pw_open_object(raw.baseAddress, raw.count, "portwatch"))
        }
        let events = try map("events")
        var size = max(Int(getpagesize()), options.ringBufferBytes)
        size = 1 << (Int.bitWidth - (size - 1).leadingZeroBitCount)
        try check("cannot size the ring buffer to \(size) bytes", bpf_map__set_max_entries(events, UInt32(size)))
        try check("cannot size the map of bound sockets", bpf_map__set_max_entries(try map("bindings"), max(1, options.nearEntries)))
        var config = pw_load_config(task_btf: taskBTF ? 1 : 0)
        try check("cannot configure the BPF programs", pw_set_rodata(object, "load_config", &config, MemoryLayout<pw_load_config>.size))
        castsContext = cast
        for name in Self.socketReaders {
            for (form, load) in [(name, !cast), (name + "_k", cast)] {
                let program = try check("the BPF object has no program \(form)", bpf_object__find_program_by_name(object, form))
                try check("cannot choose the BPF programs to load", bpf_program__set_autoload(program, load))
            }
        }
    }

    /// Whether every program type that reads the owner may call bpf_get_current_task_btf
    /// (libbpf loads a one-call probe program of each type).
    public static func kernelHandsTaskBTF() -> Bool {
        [BPF_PROG_TYPE_CGROUP_SOCK, BPF_PROG_TYPE_CGROUP_SOCK_ADDR].allSatisfy {
            libbpf_probe_bpf_helper($0, BPF_FUNC_get_current_task_btf, nil) == 1
        }
    }

    /// Whether the kernel has bpf_cast_to_kern_ctx (Linux 6.2+), which every program type may
    /// call: whether its BTF names the function.
    public static func kernelCastsContext() -> Bool {
        pw_kernel_has_func("bpf_cast_to_kern_ctx") == 1
    }

    private func map(_ name: String) throws -> OpaquePointer {
        try check("the BPF object has no map \(name)", bpf_object__find_map_by_name(object, name))
    }

    private func attachAll(cgroupRoot: String, cgroup: FileDescriptor) throws {
        for name in Self.programNames {
            let program = try check("the BPF object has no program \(name)", bpf_object__find_program_by_name(object, loadedForm(name)))
            let link = Self.tracingPrograms.contains(name)
                ? try check("cannot attach \(name) to its tracepoint", bpf_program__attach(program))
                : try check("cannot attach \(name) to the cgroup v2 root \(cgroupRoot)", cgroup.withUnsafeDescriptor { bpf_program__attach_cgroup(program, $0) })
            links.append(link)
            attached[name] = true
            logger.debug("attached BPF program", metadata: ["program": "\(name)", "cgroup": "\(cgroupRoot)"])
        }
    }

    /// Waits up to `timeoutMs` for events and appends those that arrived to `events`, in kernel order.
    public func poll(timeoutMs: Int32, into events: inout [PortEvent]) throws {
        // The callback appends to the sink: lend it the caller's array for the poll.
        swap(&sink.pointee.events, &events)
        defer { swap(&sink.pointee.events, &events) }
        // Waits on the ring buffer (readable while records wait) and the wake pipe.
        for i in waitSet.indices { waitSet[i].revents = 0 }
        _ = try Syscall.poll(&waitSet, timeoutMs: timeoutMs)
        if waitSet[1].revents != 0 {
            var drained = [UInt8](repeating: 0, count: 64)
            _ = drained.withUnsafeMutableBytes { try? wake.read.read(into: $0) }
        }
        // Wakeups are batched in the kernel, so a poll that timed out may still leave
        // records behind: always consume what is there.
        _ = pw_ring_consume(ring)
        if !sink.pointee.unbound.isEmpty || !unresolved.isEmpty { resolveUnboundListens(into: &sink.pointee.events) }
    }

    /// Finds the sockets that listened without binding by their inode (one sock_diag dump of
    /// the listeners per namespace and family), seeds the map of bound sockets with each (so
    /// that its state changes and its release are reported by cookie, as for a bound socket)
    /// and reports it as an open at the time it listened. One not listed yet is looked for
    /// again every `unboundListenRetry`, for up to `unboundListenPatience`; one gone meanwhile
    /// is counted in `unresolvedListens`.
    private func resolveUnboundListens(into events: inout [PortEvent]) {
        let now = SystemClock().monotonic()
        guard !sink.pointee.unbound.isEmpty || now >= nextUnboundRetry else { return }
        nextUnboundRetry = now + Self.unboundListenRetry
        unresolved += sink.pointee.unbound.map { ($0, now) }
        sink.pointee.unbound.removeAll(keepingCapacity: true)
        struct Place: Hashable { var netns: UInt32, family: AddressFamily }
        var found: [Place: [UInt32: (cookie: UInt64, key: BindingKey)]] = [:]
        for (place, listens) in Dictionary(grouping: unresolved, by: { Place(netns: $0.listen.key.netns, family: $0.listen.key.family) }) {
            var pids: [Int32] = []
            for (listen, _) in listens where !pids.contains(listen.process.pid) && pids.count < 4 { pids.append(listen.process.pid) }
            found[place] = SocketSnapshot.listeners(inodes: Set(listens.map { UInt32(truncatingIfNeeded: $0.listen.cookie) }),
                                                    netns: place.netns, family: place.family, pids: pids)
        }
        var waiting: [(listen: PortEvent, since: Double)] = []
        var seeded: [Place: [(inode: UInt32, open: PortEvent)]] = [:]
        for (listen, since) in unresolved {
            let place = Place(netns: listen.key.netns, family: listen.key.family)
            let inode = UInt32(truncatingIfNeeded: listen.cookie)
            guard let socket = found[place]?[inode] else {
                if now - since < Self.unboundListenPatience { waiting.append((listen, since)) } else { unresolvedListens += 1 }
                continue
            }
            var open = listen
            open.cookie = socket.cookie
            open.key = socket.key
            let owner = Owner(pid: listen.process.pid, name: listen.process.name, uid: listen.process.uid)
            if !remember(LiveSocket(cookie: socket.cookie, key: socket.key, owner: owner, state: .listen)) { mapFullByLookup += 1 }
            // In time order among the events of this poll.
            let at = events.lastIndex { $0.time <= open.time }.map { $0 + 1 } ?? 0
            events.insert(open, at: at)
            seeded[place, default: []].append((inode, open))
        }
        unresolved = waiting
        endSeededIfGone(seeded, into: &events)
    }

    /// A socket found by its inode may close between the dump and the seeding of the map: its
    /// release then found no entry and reported nothing. A second dump says which are still
    /// listening; one that is not, whose entry is still there (its end went unreported), is
    /// closed here: its entry removed and a close reported now.
    private func endSeededIfGone<Place: Hashable>(_ seeded: [Place: [(inode: UInt32, open: PortEvent)]], into events: inout [PortEvent]) {
        for (_, sockets) in seeded {
            guard let first = sockets.first?.open else { continue }
            let pids = Array(Set(sockets.map(\.open.process.pid)).prefix(4))
            // Not known (the namespace out of reach): left as seeded; a resync settles it.
            guard let listening = SocketSnapshot.listeners(inodes: Set(sockets.map(\.inode)), netns: first.key.netns,
                                                           family: first.key.family, pids: pids) else { continue }
            for (inode, open) in sockets where listening[inode] == nil {
                guard entry(open.cookie) != nil else { continue }
                forget(open.cookie)
                var close = open
                close.kind = .close
                close.time = SystemClock().wallNanoseconds()
                events.append(close)
            }
        }
    }

    /// Ends a poll in progress, or the next one, at once (from any thread).
    public func interrupt() {
        var byte: UInt8 = 1
        _ = withUnsafeBytes(of: &byte) { try? wake.write.write($0) }
    }

    /// While the consumer is idle (it polls rarely), the first record wakes it; while it is
    /// busy, records are gathered into one wakeup per `wakeupBytes`.
    public func consumerIdle(_ idle: Bool) {
        settings.consumer_idle = idle ? 1 : 0
        if writeSettings() != 0 {
            logger.warning("cannot write the BPF settings; events wait for the next poll", metadata: ["errno": "\(errno)"])
        }
    }

    private func writeSettings() -> Int32 {
        var zero: UInt32 = 0
        return bpf_map_update_elem(settingsFD, &zero, &settings, 0)
    }

    /// Total events the kernel dropped because the ring buffer was full.
    public func lostEvents() -> UInt64 { perCPUSum(lostFD) }

    /// Bound sockets neither of the kernel's maps could hold (full, or no memory for the entry).
    public func mapFullCount() -> UInt64 { perCPUSum(mapFullFD) + mapFullByLookup }
    /// Sockets found by an unbound listen's lookup that the map refused.
    private var mapFullByLookup: UInt64 = 0

    /// Ring buffer records the decoder rejected.
    public var decodeErrors: UInt64 { sink.pointee.rejected }

    /// Exits and execs of watched owners seen so far.
    public var ownerChanges: UInt64 { sink.pointee.ownerChanges }

    /// The processes whose exit or exec the kernel reports: the owners of held ports.
    /// Returns how many the kernel could not take (its map is full or had no memory).
    @discardableResult
    public func watchOwners(_ pids: Set<Int32>) -> Int {
        var refused = 0
        for pid in watched.subtracting(pids) {
            var key = UInt32(bitPattern: pid)
            _ = bpf_map_delete_elem(ownersFD, &key)
        }
        for pid in pids.subtracting(watched) {
            var key = UInt32(bitPattern: pid)
            var one: UInt8 = 1
            if bpf_map_update_elem(ownersFD, &key, &one, UInt64(BPF_ANY)) != 0 { refused += 1 }
        }
        watched = pids
        return refused
    }

    private func perCPUSum(_ fd: Int32) -> UInt64 {
        let cpus = Int(libbpf_num_possible_cpus())
        var values = [UInt64](repeating: 0, count: max(cpus, 1))
        var zero: UInt32 = 0
        guard bpf_map_lookup_elem(fd, &zero, &values) == 0 else { return 0 }
        return values.reduce(0, &+)
    }

    /// Tells the kernel about a socket that existed before portwatch, so that its release
    /// is reported. What the kernel already knows wins (it is newer than the snapshot),
    /// except a client mark: a snapshot that lists the socket as a listener saw it
    /// disconnect (UDP `connect(AF_UNSPEC)` has no hook). A new entry goes to the spill map
    /// (the small one is for sockets that come and go); a known one is changed where it is.
    /// Returns false if the map refused it (full).
    @discardableResult
    public func remember(_ socket: LiveSocket) -> Bool {
        var cookie = socket.cookie
        var binding = EventDecoder.binding(for: socket.key, owner: socket.owner, state: socket.state)
        if let (fd, known) = entry(socket.cookie) {
            guard known.flags & UInt8(PW_FLAG_CONNECTED) != 0 else { return true }
            return bpf_map_update_elem(fd, &cookie, &binding, UInt64(BPF_EXIST)) == 0
        }
        if bpf_map_update_elem(spillFD, &cookie, &binding, UInt64(BPF_NOEXIST)) == 0 { return true }
        // The kernel made it meanwhile: its entry wins.
        return errno == EEXIST || entry(socket.cookie) != nil
    }

    /// The socket's entry and the map that holds it, if any.
    private func entry(_ cookie: UInt64) -> (fd: Int32, binding: pw_binding)? {
        for fd in bindingsFDs {
            var cookie = cookie
            var binding = pw_binding()
            if bpf_map_lookup_elem(fd, &cookie, &binding) == 0 { return (fd, binding) }
        }
        return nil
    }

    /// Removes a released socket's entry from the maps of bound sockets (none: nothing to do).
    public func forget(_ cookie: UInt64) {
        for fd in bindingsFDs {
            var cookie = cookie
            _ = bpf_map_delete_elem(fd, &cookie)
        }
    }

    /// Every entry of the maps of bound sockets, read in batches of buckets (walking a map key
    /// by key restarts from the first bucket whenever the key in hand is deleted meanwhile,
    /// which a busy host does all the time). Entries that change while it reads may be missed
    /// or seen twice; nil when the kernel refuses the read.
    public func rememberedSockets() -> [UInt64: RememberedSocket]? {
        var out: [UInt64: RememberedSocket] = [:]
        // A cookie is in one map only (see keep_binding in bpf/portwatch.bpf.c).
        for fd in bindingsFDs {
            guard let entries = Self.entries(of: fd) else { return nil }
            out.merge(entries) { first, _ in first }
        }
        return out
    }

    private static func entries(of bindingsFD: Int32) -> [UInt64: RememberedSocket]? {
        var out: [UInt64: RememberedSocket] = [:]
        var capacity: UInt32 = 1024
        var keys = [UInt64](repeating: 0, count: Int(capacity))
        var values = [pw_binding](repeating: pw_binding(), count: Int(capacity))
        var token: UInt64 = 0
        var first = true
        while true {
            var count = capacity
            let rc = withUnsafeMutableBytes(of: &token) { tokenBytes in
                bpf_map_lookup_batch(bindingsFD, first ? nil : tokenBytes.baseAddress, tokenBytes.baseAddress, &keys, &values, &count, nil)
            }
            let error = rc == 0 ? 0 : errno
            // A bucket longer than the buffer: a larger one, and the same batch again.
            if rc != 0 && error == ENOSPC && capacity < 1 << 20 {
                capacity *= 4
                keys = [UInt64](repeating: 0, count: Int(capacity))
                values = [pw_binding](repeating: pw_binding(), count: Int(capacity))
                continue
            }
            guard rc == 0 || error == ENOENT else { return nil }
            for (cookie, b) in zip(keys, values).prefix(Int(min(count, capacity))) {
                guard let transport = TransportProtocol(rawValue: b.protocol) else { continue }
                out[cookie] = RememberedSocket(transport: transport, state: b.state == UInt8(PW_STATE_LISTEN.rawValue) ? .listen : .bound,
                                               client: b.flags & UInt8(PW_FLAG_CONNECTED) != 0, netns: b.netns)
            }
            if rc != 0 { return out } // ENOENT: that was the last batch
            first = false
        }
    }

    /// Detaches every program and frees every handle. Idempotent.
    public func close() {
        for link in links { bpf_link__destroy(link) }
        links.removeAll()
        for name in attached.keys { attached[name] = false }
        mapMemory = MapMemory()
        if ringOpen { pw_ring_close(ring) }
        ringOpen = false
        if let object { bpf_object__close(object) }
        object = nil
        cgroup?.close()
        cgroup = nil
    }
}

/// Forwards libbpf's own log to swift-log at debug level.
enum LibbpfLog {
    nonisolated(unsafe) static var logger: Logger?

    static func install(_ logger: Logger) {
        Self.logger = logger
        pw_set_libbpf_log_sink { level, line in
            guard let line else { return }
            let text = String(cString: line).trimmingNewlines
            LibbpfLog.logger?.debug("libbpf: \(text)", metadata: ["libbpf_level": "\(level)"])
        }
    }
}
