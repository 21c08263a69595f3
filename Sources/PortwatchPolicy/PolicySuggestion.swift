import PortwatchCore

/// Learns a policy from what the ledger saw: every listener held in one stretch for at least
/// `minLifetime` during the period is allowed, one rule per owner (comm, unit, container, pod)
/// and port or run of adjacent ports, with the exposures it was held on. Pids, uids, addresses
/// and namespace inodes are left out: they change on every restart while the listener stays
/// the same. Transients are never steady and are not given here.
public enum PolicySuggestion {
    /// One stretch of a binding being held: `until` is nil while it is held now.
    public struct Hold: Sendable {
        public var binding: Binding
        public var from: UInt64
        public var until: UInt64?

        public init(binding: Binding, from: UInt64, until: UInt64?) {
            self.binding = binding
            self.from = from
            self.until = until
        }
    }

    /// A suggested rule and what it covers, for the comment above it.
    public struct Suggestion: Sendable, Equatable {
        public var rule: Policy.Rule
        public var owner: String
        /// Stretches held (of every length) on the rule's ports during the period.
        public var seen: Int
        /// The longest single stretch on the rule's ports, clipped to the period.
        public var longest: UInt64
        public var pids: [Int32]
        public var heldNow: Bool
    }

    /// What one owner did on one port during the period.
    struct PortRecord {
        var exposures: Set<Exposure> = []
        var seen = 0
        var longest: UInt64 = 0
        var pids: Set<Int32> = []
        var heldNow = false
        var steady: Bool { !exposures.isEmpty }
    }

    /// The parts of a rule that name the owner.
    struct RuleOwner: Hashable, Comparable {
        var transport: TransportProtocol
        /// No process holds it: the rule says `holder: kernel` instead of a comm.
        var kernel = false
        var comm: String
        var unit: String
        var container: String
        var namespace: String
        var pod: String
        /// The executable, when known and not deleted ("" otherwise).
        var exe = ""

        static func < (a: Self, b: Self) -> Bool {
            if a.kernel != b.kernel { return !a.kernel }
            if (a.comm, a.unit, a.namespace, a.pod, a.container, a.transport) != (b.comm, b.unit, b.namespace, b.pod, b.container, b.transport) {
                return (a.comm, a.unit, a.namespace, a.pod, a.container, a.transport) < (b.comm, b.unit, b.namespace, b.pod, b.container, b.transport)
            }
            return a.exe < b.exe
        }
    }

    /// Rules for the holds of a period [start, now], ordered by owner then port.
    public static func suggest(_ holds: [Hold], start: UInt64, now: UInt64, minLifetime: UInt64) -> [Suggestion] {
        var owners: [RuleOwner: [UInt16: PortRecord]] = [:]
        for hold in holds {
            let end = hold.until ?? now
            guard end >= start else { continue }
            let held = end &- max(hold.from, start)
            let b = hold.binding, a = b.owner.attribution
            let owner = RuleOwner(transport: b.key.transport, kernel: b.owner.isKernel, comm: b.owner.isKernel ? "" : b.owner.comm,
                                 unit: unitPattern(a.unit), container: a.container, namespace: a.namespace, pod: podPattern(a.pod),
                                 exe: b.owner.exeDeleted ? "" : b.owner.exe)
            var record = owners[owner, default: [:]][b.key.port, default: PortRecord()]
            record.seen += 1
            if held >= minLifetime && held > 0 {
                record.exposures.insert(b.key.exposure)
                record.longest = max(record.longest, held)
                record.pids.insert(b.owner.pid)
                record.heldNow = record.heldNow || hold.until == nil
            }
            owners[owner, default: [:]][b.key.port] = record
        }
        var out: [Suggestion] = []
        for owner in owners.keys.sorted() {
            let ports = owners[owner]!.filter(\.value.steady).sorted { $0.key < $1.key }
            var i = 0
            while i < ports.count {
                // A run of adjacent ports held with the same exposures becomes one range.
                var j = i
                while j + 1 < ports.count, ports[j + 1].key == ports[j].key + 1, ports[j + 1].value.exposures == ports[i].value.exposures { j += 1 }
                let run = ports[i...j].map(\.value)
                var rule = Policy.Rule(ports: ports[i].key...ports[j].key, transport: owner.transport,
                                       comm: owner.comm.isEmpty ? nil : owner.comm)
                rule.unit = owner.unit.isEmpty ? nil : owner.unit
                rule.container = owner.container.isEmpty ? nil : globEscape(owner.container)
                rule.namespace = owner.namespace.isEmpty ? nil : globEscape(owner.namespace)
                rule.pod = owner.pod.isEmpty ? nil : owner.pod
                rule.exe = owner.exe.isEmpty ? nil : globEscape(owner.exe)
                rule.holder = owner.kernel ? .kernel : nil
                rule.exposure = ports[i].value.exposures
                out.append(Suggestion(rule: rule, owner: describe(owner), seen: run.reduce(0) { $0 + $1.seen },
                                      longest: run.map(\.longest).max() ?? 0,
                                      pids: Array(run.reduce(into: Set<Int32>()) { $0.formUnion($1.pids) }).sorted(),
                                      heldNow: run.contains { $0.heldNow }))
                i = j + 1
            }
        }
        return out
    }

    /// The policy file, with `header` lines as comments at the top.
    public static func yaml(_ suggestions: [Suggestion], header: [String]) -> String {
        var out = header.map { "# \($0)\n" }.joined()
        guard !suggestions.isEmpty else { return out + "expected: []\n" }
        out += "expected:\n"
        for s in suggestions {
            out += "  # \(comment(s))\n  - \(flow(s.rule))\n"
        }
        return out
    }

    static func comment(_ s: Suggestion) -> String {
        let pids = s.pids.count > 5 ? s.pids.prefix(5).map(String.init).joined(separator: " ") + " and \(s.pids.count - 5) more"
            : s.pids.map(String.init).joined(separator: " ")
        return "\(s.owner): held \(DurationText.format(s.longest, largestUnits: 2)) in one stretch at most, seen \(s.seen) time\(s.seen == 1 ? "" : "s"), "
            + "pid\(s.pids.count == 1 ? "" : "s") \(pids)\(s.heldNow ? ", held now" : "")"
    }

    static func describe(_ o: RuleOwner) -> String {
        var parts = [o.kernel ? "the kernel (no process)" : o.comm.isEmpty ? "(unknown process)" : oneLine(o.comm)]
        if !o.unit.isEmpty { parts.append("unit \(oneLine(o.unit))") }
        if !o.pod.isEmpty { parts.append("pod \(oneLine(o.namespace.isEmpty ? o.pod : "\(o.namespace)/\(o.pod)"))") }
        if !o.container.isEmpty { parts.append("container \(oneLine(o.container))") }
        return parts.joined(separator: ", ")
    }

    /// A comment stays on its line whatever a process named itself.
    static func oneLine(_ text: String) -> String {
        String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : Character($0) })
    }

    /// `{ port: 22, protocol: tcp, comm: sshd, exposure: [wildcard] }`, the field names PolicyFile reads.
    static func flow(_ r: Policy.Rule) -> String {
        var fields: [String] = []
        if let ports = r.ports {
            fields.append(ports.count == 1 ? "port: \(ports.lowerBound)" : "ports: \(ports.lowerBound)-\(ports.upperBound)")
        }
        if let t = r.transport { fields.append("protocol: \(t)") }
        for (name, value) in [("comm", r.comm), ("exe", r.exe), ("unit", r.unit), ("namespace", r.namespace), ("pod", r.pod), ("container", r.container)] {
            if let value { fields.append("\(name): \(scalar(value))") }
        }
        if let holder = r.holder { fields.append("holder: \(holder.rawValue)") }
        if let exposure = r.exposure {
            fields.append("exposure: [\(exposure.map(\.rawValue).sorted().joined(separator: ", "))]")
        }
        return "{ " + fields.joined(separator: ", ") + " }"
    }

    /// A YAML scalar: plain when it cannot be read as anything else, double-quoted otherwise.
    static func scalar(_ text: String) -> String {
        let plain = text.unicodeScalars.allSatisfy { ($0.properties.isAlphabetic && $0.isASCII) || "0123456789._@/+-".unicodeScalars.contains($0) }
        let special: Set<String> = ["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"]
        if plain, let first = text.unicodeScalars.first, first.properties.isAlphabetic, !special.contains(text.lowercased()) { return text }
        var out = "\""
        for u in text.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20 || u.value == 0x7f:
                out += "\\x" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// A literal for a shell-glob field: `*`, `?`, `[` and `\` match only themselves.
    static func globEscape(_ text: String) -> String {
        var out = ""
        for c in text {
            if "*?[\\".contains(c) { out.append("\\") }
            out.append(c)
        }
        return out
    }

    /// The unit as a glob; a login session's scope number changes with every login.
    static func unitPattern(_ unit: String) -> String {
        if unit.hasPrefix("session-"), unit.hasSuffix(".scope"),
           unit.dropFirst(8).dropLast(6).allSatisfy(\.isNumber), unit.count > 14 {
            return "session-*.scope"
        }
        return globEscape(unit)
    }

    /// The pod as a glob: the random suffixes a Deployment or DaemonSet gives its pods
    /// ("web-7d9f8c6b5-x2kq1", "agent-x2kq1") become `*`, so the rule outlives the pod.
    static func podPattern(_ pod: String) -> String {
        guard !pod.isEmpty else { return "" }
        var parts = pod.split(separator: "-", omittingEmptySubsequences: false)
        func generated(_ part: Substring, _ lengths: ClosedRange<Int>) -> Bool {
            lengths.contains(part.count) && part.allSatisfy { "bcdfghjklmnpqrstvwxz2456789".contains($0) }
        }
        guard parts.count >= 2, generated(parts.last!, 5...5) else { return globEscape(pod) }
        parts.removeLast()
        if parts.count >= 2, generated(parts.last!, 6...10) { parts.removeLast() }
        return globEscape(parts.joined(separator: "-")) + "-*"
    }
}
