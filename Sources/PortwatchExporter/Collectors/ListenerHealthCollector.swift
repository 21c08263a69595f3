import PortwatchCore

/// Which listener is refusing connections: per held port, its accept queue, the queue's
/// limit and the packets it dropped, labelled with the port's identity and its holder's
/// service, container and pod (not pid: a restart of the holder keeps the series).
enum ListenerHealthCollector: Collector {
    static func collect(_ state: ExporterState) -> [MetricFamily] {
        guard state.listenerHealthRead else { return [] }
        return [
            MetricFamily("portwatch_listen_queue_length", .gauge,
                         help: "Connections waiting in a TCP listener's accept queue (the kernel's idiag_rqueue).", rows: .queueLength),
            MetricFamily("portwatch_listen_queue_limit", .gauge,
                         help: "The accept queue's limit: listen()'s backlog, capped by net.core.somaxconn.", rows: .queueLimit),
            MetricFamily("portwatch_socket_drops", .counter,
                         help: "Packets a held port's socket dropped: SYNs a TCP listener refused (accept queue full), datagrams a UDP socket's full receive buffer refused. Counted by the kernel per socket: a new socket on the port starts again from 0 (a counter reset).",
                         rows: .drops),
        ]
    }
}
