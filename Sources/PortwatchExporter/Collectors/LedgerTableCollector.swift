import PortwatchCore

/// The reconciled table: how many ports are held, and one series per held port.
enum LedgerTableCollector: Collector {
    static func collect(_ state: ExporterState) -> [MetricFamily] {
        let rows = state.rows ?? []
        var held: [TransportProtocol: [AddressFamily: Int]] = [:]
        for row in rows + state.ignored { held[row.key.transport, default: [:]][row.key.family, default: 0] += 1 }
        let heldSamples = TransportProtocol.allCases.flatMap { transport in
            AddressFamily.allCases.map { family in
                MetricFamily.Sample([("protocol", "\(transport)"), ("family", "\(family)")], Double(held[transport]?[family] ?? 0))
            }
        }
        let limit = state.maxPortSeries ?? Int.max
        return [
            MetricFamily("portwatch_ports_held", .gauge,
                         help: "Ports held now (one per network namespace, protocol, family, address and port).",
                         samples: heldSamples),
            MetricFamily("portwatch_port_info", .gauge,
                         help: "A port held now, with the process, service, container and pod that hold it, and its exposure. Always 1.",
                         samples: portInfoSamples(state, limit: limit)),
            MetricFamily("portwatch_ignored_ports", .gauge,
                         help: "Held ports the policy's ignore: rules leave out of the per-port series (still in the ledger and `portwatch ls --all`).",
                         samples: [.init([], Double(state.ignored.count))]),
            MetricFamily("portwatch_port_info_series_dropped", .gauge,
                         help: "portwatch_port_info series left out by --metrics.max-port-series.",
                         samples: [.init([], Double(max(0, rows.count - limit)))]),
            MetricFamily("portwatch_deleted_executable_port_info", .gauge,
                         help: "A port held now by a process whose executable was deleted or replaced since it started (exe ends in \" (deleted)\": an upgrade not yet restarted, or a binary run from memory). Always 1.",
                         samples: rows.filter(\.owner.exeDeleted).prefix(limit).map { portInfo($0, exe: true) }),
        ]
    }

    /// `portwatch_port_info`'s series: the held ports in scope, without the dropped labels, and
    /// one series (value 1) for ports that are then alike.
    static func portInfoSamples(_ state: ExporterState, limit: Int) -> [MetricFamily.Sample] {
        let rows: [Binding] = switch state.portInfoOnly {
        case .all: state.rows ?? []
        case .unexpected: state.unexpected ?? []
        case .none: []
        }
        let samples = rows.prefix(limit).map { portInfo($0, exe: state.portInfoExe) }
        guard !state.portInfoDropLabels.isEmpty else { return samples }
        var seen = Set<[String]>()
        var out: [MetricFamily.Sample] = []
        for sample in samples {
            let labels = sample.labels.filter { !state.portInfoDropLabels.contains($0.0) }
            if seen.insert(labels.flatMap { [$0.0, $0.1] }).inserted { out.append(.init(labels, 1)) }
        }
        return out
    }

    /// The labels of one held port (shared with the policy's unexpected ports), with the
    /// holder's executable when `exe`.
    static func portInfo(_ row: Binding, exe: Bool = false) -> MetricFamily.Sample {
        let k = row.key, a = row.owner.attribution
        var labels = [("netns", String(k.netns)), ("protocol", "\(k.transport)"), ("family", "\(k.family)"),
                      ("address", k.address), ("port", String(k.port)), ("state", "\(row.state)"),
                      ("pid", String(row.owner.pid)), ("comm", row.owner.comm),
                      ("unit", a.unit), ("container_id", a.containerID), ("pod", a.pod), ("namespace", a.namespace),
                      ("container", a.container), ("exposure", "\(k.exposure)")]
        if exe { labels.append(("exe", row.owner.exe)) }
        return .init(labels, 1)
    }
}
