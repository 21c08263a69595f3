/// A parsed HTTP/1.x request (the body, if any, is read and discarded).
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    /// The path, without the query string.
    public var path: String
    public var query: String
    public var version: String
    /// Header names lower-cased, in arrival order.
    public var headers: [(String, String)]

    public func header(_ name: String) -> String? {
        headers.first { $0.0 == name }?.1
    }

    /// Whether the client keeps the connection open after this request.
    public var keepAlive: Bool {
        // Most clients (Prometheus among them) send no Connection header.
        guard let connection = header("connection")?.lowercased() else { return version != "HTTP/1.0" }
        if version == "HTTP/1.0" { return connection.contains("keep-alive") }
        return !connection.contains("close")
    }

    public static func == (a: HTTPRequest, b: HTTPRequest) -> Bool {
        a.method == b.method && a.path == b.path && a.query == b.query && a.version == b.version
            && a.headers.elementsEqual(b.headers) { $0 == $1 }
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    /// The body as the pieces it was made of: a cached rendering and a per-scrape tail are
    /// written to the socket from where they lie, never joined into one copy.
    public var bodyParts: [ArraySlice<UInt8>]
    /// Send headers only (HEAD), with the Content-Length of the body.
    public var omitBody = false
    /// Close the connection once this response is written.
    public var close = false

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.init(status: status, headers: headers, bodyParts: [body])
    }

    public init(status: Int, headers: [(String, String)] = [], bodyParts: [ArraySlice<UInt8>]) {
        self.status = status
        self.headers = headers
        self.bodyParts = bodyParts.filter { !$0.isEmpty }
    }

    public init(status: Int, headers: [(String, String)] = [], bodyParts: [[UInt8]]) {
        self.init(status: status, headers: headers, bodyParts: bodyParts.map { $0[...] })
    }

    /// The whole body in one array (joins the parts; for tests and small bodies).
    public var body: [UInt8] {
        get { Array(bodyParts.joined()) }
        set { bodyParts = newValue.isEmpty ? [] : [newValue[...]] }
    }

    public var contentLength: Int { bodyParts.reduce(0) { $0 + $1.count } }

    public init(status: Int, text: String, contentType: String = "text/plain; charset=utf-8") {
        self.init(status: status, headers: [("Content-Type", contentType)], body: Array(text.utf8))
    }

    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 413: "Content Too Large"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Status \(status)"
        }
    }

    /// Status line and headers, then (unless omitted) the body's parts as they are.
    func serialize(keepAlive: Bool) -> [ArraySlice<UInt8>] {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(contentLength)\r\n"
        head += keepAlive ? "" : "Connection: close\r\n"
        head += "\r\n"
        return [Array(head.utf8)[...]] + (omitBody ? [] : bodyParts)
    }
}
