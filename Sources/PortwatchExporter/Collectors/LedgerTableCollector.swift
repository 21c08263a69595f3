import PortwatchCore

/// The reconciled table: how many ports are held, and one series per held port.
enum LedgerTableCollector: Collector {
    static func collect(_ state: ExporterState) -> [MetricFamily] {
        let entries = state.entries ?? []
        // By protocol and family, one flat key: a pass over 10,000 entries at each change.
        func slot(_ t: TransportProtocol, _ f: AddressFamily) -> UInt16 { UInt16(t.rawValue) << 8 | UInt16(f.rawValue) }
        var held: [UInt16: Int] = [:]
        var shown = 0
        for e in entries {
            held[slot(e.row.key.transport, e.row.key.family), default: 0] += 1
            if !e.ignored { shown += 1 }
        }
        let heldSamples = TransportProtocol.allCases.flatMap { transport in
            AddressFamily.allCases.map { family in
                MetricFamily.Sample([("protocol", "\(transport)"), ("family", "\(family)")], Double(held[slot(transport, family)] ?? 0))
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
