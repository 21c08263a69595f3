import PortwatchCore

/// Which listener is refusing connections: per held port, its accept queue, the queue's
/// limit and the packets it dropped, labelled with the port's identity and its holder's
/// service, container and pod (not pid: a restart of the holder keeps the series).
enum ListenerHealthCollector: Collector {
    static func collect(_ state: ExporterState) -> [MetricFamily] {
        guard let health = state.listenerHealth else { return [] }
        var queue: [MetricFamily.Sample] = [], limit: [MetricFamily.Sample] = [], drops: [MetricFamily.Sample] = []
        for row in state.rows ?? [] {
            guard let h = health[row.key] else { continue }
            let labels = Self.labels(row)
            if row.key.transport == .tcp, row.state == .listen, let q = h.queue, let l = h.queueLimit {
                queue.append(.init(labels, Double(q)))
                limit.append(.init(labels, Double(l)))
            }
            if let d = h.drops, row.key.transport == .udp || row.state == .listen { drops.append(.init(labels, Double(d))) }
        }
        return [
            MetricFamily("portwatch_listen_queue_length", .gauge,
                         help: "Connections waiting in a TCP listener's accept queue (the kernel's idiag_rqueue).", samples: queue),
            MetricFamily("portwatch_listen_queue_limit", .gauge,
                         help: "The accept queue's limit: listen()'s backlog, capped by net.core.somaxconn.", samples: limit),
            MetricFamily("portwatch_socket_drops", .counter,
                         help: "Packets a held port's socket dropped: SYNs a TCP listener refused (accept queue full), datagrams a UDP socket's full receive buffer refused. Counted by the kernel per socket: a new socket on the port starts again from 0 (a counter reset).",
                         samples: drops),
        ]
    }

    /// The port's identity and its holder's, without the pid.
    static func labels(_ row: Binding) -> [(String, String)] {
        let k = row.key, a = row.owner.attribution
        return [("netns", String(k.netns)), ("protocol", "\(k.transport)"), ("family", "\(k.family)"), ("address", k.address),
                ("port", String(k.port)), ("comm", row.owner.comm), ("unit", a.unit), ("container", a.container),
                ("pod", a.pod), ("namespace", a.namespace)]
    }
}
