import PortwatchCore

/// Everything one scrape reports, gathered by the daemon.
public struct ExporterState: Sendable {
    /// The reconciled table, sorted by key; nil when the database could not be read.
    public var rows: [Binding]?
    public var counters: [CounterEntry]
    /// BPF program name -> attached.
    public var programs: [String: Bool]
    public var version: String
    public var revision: String
    /// Caps `portwatch_port_info` series; nil means no cap.
    public var maxPortSeries: Int?
    /// Held ports the expected-listener policy does not allow; nil when no policy is set.
    public var unexpected: [Binding]?
    /// The last policy (re)load: whether it worked, and when (Unix seconds).
    public var policyReload: (success: Bool, time: Double)?

    public init(rows: [Binding]?, counters: [CounterEntry], programs: [String: Bool],
                version: String, revision: String, maxPortSeries: Int? = nil) {
        self.rows = rows
        self.counters = counters
        self.programs = programs
        self.version = version
        self.revision = revision
        self.maxPortSeries = maxPortSeries
    }

    /// Which rows the policy flags (none is set when `policy` is nil).
    public func withPolicy(unexpected: [Binding]?, reload: (success: Bool, time: Double)?) -> ExporterState {
        var copy = self
        copy.unexpected = unexpected
        copy.policyReload = reload
        return copy
    }
}

/// The metric contract: names and labels users build dashboards and alerts on.
public enum PortwatchMetrics {
    public static func families(_ state: ExporterState) -> [MetricFamily] {
        let rows = state.rows ?? []
        var out: [MetricFamily] = []

        var held: [String: Int] = [:]
        for row in rows { held["\(row.key.transport)/\(row.key.family)", default: 0] += 1 }
        var heldSamples: [MetricFamily.Sample] = []
        for transport in TransportProtocol.allCases {
            for family in AddressFamily.allCases {
                heldSamples.append(.init([("protocol", "\(transport)"), ("family", "\(family)")],
                                         Double(held["\(transport)/\(family)"] ?? 0)))
            }
        }
        out.append(MetricFamily("portwatch_ports_held", .gauge,
                                help: "Ports held now (one per network namespace, protocol, family, address and port).",
                                samples: heldSamples))

        let limit = state.maxPortSeries ?? Int.max
        out.append(MetricFamily("portwatch_port_info", .gauge,
                                help: "A port held now, with the process that holds it. Always 1.",
                                samples: rows.prefix(limit).map(portInfo)))
        out.append(MetricFamily("portwatch_port_info_series_dropped", .gauge,
                                help: "portwatch_port_info series left out by --metrics.max-port-series.",
                                samples: [.init([], Double(max(0, rows.count - limit)))]))

        if let unexpected = state.unexpected {
            out.append(MetricFamily("portwatch_unexpected_port_info", .gauge,
                                    help: "A port held now that the expected-listener policy does not allow. Always 1.",
                                    samples: unexpected.prefix(limit).map(portInfo)))
            out.append(MetricFamily("portwatch_unexpected_ports", .gauge,
                                    help: "Ports held now that the expected-listener policy does not allow.",
                                    samples: [.init([], Double(unexpected.count))]))
        }
        if let reload = state.policyReload {
            out.append(MetricFamily("portwatch_policy_last_reload_success", .gauge,
                                    help: "1 if the last load of the policy file worked, else 0 (the previous policy stays in force).",
                                    samples: [.init([], reload.success ? 1 : 0)]))
            out.append(MetricFamily("portwatch_policy_last_reload_success_timestamp_seconds", .gauge,
                                    help: "When the policy file was last loaded successfully, in Unix seconds.", unit: "seconds",
                                    samples: [.init([], reload.time)]))
        }

        func counter(_ name: String, _ entry: String, label: String, values: [String], help: String) {
            let samples = values.map { value in
                MetricFamily.Sample([(label, value)], Double(state.counters.first { $0.name == entry && $0.label == value }?.value ?? 0))
            }
            out.append(MetricFamily(name, .counter, help: help, samples: samples))
        }
        let protocols = TransportProtocol.allCases.map(\.description)
        counter("portwatch_events", CounterEntry.events, label: "kind", values: ["close", "open"],
                help: "Kernel events received, by kind.")
        counter("portwatch_transient_bindings", CounterEntry.transientBindings, label: "protocol", values: protocols,
                help: "Sockets released less than --reconcile.window after they took a port; never written to the table.")
        counter("portwatch_client_bindings", CounterEntry.clientBindings, label: "protocol", values: protocols,
                help: "Sockets that bound a port and connected within --reconcile.window: clients, never listed as listeners.")
        counter("portwatch_orphan_closes", CounterEntry.orphanCloses, label: "protocol", values: protocols,
                help: "Releases of ports the table did not hold, ignored.")
        counter("portwatch_reconcile_actions", CounterEntry.actions, label: "action", values: ["delete", "insert", "update"],
                help: "Changes written to the table, by action.")
        counter("portwatch_resync_corrections", CounterEntry.resyncCorrections, label: "action", values: ["delete", "insert"],
                help: "Rows a resync against the kernel's sockets had to add or remove.")
        func single(_ name: String, _ entry: String, help: String) {
            let value = state.counters.first { $0.name == entry }?.value ?? 0
            out.append(MetricFamily(name, .counter, help: help, samples: [.init([], Double(value))]))
        }
        single("portwatch_events_lost", CounterEntry.eventsLost, help: "Kernel events dropped because the ring buffer was full.")
        single("portwatch_resyncs", CounterEntry.resyncs,
               help: "Comparisons of the table with the kernel's sockets since start (start-up, --resync.interval, after lost events).")
        single("portwatch_decode_errors", CounterEntry.decodeErrors,
               help: "Kernel event records the decoder rejected since start.")
        single("portwatch_bindings_map_full", CounterEntry.bindingsMapFull,
               help: "Bound sockets the kernel's map had no room for since start; their release is found by the next resync.")
        single("portwatch_store_errors", CounterEntry.storeErrors,
               help: "Failed writes to the database since start (changes are kept in memory and retried).")

        out.append(MetricFamily("portwatch_up", .gauge,
                                help: "1 when the ledger could be read for this scrape, else 0.",
                                samples: [.init([], state.rows == nil ? 0 : 1)]))
        out.append(MetricFamily("portwatch_bpf_program_attached", .gauge,
                                help: "1 when the BPF program is attached.",
                                samples: state.programs.keys.sorted().map { .init([("program", $0)], state.programs[$0]! ? 1 : 0) }))
        out.append(MetricFamily("portwatch_build_info", .gauge,
                                help: "portwatch build information. Always 1.",
                                samples: [.init([("revision", state.revision), ("version", state.version)], 1)]))
        return out
    }

    static func portInfo(_ row: Binding) -> MetricFamily.Sample {
        let k = row.key
        return .init([("netns", String(k.netns)), ("protocol", "\(k.transport)"), ("family", "\(k.family)"),
                      ("address", k.address), ("port", String(k.port)), ("state", "\(row.state)"),
                      ("pid", String(row.owner.pid)), ("comm", row.owner.comm)], 1)
    }
}
