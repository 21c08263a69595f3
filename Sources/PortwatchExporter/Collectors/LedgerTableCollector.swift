import PortwatchCore

/// The reconciled table: how many ports are held, and one series per held port.
enum LedgerTableCollector: Collector {
    static func collect(_ state: ExporterState) -> [MetricFamily] {
        let entries = state.entries ?? []
        // By protocol and family: a pass over 10,000 entries at each change.
        var held = [Int](repeating: 0, count: TransportProtocol.allCases.count * AddressFamily.allCases.count)
        var shown = 0
        for e in entries {
            held[e.heldSlot] += 1
            if !e.ignored { shown += 1 }
        }
        let heldSamples = TransportProtocol.allCases.flatMap { transport in
            AddressFamily.allCases.map { family in
                MetricFamily.Sample([("protocol", "\(transport)"), ("family", "\(family)")], Double(held[LedgerEntry.heldSlot(transport, family)]))
            }
        }
        let limit = state.maxPortSeries ?? Int.max
        return [
            MetricFamily("portwatch_ports_held", .gauge,
                         help: "Ports held now (one per network namespace, protocol, family, address and port).",
                         samples: heldSamples),
            MetricFamily("portwatch_port_info", .gauge,
                         help: "A port held now, with the process, service, container and pod that hold it, and its exposure. Always 1.",
                         rows: .portInfo),
            MetricFamily("portwatch_ignored_ports", .gauge,
                         help: "Held ports the policy's ignore: rules leave out of the per-port series (still in the ledger and `portwatch ls --all`).",
                         samples: [.init([], Double(entries.count - shown))]),
            MetricFamily("portwatch_port_info_series_dropped", .gauge,
                         help: "portwatch_port_info series left out by --metrics.max-port-series.",
                         samples: [.init([], Double(max(0, shown - limit)))]),
            MetricFamily("portwatch_deleted_executable_port_info", .gauge,
                         help: "A port held now by a process whose executable was deleted or replaced since it started (exe ends in \" (deleted)\": an upgrade not yet restarted, or a binary run from memory). Always 1.",
                         rows: .deletedExecutable),
        ]
    }
}
