import Foundation
import Testing
import PortwatchCore
@testable import PortwatchExporter

@Suite struct BasicAuthTests {
    // bcrypt (cost 10) of "secret".
    static let hash = "$2b$10$ct/91SD9t/SnQxMvayJxi.rjGDpmso.5H873x7E68m/VXiaesH27C"
    let auth = BasicAuth(users: ["prometheus": hash])

    func header(_ user: String, _ password: String) -> String {
        "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
    }

    @Test func rightPasswordIsAllowedAndCached() {
        #expect(auth.allows(authorization: header("prometheus", "secret")))
        #expect(auth.allows(authorization: header("prometheus", "secret")), "second time from the cache")
    }

    @Test(arguments: [("prometheus", "wrong"), ("nobody", "secret"), ("prometheus", ""), ("", "")])
    func othersAreRefused(user: String, password: String) {
        #expect(!auth.allows(authorization: header(user, password)))
    }

    @Test func malformedHeadersAreRefused() {
        #expect(!auth.allows(authorization: nil))
        #expect(!auth.allows(authorization: "Bearer abc"))
        #expect(!auth.allows(authorization: "Basic !!!notbase64"))
        #expect(!auth.allows(authorization: "Basic " + Data("nocolon".utf8).base64EncodedString()))
    }

    @Test func cachedSuccessDoesNotLetAnotherPasswordIn() {
        #expect(auth.allows(authorization: header("prometheus", "secret")))
        #expect(!auth.allows(authorization: header("prometheus", "secret2")))
    }

    @Test func exporterAsksForCredentialsAndAddsHeaders() {
        let exporter = Exporter(telemetryPath: "/metrics", state: {
            ExporterState(rows: [], counters: [], programs: [:], version: "v", revision: "r")
        }, ready: { true }, auth: auth, headers: [("X-Frame-Options", "deny")])
        func request(_ authorization: String?) -> HTTPResponse {
            exporter.handle(HTTPRequest(method: "GET", path: "/metrics", query: "", version: "HTTP/1.1",
                                        headers: authorization.map { [("authorization", $0)] } ?? []))
        }
        let denied = request(nil)
        #expect(denied.status == 401)
        #expect(denied.headers.contains { $0.0 == "WWW-Authenticate" && $0.1.hasPrefix("Basic realm=") })
        #expect(denied.headers.contains { $0 == ("X-Frame-Options", "deny") })
        #expect(request(header("prometheus", "wrong")).status == 401)
        let allowed = request(header("prometheus", "secret"))
        #expect(allowed.status == 200)
        #expect(allowed.headers.contains { $0 == ("X-Frame-Options", "deny") })
    }
}
