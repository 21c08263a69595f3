import PortwatchCore

/// The short-lived listeners of the last hour, per owner: the dashboard's table. Bounded to
/// --metrics.max-transient-series owners (those with the most transients), so a host that
/// opens thousands of random ports adds a few series, not thousands.
enum RecentTransientsCollector: Collector {
    static func collect(_ state: ExporterState) -> [MetricFamily] {
        guard let recent = state.recentTransients else { return [] }
        func labels(_ s: TransientSummary) -> [(String, String)] {
            [("protocol", "\(s.transport)"), ("port", s.ports), ("comm", s.comm), ("unit", s.unit), ("namespace", s.namespace),
             ("pod", s.pod), ("exposure", "\(s.exposure)")]
        }
        return [
            MetricFamily("portwatch_recent_transient_listeners", .gauge,
                         help: "Transient listeners of the last hour by owner (port is a range when they used several); the owners with the most.",
                         samples: recent.top.map { .init(labels($0), Double($0.count)) }),
            MetricFamily("portwatch_recent_transient_listener_lifetime_max_seconds", .gauge,
                         help: "How long the longest-lived of an owner's transient listeners of the last hour was held.", unit: "seconds",
                         samples: recent.top.map { .init(labels($0), Double($0.longestLifetime) / 1e9) }),
            MetricFamily("portwatch_recent_transient_listener_owners_dropped", .gauge,
                         help: "Owners of transient listeners of the last hour left out by --metrics.max-transient-series.",
                         samples: [.init([], Double(recent.dropped))]),
        ]
    }
}
