import FoundationEssentials
import Glibc
import PortwatchSystem
import PortwatchYAML

/// `--web.config.file`, in the format of Prometheus's exporter-toolkit:
///
/// ```yaml
/// basic_auth_users:
///   prometheus: $2b$10$...        # bcrypt, e.g. `htpasswd -nBC 10 prometheus`
/// http_server_config:
///   headers:
///     X-Content-Type-Options: nosniff
/// ```
public struct WebConfigFile: Sendable {
    public var users: [String: String] = [:]
    public var headers: [(String, String)] = []
    public var tls: TLSSettings?

    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    static let allowedHeaders: Set<String> = ["Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options",
                                              "X-XSS-Protection", "Content-Security-Policy"]

    /// Paths are relative to the web configuration file, as in exporter-toolkit.
    static func tlsSettings(_ node: YAMLNode, path: String, line: Int) throws -> TLSSettings {
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        func resolve(_ file: String) -> String { file.hasPrefix("/") ? file : base.appendingPathComponent(file).path }
        var values: [String: String] = [:]
        for (k, v) in node.mapping ?? YAMLMapping() {
            guard let key = k.string, let value = v.string else { continue }
            guard ["cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version"].contains(key) else {
                throw Invalid(description: "\(path):\(k.line): unknown tls_server_config key \(key); known: cert_file, key_file, client_auth_type, client_ca_file, min_version")
            }
            values[key] = value
        }
        guard let cert = values["cert_file"], let key = values["key_file"] else {
            throw Invalid(description: "\(path):\(line): tls_server_config needs cert_file and key_file")
        }
        if let min = values["min_version"], min != "TLS12", min != "TLS13" {
            throw Invalid(description: "\(path):\(line): min_version \(min) is below what portwatch allows; use TLS12 or TLS13")
        }
        let authText = values["client_auth_type"] ?? "NoClientCert"
        guard let auth = TLSSettings.ClientAuth(rawValue: authText) else {
            throw Invalid(description: "\(path):\(line): client_auth_type \(authText) is not NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert")
        }
        return TLSSettings(certFile: resolve(cert), keyFile: resolve(key), clientCAFile: values["client_ca_file"].map(resolve),
                           clientAuth: auth, minimumTLS13: values["min_version"] == "TLS13")
    }

    public static func load(path: String) throws -> WebConfigFile {
        func fail(_ what: String) -> Invalid { Invalid(description: "\(path): \(what)") }
        let text: String
        do { text = try FileDescriptor.readText(path: path) } catch let error as SystemError {
            throw fail("cannot read the web configuration: \(SystemError.text(error.errno))")
        }
        let root: YAMLNode?
        do { root = try YAMLNode.parse(text) } catch { throw fail("not valid YAML: \(error)") }
        var config = WebConfigFile()
        guard let mapping = root?.mapping else { return config }
        for (keyNode, value) in mapping {
            let line = keyNode.line
            switch keyNode.string ?? "" {
            case "basic_auth_users":
                for (user, hash) in value.mapping ?? YAMLMapping() {
                    guard let name = user.string, let h = hash.string, h.hasPrefix("$2") else {
                        throw fail("\(user.line): basic_auth_users needs a bcrypt hash ($2y$...) for \(user.string ?? "?")")
                    }
                    config.users[name] = h
                }
            case "http_server_config":
                for (k, v) in value.mapping ?? YAMLMapping() where k.string == "headers" {
                    for (name, headerValue) in v.mapping ?? YAMLMapping() {
                        guard let n = name.string, allowedHeaders.contains(n), let hv = headerValue.string else {
                            throw fail("\(name.line): header \(name.string ?? "?") is not one of \(allowedHeaders.sorted().joined(separator: ", "))")
                        }
                        config.headers.append((n, hv))
                    }
                }
            case "tls_server_config":
                config.tls = try tlsSettings(value, path: path, line: line)
            default:
                throw fail("\(line): unknown key \(keyNode.string ?? "?"); known: basic_auth_users, http_server_config")
            }
        }
        config.headers.sort { $0.0 < $1.0 }
        return config
    }
}
