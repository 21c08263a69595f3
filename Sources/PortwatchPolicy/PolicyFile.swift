import PortwatchCore
import PortwatchSystem
import PortwatchYAML

/// A policy file that cannot be used, with the place and the reason.
public struct PolicyError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Reads the YAML policy file:
///
/// ```yaml
/// expected:
///   - { port: 22, protocol: tcp, comm: sshd }
///   - { ports: 8000-8999 }
///   - { port: 53, protocol: udp, address: 127.0.0.53 }
///   - { comm: chronyd, uid: 0 }
///   - { unit: "nginx*.service", exposure: [wildcard, private] }
///   - { namespace: monitoring, pod: "node-exporter-*" }
///   - { port: 4789, protocol: udp, holder: kernel }
/// ```
/// `unit`, `container`, `pod`, `namespace` and `exe` (the holder's executable) are shell globs; `exposure` is one value or a
/// list of loopback, private, public, wildcard.
public enum PolicyFile {
    static let fields: Set<String> = ["port", "ports", "protocol", "family", "address", "comm", "uid", "netns",
                                      "unit", "container", "pod", "namespace", "exe", "exposure", "holder"]

    public static func load(path: String) throws -> Policy {
        let text: String
        do { text = try FileDescriptor.readText(path: path) } catch let error as SystemError {
            throw PolicyError("\(path): cannot read the policy file: \(SystemError.text(error.errno))")
        }
        return try parse(text, name: path)
    }

    public static func parse(_ text: String, name: String = "policy") throws -> Policy {
        let root: YAMLNode?
        do { root = try YAMLNode.parse(text) } catch {
            throw PolicyError("\(name): not valid YAML: \(error)")
        }
        guard let root else { return Policy(rules: []) }
        guard let mapping = root.mapping else { throw PolicyError("\(name):\(line(root)): the file must be a mapping with an `expected:` list") }
        for (key, _) in mapping where !["expected", "ignore", "metrics"].contains(key.string ?? "") {
            throw PolicyError("\(name):\(line(key)): unknown key `\(key.string ?? "?")`; the file's keys are `expected`, `ignore` and `metrics`")
        }
        var policy = Policy(rules: try rules(mapping["expected"], key: "expected", name: name),
                            ignore: try rules(mapping["ignore"], key: "ignore", name: name))
        if let metrics = mapping["metrics"] { policy.metrics = try self.metrics(metrics, name: name) }
        return policy
    }

    /// `metrics: { port_info: all|unexpected|none, drop_labels: [pid, ...] }`.
    static func metrics(_ node: YAMLNode, name: String) throws -> Policy.Metrics {
        guard let mapping = node.mapping else { throw PolicyError("\(name):\(line(node)): `metrics` is a mapping (port_info, drop_labels)") }
        var out = Policy.Metrics()
        for (key, value) in mapping {
            switch key.string {
            case "port_info":
                guard let mode = Policy.Metrics.PortInfo(rawValue: value.string ?? "") else {
                    throw PolicyError("\(name):\(line(value)): port_info must be all, unexpected or none, not `\(value.string ?? "?")`")
                }
                out.portInfo = mode
            case "drop_labels":
                let labels = value.sequence.map { $0.compactMap(\.string) } ?? (value.string.map { [$0] } ?? [])
                for label in labels where !Policy.Metrics.droppable.contains(label) {
                    throw PolicyError("\(name):\(line(value)): drop_labels cannot drop `\(label)`; it can drop \(Policy.Metrics.droppable.sorted().joined(separator: ", "))")
                }
                out.dropLabels = Set(labels)
            default:
                throw PolicyError("\(name):\(line(key)): unknown key `\(key.string ?? "?")` in metrics; it has port_info and drop_labels")
            }
        }
        return out
    }

    /// The rules of one list (`expected` or `ignore`); an absent or empty list has none.
    static func rules(_ list: YAMLNode?, key: String, name: String) throws -> [Policy.Rule] {
        guard let list else { return [] }
        if let s = list.string, s.isEmpty || s == "null" || s == "~" { return [] }
        guard let sequence = list.sequence else { throw PolicyError("\(name):\(line(list)): `\(key)` must be a list of rules") }
        return try sequence.map { try rule($0, name: name) }
    }

    static func line(_ node: YAMLNode) -> Int { node.line }

    static func rule(_ node: YAMLNode, name: String) throws -> Policy.Rule {
        guard let mapping = node.mapping else {
            throw PolicyError("\(name):\(line(node)): a rule is a mapping of fields (\(fields.sorted().joined(separator: ", ")))")
        }
        var rule = Policy.Rule(line: line(node))
        guard mapping.count > 0 else { throw PolicyError("\(name):\(line(node)): an empty rule would allow every listener; name at least one field") }
        for (keyNode, valueNode) in mapping {
            let key = keyNode.string ?? ""
            let at = "\(name):\(line(keyNode))"
            guard fields.contains(key) else {
                throw PolicyError("\(at): unknown field `\(key)`; known: \(fields.sorted().joined(separator: ", "))")
            }
            if key == "exposure" {
                let values = valueNode.sequence.map { $0.compactMap(\.string) } ?? valueNode.string.map { [$0] } ?? []
                rule.exposure = Set(try values.map { value in
                    guard let e = Exposure(rawValue: value.lowercased()) else {
                        throw PolicyError("\(at): exposure must be \(Exposure.allCases.map(\.rawValue).joined(separator: ", ")), not `\(value)`")
                    }
                    return e
                })
                guard !values.isEmpty else { throw PolicyError("\(at): `exposure` needs at least one value") }
                continue
            }
            guard let value = valueNode.string else { throw PolicyError("\(at): `\(key)` must be a single value") }
            switch key {
            case "port", "ports":
                rule.ports = try portRange(value, at: at)
            case "protocol":
                guard let t = TransportProtocol(name: value.lowercased()) else { throw PolicyError("\(at): protocol must be tcp or udp, not `\(value)`") }
                rule.transport = t
            case "family":
                guard let f = AddressFamily(name: value.lowercased()) else { throw PolicyError("\(at): family must be ipv4 or ipv6, not `\(value)`") }
                rule.family = f
            case "address":
                rule.address = value
            case "comm":
                rule.comm = value
            case "holder":
                guard let holder = Policy.Holder(rawValue: value.lowercased()) else {
                    throw PolicyError("\(at): holder must be kernel or process, not `\(value)`")
                }
                rule.holder = holder
            case "unit": rule.unit = value
            case "container": rule.container = value
            case "pod": rule.pod = value
            case "namespace": rule.namespace = value
            case "exe": rule.exe = value
            case "uid":
                guard let uid = UInt32(value) else { throw PolicyError("\(at): uid must be a number, not `\(value)`") }
                rule.uid = uid
            default: // netns
                guard let ns = UInt32(value) else { throw PolicyError("\(at): netns must be the namespace inode (a number), not `\(value)`") }
                rule.netns = ns
            }
        }
        return rule
    }

    static func portRange(_ value: String, at: String) throws -> ClosedRange<UInt16> {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false).map(\.trimmingBlanks)
        guard (1...2).contains(parts.count), let low = UInt16(parts[0]), let high = UInt16(parts.last!), low <= high else {
            throw PolicyError("\(at): a port is a number or a range like 8000-8999, not `\(value)`")
        }
        return low...high
    }
}
