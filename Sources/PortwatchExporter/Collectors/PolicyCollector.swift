import PortwatchCore

/// The expected-listener policy's verdict (only with --policy.file).
enum PolicyCollector: Collector {
    static func collect(_ state: ExporterState) -> [MetricFamily] {
        var out: [MetricFamily] = []
        if state.policyApplied {
            let unexpected = (state.entries ?? []).reduce(0) { $0 + ($1.unexpected && !$1.ignored ? 1 : 0) }
            out.append(MetricFamily("portwatch_unexpected_port_info", .gauge,
                                    help: "A port held now that the expected-listener policy does not allow. Always 1.",
                                    rows: .unexpected))
            out.append(MetricFamily("portwatch_unexpected_ports", .gauge,
                                    help: "Ports held now that the expected-listener policy does not allow.",
                                    samples: [.init([], Double(unexpected))]))
            let samples = TransportProtocol.allCases.flatMap { transport in
                Exposure.allCases.map { exposure in
                    MetricFamily.Sample([("exposure", exposure.rawValue), ("protocol", transport.description)],
                                        Double(state.counter(CounterEntry.unexpectedTransientBindings, "\(transport)/\(exposure.rawValue)")))
                }
            }
            out.append(MetricFamily("portwatch_unexpected_transient_bindings", .counter,
                                    help: "Transient listeners (shorter than --reconcile.window) the expected-listener policy does not allow.",
                                    samples: samples))
        }
        if let reload = state.policyReload {
            out.append(MetricFamily("portwatch_policy_last_reload_success", .gauge,
                                    help: "1 if the last load of the policy file worked, else 0 (the previous policy stays in force).",
                                    samples: [.init([], reload.success ? 1 : 0)]))
            out.append(MetricFamily("portwatch_policy_last_reload_success_timestamp_seconds", .gauge,
                                    help: "When the policy file was last loaded successfully, in Unix seconds.", unit: "seconds",
                                    samples: [.init([], reload.time)]))
        }
        return out
    }
}
