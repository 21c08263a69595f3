import Foundation
import PortwatchExporter
import Yams

/// `--web.config.file`, in the format of Prometheus's exporter-toolkit:
///
/// ```yaml
/// basic_auth_users:
///   prometheus: $2b$10$...        # bcrypt, e.g. `htpasswd -nBC 10 prometheus`
/// http_server_config:
///   headers:
///     X-Content-Type-Options: nosniff
/// ```
struct WebConfigFile {
    var users: [String: String] = [:]
    var headers: [(String, String)] = []

    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    static let allowedHeaders: Set<String> = ["Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options",
                                              "X-XSS-Protection", "Content-Security-Policy"]

    static func load(path: String) throws -> WebConfigFile {
        func fail(_ what: String) -> Invalid { Invalid(description: "\(path): \(what)") }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw fail("cannot read the web configuration: \((error as NSError).localizedDescription)")
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch { throw fail("not valid YAML: \(error)") }
        var config = WebConfigFile()
        guard let mapping = root?.mapping else { return config }
        for (keyNode, value) in mapping {
            let line = keyNode.mark?.line ?? 0
            switch keyNode.string ?? "" {
            case "basic_auth_users":
                for (user, hash) in value.mapping ?? [:] {
                    guard let name = user.string, let h = hash.string, h.hasPrefix("$2") else {
                        throw fail("\(user.mark?.line ?? line): basic_auth_users needs a bcrypt hash ($2y$...) for \(user.string ?? "?")")
                    }
                    config.users[name] = h
                }
            case "http_server_config":
                for (k, v) in value.mapping ?? [:] where k.string == "headers" {
                    for (name, headerValue) in v.mapping ?? [:] {
                        guard let n = name.string, allowedHeaders.contains(n), let hv = headerValue.string else {
                            throw fail("\(name.mark?.line ?? line): header \(name.string ?? "?") is not one of \(allowedHeaders.sorted().joined(separator: ", "))")
                        }
                        config.headers.append((n, hv))
                    }
                }
            case "tls_server_config":
                throw fail("\(line): tls_server_config is not supported by this portwatch build; terminate TLS in front of it (a sidecar or reverse proxy) and keep basic_auth_users here")
            default:
                throw fail("\(line): unknown key \(keyNode.string ?? "?"); known: basic_auth_users, http_server_config")
            }
        }
        config.headers.sort { $0.0 < $1.0 }
        return config
    }
}
