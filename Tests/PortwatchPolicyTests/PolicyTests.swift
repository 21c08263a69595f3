import Testing
import PortwatchCore
@testable import PortwatchPolicy

func binding(_ port: UInt16, _ transport: TransportProtocol = .tcp, address: String = "0.0.0.0", comm: String = "sshd",
             uid: UInt32 = 0, netns: UInt32 = 100, family: AddressFamily = .ipv4) -> Binding {
    Binding(key: BindingKey(netns: netns, transport: transport, family: family, address: address, port: port),
            owner: Owner(pid: 1, comm: comm, uid: uid), state: .listen, holders: 1, firstSeen: 0, lastChange: 0)
}

@Suite struct PolicyTests {
    let policy = try! PolicyFile.parse("""
    # what this node may listen on
    expected:
      - { port: 22, protocol: tcp, comm: sshd }
      - { ports: 8000-8999 }
      - port: 53
        protocol: udp
        address: 127.0.0.53
      - { comm: chronyd, uid: 0 }
      - { netns: 7, family: ipv6 }
    """)

    @Test(arguments: [
        (binding(22), true),
        (binding(22, comm: "nc"), false),
        (binding(22, .udp), false),
        (binding(8000, comm: "x"), true),
        (binding(8999, .udp, comm: "x"), true),
        (binding(9000, comm: "x"), false),
        (binding(53, .udp, address: "127.0.0.53", comm: "resolved"), true),
        (binding(53, .udp, address: "0.0.0.0", comm: "resolved"), false),
        (binding(323, .udp, comm: "chronyd"), true),
        (binding(323, .udp, comm: "chronyd", uid: 1000), false),
        (binding(1, netns: 7, family: .ipv6), true),
        (binding(1, netns: 7, family: .ipv4), false),
    ])
    func matching(row: Binding, allowed: Bool) {
        #expect(policy.allows(row) == allowed)
    }

    /// The index tries only the rules that can apply to a port: every verdict must be the one
    /// trying every rule in turn gives, for rules naming a port, a narrow range, a wide range
    /// (wider than the index lists port by port) and no port, and for bindings on every port
    /// near those edges.
    @Test func indexedVerdictsAreEveryRulesVerdicts() throws {
        var text = "expected:\n"
        for i in 0..<300 { text += "  - { port: \(1000 + i * 3), comm: c\(i % 7) }\n" }
        text += "  - { ports: 5000-5010, comm: c1 }\n  - { ports: 6000-\(6000 + RuleIndex.expandLimit), comm: c2 }\n"
        text += "  - { ports: 7000-\(7000 + RuleIndex.expandLimit - 1), comm: c3 }\n  - { comm: c4, protocol: udp }\n"
        text += "ignore:\n  - { ports: 1003-1005 }\n  - { comm: c5, protocol: udp }\n"
        let policy = try PolicyFile.parse(text)
        var checked = 0, allowed = 0
        let ports: [UInt16] = Array(990...1910) + Array(4990...5020) + Array(5990...6010) + [7024, 7025, 8023, 8024, 8025] + [9000, 65535, 0]
        for port in ports {
            for comm in (0..<7).map({ "c\($0)" }) {
                for transport in [TransportProtocol.tcp, .udp] {
                    let row = binding(port, transport, comm: comm)
                    let expected = policy.rules.contains { $0.matches(row) }
                    #expect(policy.allows(row) == expected, "port \(port) \(comm) \(transport)")
                    #expect(policy.ignores(row) == policy.ignore.contains { $0.matches(row) }, "port \(port) \(comm) \(transport)")
                    checked += 1
                    if expected { allowed += 1 }
                }
            }
        }
        // Both verdicts occur often: the comparison is not of two constant answers.
        #expect(allowed > 500 && checked - allowed > 500)
    }

    @Test func unexpectedKeepsOrder() {
        let rows = [binding(22), binding(4444, comm: "nc"), binding(31337, comm: "evil")]
        #expect(policy.unexpected(rows).map(\.key.port) == [4444, 31337])
    }

    @Test(arguments: [
        ("expected:\n  - { port: 99999 }\n", "policy:2:", "port"),
        ("expected:\n  - { prot: tcp }\n", "policy:2:", "unknown field `prot`"),
        ("expected:\n  - { protocol: sctp }\n", "policy:2:", "tcp or udp"),
        ("expected:\n  - {}\n", "policy:2:", "empty rule"),
        ("expected:\n  - { ports: 9-1 }\n", "policy:2:", "range"),
        ("expect:\n  - { port: 1 }\n", "policy:1:", "unknown key"),
        ("expected: [\n", "policy", "not valid YAML"),
        ("expected: 5\n", "policy:1:", "list"),
    ])
    func badFilesNameTheLine(text: String, place: String, reason: String) {
        #expect { try PolicyFile.parse(text) } throws: { error in
            "\(error)".contains(place) && "\(error)".contains(reason)
        }
    }

    @Test func emptyFileExpectsNothing() throws {
        #expect(try PolicyFile.parse("").rules.isEmpty)
        #expect(try PolicyFile.parse("expected:\n").rules.isEmpty)
    }
}

/// Rules on who holds a port (unit, container, pod, namespace) and on its exposure.
@Suite struct AttributionPolicyTests {
    func binding(_ address: String = "0.0.0.0", family: AddressFamily = .ipv4, attribution a: Attribution = Attribution()) -> Binding {
        Binding(key: BindingKey(netns: 1, transport: .tcp, family: family, address: address, port: 8080),
                owner: Owner(pid: 1, comm: "app", uid: 0, attribution: a), state: .listen, holders: 1, firstSeen: 0, lastChange: 0)
    }

    @Test func globsOnUnitContainerPodAndNamespace() throws {
        let policy = try PolicyFile.parse("""
            expected:
              - { unit: "nginx*.service" }
              - { namespace: monitoring, pod: "node-exporter-*", container: exporter }
            """)
        #expect(policy.allows(binding(attribution: Attribution(unit: "nginx-edge.service"))))
        #expect(!policy.allows(binding(attribution: Attribution(unit: "sshd.service"))))
        #expect(policy.allows(binding(attribution: Attribution(pod: "node-exporter-x7k", namespace: "monitoring", container: "exporter"))))
        #expect(!policy.allows(binding(attribution: Attribution(pod: "node-exporter-x7k", namespace: "default", container: "exporter"))))
        #expect(!policy.allows(binding(attribution: Attribution(pod: "node-exporter-x7k", namespace: "monitoring", container: "sidecar"))))
    }

    /// `ignore:` beside `expected:`, with the same fields: what it matches leaves the metrics,
    /// and is never unexpected there (see ScrapeSourceTests); an empty list ignores nothing.
    @Test func ignoreRulesUseTheSameMatcher() throws {
        let policy = try PolicyFile.parse("""
            expected:
              - { port: 22 }
            ignore:
              - { ports: 30000-32767, protocol: tcp, comm: kube-proxy }
              - { ports: 32768-60999 }
            """)
        #expect(policy.rules.count == 1 && policy.ignore.count == 2)
        var nodePort = binding(attribution: Attribution())
        nodePort.key.port = 31080
        nodePort.owner.comm = "kube-proxy"
        #expect(policy.ignores(nodePort))
        nodePort.owner.comm = "nc"
        #expect(!policy.ignores(nodePort), "every field of the rule must match")
        nodePort.key.port = 45000
        #expect(policy.ignores(nodePort) && policy.shown([nodePort]).isEmpty)
        #expect(try PolicyFile.parse("expected:\n  - { port: 22 }\nignore: []\n").ignore.isEmpty)
        #expect(throws: PolicyError.self) { try PolicyFile.parse("ignore: 5\n") }
    }

    /// A process can call itself sshd; its executable is harder to fake, and a deleted one does
    /// not match the path it was installed at.
    @Test func exeIsAGlobOnTheHoldersExecutable() throws {
        let policy = try PolicyFile.parse("""
            expected:
              - { comm: sshd, exe: "/usr/sbin/*" }
            """)
        func held(_ comm: String, _ exe: String) -> Binding {
            var b = binding(attribution: Attribution())
            b.owner.comm = comm
            b.owner.exe = exe
            return b
        }
        #expect(policy.allows(held("sshd", "/usr/sbin/sshd")))
        #expect(!policy.allows(held("sshd", "/tmp/.x/sshd")), "a process that only calls itself sshd")
        #expect(!policy.allows(held("sshd", "/usr/sbin/sshd (deleted)")), "replaced since it started")
        #expect(held("sshd", "/usr/sbin/sshd (deleted)").owner.exeDeleted)
        #expect(held("sshd", "/usr/sbin/sshd (deleted)") == held("sshd", "/usr/sbin/sshd"), "not part of the owner's identity")
    }

    @Test func exposureAsOneValueOrAList() throws {
        let policy = try PolicyFile.parse("""
            expected:
              - { port: 8080, exposure: [loopback, private] }
              - { comm: app, exposure: wildcard, unit: "app.service" }
            """)
        #expect(policy.allows(binding("127.0.0.1")))
        #expect(policy.allows(binding("10.1.2.3")))
        #expect(!policy.allows(binding("8.8.8.8")))
        #expect(!policy.allows(binding("0.0.0.0")))
        #expect(policy.allows(binding("::", family: .ipv6, attribution: Attribution(unit: "app.service"))))
        #expect(throws: PolicyError.self) { try PolicyFile.parse("expected:\n  - { exposure: everywhere }\n") }
    }
}
