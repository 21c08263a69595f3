import PortwatchCore

/// The reconciler's counters, stored with the table (they survive restarts).
enum LedgerCountersCollector: Collector {
    static func collect(_ state: ExporterState) -> [MetricFamily] {
        let protocols = TransportProtocol.allCases.map(\.description)
        func counter(_ name: String, _ entry: CounterName, label: String, values: [String], help: String) -> MetricFamily {
            MetricFamily(name, .counter, help: help, samples: values.sorted().map { value in
                MetricFamily.Sample([(label, value)], Double(state.counter(entry, value)))
            })
        }
        return [
            counter("portwatch_events", CounterEntry.events, label: "kind", values: PortEvent.Kind.allCases.map(\.rawValue),
                    help: "Kernel events received, by kind."),
            counter("portwatch_transient_bindings", CounterEntry.transientBindings, label: "protocol", values: protocols,
                    help: "Sockets released less than --reconcile.window after they took a port; never written to the table."),
            counter("portwatch_client_bindings", CounterEntry.clientBindings, label: "protocol", values: protocols,
                    help: "Sockets that bound a port and connected within --reconcile.window: clients, never listed as listeners."),
            counter("portwatch_orphan_closes", CounterEntry.orphanCloses, label: "protocol", values: protocols,
                    help: "Releases of ports the table did not hold, ignored."),
            counter("portwatch_reconcile_actions", CounterEntry.actions, label: "action", values: RowChange.Action.allCases.map(\.rawValue),
                    help: "Changes written to the table, by action."),
            counter("portwatch_resync_corrections", CounterEntry.resyncCorrections, label: "action",
                    values: [RowChange.Action.insert, .delete].map(\.rawValue),
                    help: "Rows a resync against the kernel's sockets had to add or remove."),
            MetricFamily("portwatch_transient_records_dropped", .counter,
                         help: "Transient listeners not recorded in history because of --history.transient-records-per-minute or the owner limit.",
                         samples: [.init([], Double(state.counter(CounterEntry.transientRecordsDropped)))]),
            MetricFamily("portwatch_events_lost", .counter, help: "Kernel events dropped because the ring buffer was full.",
                         samples: [.init([], Double(state.counter(CounterEntry.eventsLost)))]),
        ]
    }
}
