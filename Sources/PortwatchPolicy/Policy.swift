import Glibc
import PortwatchCore

/// The listeners an operator expects. A held port no rule matches is "unexpected".
public struct Policy: Sendable, Equatable {
    /// Who holds a port: a process, or the kernel (its own sockets: VXLAN, Geneve, WireGuard,
    /// nfsd), which no process holds.
    public enum Holder: String, Sendable, Equatable, CaseIterable {
        case kernel, process
    }

    /// One expected listener: every field given must match; absent fields match anything.
    public struct Rule: Sendable, Equatable {
        public var ports: ClosedRange<UInt16>?
        public var transport: TransportProtocol?
        public var family: AddressFamily?
        public var address: String?
        public var comm: String?
        public var uid: UInt32?
        public var netns: UInt32?
        /// Shell globs on the owner's systemd unit, container name, pod and Kubernetes namespace.
        public var unit: String?
        public var container: String?
        public var pod: String?
        public var namespace: String?
        /// A shell glob on the holder's executable (/proc/PID/exe): harder to fake than a
        /// name a process gives itself. A deleted or replaced executable (its path ends in
        /// " (deleted)") matches only a pattern that ends so too.
        public var exe: String?
        /// The exposures allowed (any when nil).
        public var exposure: Set<Exposure>?
        /// `holder: kernel` allows a port only when no process holds it.
        public var holder: Holder?
        /// Line of the rule in its file, for messages.
        public var line: Int

        public init(ports: ClosedRange<UInt16>? = nil, transport: TransportProtocol? = nil, family: AddressFamily? = nil,
                    address: String? = nil, comm: String? = nil, uid: UInt32? = nil, netns: UInt32? = nil, line: Int = 0) {
            self.ports = ports
            self.transport = transport
            self.family = family
            self.address = address
            self.comm = comm
            self.uid = uid
            self.netns = netns
            self.line = line
        }

        public func matches(_ b: Binding) -> Bool {
            if let ports, !ports.contains(b.key.port) { return false }
            if let transport, transport != b.key.transport { return false }
            if let family, family != b.key.family { return false }
            if let address, address != b.key.address { return false }
            if let comm, comm != b.owner.comm { return false }
            if let uid, uid != b.owner.uid { return false }
            if let netns, netns != b.key.netns { return false }
            let a = b.owner.attribution
            if let unit, !Self.glob(unit, a.unit) { return false }
            if let container, !Self.glob(container, a.container) { return false }
            if let pod, !Self.glob(pod, a.pod) { return false }
            if let namespace, !Self.glob(namespace, a.namespace) { return false }
            if let exe {
                // A deleted or replaced executable matches only a pattern that says so.
                if b.owner.exeDeleted && !exe.hasSuffix(Owner.deletedSuffix) { return false }
                if !Self.glob(exe, b.owner.exe) { return false }
            }
            if let exposure, !exposure.contains(b.key.exposure) { return false }
            if let holder, (holder == .kernel) != b.owner.isKernel { return false }
            return true
        }

        static func glob(_ pattern: String, _ text: String) -> Bool { fnmatch(pattern, text, 0) == 0 }
    }

    /// How much of the inventory `portwatch_port_info` carries, for fleets where its series
    /// multiply by thousands of nodes (the `metrics:` section; reloaded with the file).
    public struct Metrics: Sendable, Equatable {
        public enum PortInfo: String, Sendable, Equatable, CaseIterable {
            /// Every held port (the default).
            case all
            /// Only the ports the policy does not expect: the aggregates stay, the full
            /// inventory is answered per node by the ledger (`portwatch ls`).
            case unexpected
            /// None.
            case none
        }

        public var portInfo: PortInfo = .all
        /// Labels left out of `portwatch_port_info` (e.g. `pid`, which changes with every
        /// restart of a service); series that then differ in nothing else become one.
        public var dropLabels: Set<String> = []

        public init(portInfo: PortInfo = .all, dropLabels: Set<String> = []) {
            self.portInfo = portInfo
            self.dropLabels = dropLabels
        }

        /// The labels that can be dropped (a port's protocol and number stay).
        public static let droppable: Set<String> = ["netns", "family", "address", "state", "pid", "comm", "unit", "container_id",
                                                    "pod", "namespace", "container", "exposure", "exe"]
    }

    public var metrics = Metrics()

    public var rules: [Rule] {
        didSet { ruleIndex = RuleIndex(rules) }
    }

    /// Ports to leave out of the metrics (`ignore:`, the same fields as `expected:`): kube-proxy's
    /// NodePort sockets, the ephemeral range. They stay in the ledger, `ls --all` and `history`.
    public var ignore: [Rule] {
        didSet { ignoreIndex = RuleIndex(ignore) }
    }

    private var ruleIndex: RuleIndex
    private var ignoreIndex: RuleIndex

    public init(rules: [Rule], ignore: [Rule] = []) {
        self.rules = rules
        self.ignore = ignore
        ruleIndex = RuleIndex(rules)
        ignoreIndex = RuleIndex(ignore)
    }

    public static func == (a: Policy, b: Policy) -> Bool {
        a.rules == b.rules && a.ignore == b.ignore && a.metrics == b.metrics
    }

    /// Whether an `expected:` rule matches. Only the rules that can apply to the port are tried.
    public func allows(_ binding: Binding) -> Bool { ruleIndex.anyMatches(binding, in: rules) }

    /// Whether an `ignore:` rule matches: the port is left out of the metrics.
    public func ignores(_ binding: Binding) -> Bool { ignoreIndex.anyMatches(binding, in: ignore) }

    /// The rows not ignored, in the order given.
    public func shown(_ rows: [Binding]) -> [Binding] { ignore.isEmpty ? rows : rows.filter { !ignores($0) } }

    /// The rows no rule allows, in the order given.
    public func unexpected(_ rows: [Binding]) -> [Binding] { rows.filter { !allows($0) } }
}

/// The rules that can match a port: those naming it (ranges of up to `expandLimit` ports are
/// listed under each of their ports), then those whose range is wider or that name no port.
/// A policy of thousands of per-port rules tries one or two of them per port, not all.
struct RuleIndex: Sendable {
    static let expandLimit = 1_024

    /// Port -> the indices of the rules naming it, in file order.
    private var byPort: [UInt16: [Int32]] = [:]
    /// Rules with no port or a range wider than `expandLimit`, in file order.
    private var wide: [Int32] = []

    init(_ rules: [Policy.Rule]) {
        for (i, rule) in rules.enumerated() {
            if let ports = rule.ports, ports.count <= Self.expandLimit {
                for port in ports { byPort[port, default: []].append(Int32(i)) }
            } else {
                wide.append(Int32(i))
            }
        }
    }

    func anyMatches(_ binding: Binding, in rules: [Policy.Rule]) -> Bool {
        rules.withUnsafeBufferPointer { rules in
            if let named = byPort[binding.key.port], named.contains(where: { rules[Int($0)].matches(binding) }) { return true }
            return wide.contains { rules[Int($0)].matches(binding) }
        }
    }
}
