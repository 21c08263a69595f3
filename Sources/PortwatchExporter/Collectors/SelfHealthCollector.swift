import PortwatchCore

/// The daemon's own health: the ledger readable, programs attached, the pipeline's errors.
enum SelfHealthCollector: Collector {
    static func collect(_ state: ExporterState) -> [MetricFamily] {
        func single(_ name: String, _ entry: CounterName, help: String) -> MetricFamily {
            MetricFamily(name, .counter, help: help, samples: [.init([], Double(state.counter(entry)))])
        }
        return [
            single("portwatch_resyncs", CounterEntry.resyncs,
                   help: "Comparisons of the table with the kernel's sockets since start (start-up, --resync.interval, after lost events)."),
            single("portwatch_holder_checks", CounterEntry.holderChecks,
                   help: "Lookups of who holds the ports of owners that exited or exec'd, in their namespaces alone (no resync) since start."),
            single("portwatch_decode_errors", CounterEntry.decodeErrors,
                   help: "Kernel event records the decoder rejected since start."),
            single("portwatch_bindings_map_full", CounterEntry.bindingsMapFull,
                   help: "Bound sockets neither of the kernel's maps (bindings, bindings_spill) could hold since start (full, or no memory for the entry); their release is found by the next resync."),
            single("portwatch_bindings_map_stale", CounterEntry.bindingsMapStale,
                   help: "Entries of the kernel's maps of bound sockets whose socket was gone without its release reported (the kernel skipped the release program), removed by resyncs since start."),
            single("portwatch_unresolved_listens", CounterEntry.unresolvedListens,
                   help: "Sockets that listened without binding and were closed before portwatch found their port (it looks for up to a second): never reported."),
            single("portwatch_store_errors", CounterEntry.storeErrors,
                   help: "Failed writes to the database since start (changes are kept in memory and retried)."),
            MetricFamily("portwatch_up", .gauge, help: "1 when the ledger could be read for this scrape, else 0.",
                         samples: [.init([], state.entries == nil ? 0 : 1)]),
            MetricFamily("portwatch_bpf_program_attached", .gauge, help: "1 when the BPF program is attached.",
                         samples: state.programs.keys.sorted().map { .init([("program", $0)], state.programs[$0]! ? 1 : 0) }),
            MetricFamily("portwatch_kernel_feature", .gauge,
                         help: "1 when the kernel offers the feature, 0 when portwatch works without it (see README, Supported kernels).",
                         samples: state.kernelFeatures.keys.sorted().map { .init([("feature", $0)], state.kernelFeatures[$0]! ? 1 : 0) }),
            MetricFamily("portwatch_build_info", .gauge, help: "portwatch build information. Always 1.",
                         samples: [.init([("revision", state.revision), ("version", state.version)], 1)]),
        ]
    }
}
