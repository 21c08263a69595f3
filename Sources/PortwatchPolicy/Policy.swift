import PortwatchCore

/// The listeners an operator expects. A held port no rule matches is "unexpected".
public struct Policy: Sendable, Equatable {
    /// One expected listener: every field given must match; absent fields match anything.
    public struct Rule: Sendable, Equatable {
        public var ports: ClosedRange<UInt16>?
        public var transport: TransportProtocol?
        public var family: AddressFamily?
        public var address: String?
        public var comm: String?
        public var uid: UInt32?
        public var netns: UInt32?
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
            return true
        }
    }

    public var rules: [Rule]

    public init(rules: [Rule]) { self.rules = rules }

    public func allows(_ binding: Binding) -> Bool { rules.contains { $0.matches(binding) } }

    /// The rows no rule allows, in the order given.
    public func unexpected(_ rows: [Binding]) -> [Binding] { rows.filter { !allows($0) } }
}
