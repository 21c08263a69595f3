import FoundationEssentials
import Glibc
import Logging
import PortwatchSystem

/// The endpoints portwatch serves: metrics, a landing page, health and readiness.
public struct Exporter: Sendable {
    public var telemetryPath: String
    /// Reads the state for one scrape; called on the HTTP thread.
    public var state: @Sendable () -> ExporterState
    /// True once BPF is attached and the start-up snapshot is applied.
    public var ready: @Sendable () -> Bool

    /// When set, every request needs a known user and password (HTTP basic).
    public var auth: BasicAuth?
    /// Added to every response (e.g. security headers from the web configuration).
    public var headers: [(String, String)] = []
    /// The kernel memory of the BPF maps, by map, read at each scrape (nil: no such series).
    public var mapMemory: (@Sendable () -> [(map: String, bytes: UInt64)])?
    /// The ledger's series as last rendered, per format (shared by copies of this exporter).
    let rendered = RenderCache()
    /// Times each scrape (`portwatch_scrape_duration_seconds`).
    public var clock: TimeSource = SystemClock()

    public init(telemetryPath: String, state: @escaping @Sendable () -> ExporterState, ready: @escaping @Sendable () -> Bool,
                auth: BasicAuth? = nil, headers: [(String, String)] = []) {
        self.telemetryPath = telemetryPath
        self.state = state
        self.ready = ready
        self.auth = auth
        self.headers = headers
    }

    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        var response = route(request)
        response.headers += headers
        return response
    }

    private func route(_ request: HTTPRequest) -> HTTPResponse {
        if let auth, !auth.allows(authorization: request.header("authorization")) {
            return HTTPResponse(status: 401, headers: [("WWW-Authenticate", "Basic realm=\"portwatch\", charset=\"UTF-8\""),
                                                       ("Content-Type", "text/plain; charset=utf-8")],
                                body: Array("authentication required\n".utf8))
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            return HTTPResponse(status: 405, headers: [("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")],
                                body: Array("method not allowed\n".utf8))
        }
        switch request.path {
        case telemetryPath: return metrics(request)
        case "/": return HTTPResponse(status: 200, text: landingPage, contentType: "text/html; charset=utf-8")
        case "/-/healthy": return HTTPResponse(status: 200, text: "portwatch is healthy.\n")
        case "/-/ready":
            return ready() ? HTTPResponse(status: 200, text: "portwatch is ready.\n")
                : HTTPResponse(status: 503, text: "portwatch is not ready: BPF not attached or start-up snapshot not applied yet.\n")
        default: return HTTPResponse(status: 404, text: "not found; metrics are at \(telemetryPath)\n")
        }
    }

    func metrics(_ request: HTTPRequest) -> HTTPResponse {
        let started = clock.monotonic()
        let format = ExpositionFormat.negotiate(accept: request.header("accept"))
        let gzip = Gzip.accepted(request.header("accept-encoding"))
        let state = state()
        let ledger = rendered.part(state, format: format, gzip: gzip)
        var perScrape = ProcessMetrics.families()
        if let mapMemory {
            perScrape.append(MetricFamily("portwatch_bpf_map_memory_bytes", .gauge, help: Self.mapMemoryHelp, unit: "bytes",
                                          samples: mapMemory().map { .init([("map", $0.map)], Double($0.bytes)) }))
        }
        let elapsed = clock.monotonic() - started
        perScrape.append(MetricFamily("portwatch_scrape_duration_seconds", .gauge,
                                      help: "Time portwatch took to gather this scrape's metrics.", unit: "seconds",
                                      samples: [.init([], elapsed)]))
        perScrape.sort { $0.name < $1.name }
        let tail = format.render(perScrape)
        var headers = [("Content-Type", format.contentType), ("Vary", "Accept-Encoding")]
        // A body without the per-port lines (kept compressed only) is never served as it is.
        let whole = { ledger.omitted.isEmpty ? ledger.body : rendered.part(state, format: format, gzip: false).body }
        if gzip, let parts = ledger.gzip?.finish(tail) ?? Gzip.compress(Array((whole() + [tail[...]]).joined())).map({ [$0[...]] }) {
            headers.append(("Content-Encoding", "gzip"))
            return HTTPResponse(status: 200, headers: headers, bodyParts: parts)
        }
        return HTTPResponse(status: 200, headers: headers, bodyParts: whole() + [tail[...]])
    }

    static let mapMemoryHelp = "Kernel memory of each of portwatch's BPF maps, charged to the daemon's memory cgroup (memlock in /proc/self/fdinfo): in use on Linux 6.4 and later, estimated from the map's size before (a ring buffer at least its data size)."

    var landingPage: String {
        """
        <!DOCTYPE html>
        <html><head><title>portwatch</title></head>
        <body><h1>portwatch</h1>
        <p>Which processes hold which network ports, from the kernel.</p>
        <ul><li><a href="\(telemetryPath)">Metrics</a></li>
        <li><a href="/-/healthy">Health</a></li><li><a href="/-/ready">Readiness</a></li></ul>
        </body></html>

        """
    }
}
