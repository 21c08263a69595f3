import Testing
import PortwatchCore
@testable import PortwatchPolicy

/// The suggested policy, read back by PolicyFile, allows every steady listener of the period
/// (whatever its owner is called) and none that was held for less than the minimum.
@Suite struct PolicySuggestionTests {
    static let hour: UInt64 = 3_600_000_000_000

    static func hold(_ port: UInt16, comm: String, pid: Int32 = 10, address: String = "0.0.0.0", family: AddressFamily = .ipv4,
                     attribution: Attribution = Attribution(), from: UInt64, until: UInt64?) -> PolicySuggestion.Hold {
        let b = Binding(key: BindingKey(netns: 1, transport: .tcp, family: family, address: address, port: port),
                        owner: Owner(pid: pid, comm: comm, uid: 0, attribution: attribution), state: .listen, holders: 1,
                        firstSeen: from, lastChange: from)
        return PolicySuggestion.Hold(binding: b, from: from, until: until)
    }

    static let now: UInt64 = 100 * hour
    static let start: UInt64 = now - 24 * hour

    /// Owners whose names are YAML or glob syntax, a login session's scope, a DaemonSet pod.
    static let steady: [PolicySuggestion.Hold] = [
        hold(80, comm: "a*b?[c]\\d", attribution: Attribution(unit: "we[ird]*.service"), from: 0, until: nil),
        hold(81, comm: "true", from: start + hour, until: start + 3 * hour),
        hold(82, comm: "- {x: 1}, #", address: "::1", family: .ipv6, from: 0, until: nil),
        hold(83, comm: "tab\there", attribution: Attribution(unit: "session-42.scope"), from: start - hour, until: start + 2 * hour),
        hold(84, comm: "agent", attribution: Attribution(pod: "agent-k8x2z", namespace: "kube-system", container: "agent"), from: 0, until: nil),
        hold(9000, comm: "123", address: "10.0.0.1", from: 0, until: nil),
    ]

    /// Held less than the minimum in one stretch, or only before the period.
    static let short: [PolicySuggestion.Hold] = [
        hold(4444, comm: "nc", from: now - 60_000_000_000, until: now - 30_000_000_000),
        hold(6379, comm: "redis", from: 0, until: start - 1),
        hold(85, comm: "a*b?[c]\\d", attribution: Attribution(unit: "we[ird]*.service"), from: start - 10 * hour, until: start + 1_000),
    ]

    @Test func readBackItAllowsEverySteadyListenerAndNoShortOne() throws {
        let suggestions = PolicySuggestion.suggest(Self.steady + Self.short, start: Self.start, now: Self.now, minLifetime: Self.hour)
        let text = PolicySuggestion.yaml(suggestions, header: ["test"])
        let policy = try PolicyFile.parse(text)
        #expect(policy.rules.count == Self.steady.count, "\(text)")
        for hold in Self.steady {
            #expect(policy.allows(hold.binding), "\(hold.binding.owner.comm) on \(hold.binding.key.port) is steady:\n\(text)")
        }
        for hold in Self.short {
            #expect(!policy.allows(hold.binding), "\(hold.binding.key.port) is not steady:\n\(text)")
        }
        // The same owner's next pod, next login session, and a listener on another exposure.
        var nextPod = Self.steady[4].binding
        nextPod.owner.attribution.pod = "agent-q7w9d"
        #expect(policy.allows(nextPod))
        var nextSession = Self.steady[3].binding
        nextSession.owner.attribution.unit = "session-7.scope"
        #expect(policy.allows(nextSession))
        var wider = Self.steady[5].binding
        wider.key.address = "0.0.0.0"
        #expect(!policy.allows(wider), "held on a private address only; the wildcard is a wider exposure")
    }

    @Test func adjacentPortsOfOneOwnerBecomeOneRangeOtherwiseNot() {
        var holds = (8000...8003).map { Self.hold(UInt16($0), comm: "app", pid: Int32($0), from: 0, until: nil) }
        holds.append(Self.hold(8005, comm: "app", from: 0, until: nil))
        holds.append(Self.hold(8004, comm: "app", address: "127.0.0.1", from: 0, until: nil))
        let rules = PolicySuggestion.suggest(holds, start: Self.start, now: Self.now, minLifetime: Self.hour)
        #expect(rules.map(\.rule.ports) == [8000...8003, 8004...8004, 8005...8005], "8004 is loopback, so it breaks the run")
        #expect(rules.first?.pids == [8000, 8001, 8002, 8003])
        #expect(rules.first?.seen == 4)
    }

    @Test func podAndUnitPatterns() {
        #expect(PolicySuggestion.podPattern("web-7d9f8c6b5-x2kq7") == "web-*")
        #expect(PolicySuggestion.podPattern("agent-k8x2z") == "agent-*")
        #expect(PolicySuggestion.podPattern("db-0") == "db-0", "a StatefulSet's pod keeps its name")
        #expect(PolicySuggestion.podPattern("my-server") == "my-server", "a word is not a generated suffix")
        #expect(PolicySuggestion.unitPattern("session-3.scope") == "session-*.scope")
        #expect(PolicySuggestion.unitPattern("nginx.service") == "nginx.service")
        #expect(PolicySuggestion.scalar("sshd") == "sshd")
        #expect(PolicySuggestion.scalar("no") == "\"no\"")
    }
}

/// Ports the kernel holds (a VXLAN socket): a rule allows them by `holder: kernel`, which a
/// process that calls itself "kernel" cannot meet, and suggest-policy writes such a rule.
@Suite struct KernelHolderPolicyTests {
    static func binding(_ owner: Owner) -> Binding {
        Binding(key: BindingKey(netns: 1, transport: .udp, family: .ipv4, address: "0.0.0.0", port: 4789),
                owner: owner, state: .bound, holders: 1, firstSeen: 0, lastChange: 0)
    }

    @Test func holderKernelAllowsTheKernelAndNotAProcessOfThatName() throws {
        let policy = try PolicyFile.parse("expected:\n  - { port: 4789, protocol: udp, holder: kernel }\n")
        #expect(policy.allows(Self.binding(.kernel())))
        #expect(!policy.allows(Self.binding(Owner(pid: 77, comm: "kernel", uid: 0))), "a process named kernel")
        #expect(!policy.allows(Self.binding(Owner(pid: 77, comm: "ip", uid: 0))))
        let process = try PolicyFile.parse("expected:\n  - { port: 4789, holder: process }\n")
        #expect(!process.allows(Self.binding(.kernel())))
        #expect(throws: PolicyError.self) { try PolicyFile.parse("expected:\n  - { port: 4789, holder: nobody }\n") }
    }

    /// suggest-policy writes the executable it saw, and the rule reads back allowing that
    /// executable only; a deleted one is not written (it would expect the stale path).
    @Test func suggestPolicyWritesTheExecutable() throws {
        var hold = PolicySuggestionTests.hold(22, comm: "sshd", from: PolicySuggestionTests.start, until: nil)
        hold.binding.owner.exe = "/usr/sbin/sshd"
        var stale = PolicySuggestionTests.hold(8080, comm: "app", from: PolicySuggestionTests.start, until: nil)
        stale.binding.owner.exe = "/opt/app/bin/app (deleted)"
        let text = PolicySuggestion.yaml(PolicySuggestion.suggest([hold, stale], start: PolicySuggestionTests.start, now: PolicySuggestionTests.now, minLifetime: PolicySuggestionTests.hour), header: [])
        #expect(text.contains("exe: \"/usr/sbin/sshd\"") && !text.contains("deleted"), "\(text)")
        let policy = try PolicyFile.parse(text)
        #expect(policy.allows(hold.binding))
        var impostor = hold.binding
        impostor.owner.exe = "/tmp/sshd"
        #expect(!policy.allows(impostor), "another executable calling itself sshd")
    }

    @Test func suggestPolicyWritesHolderKernelAndReadsBack() throws {
        let hour = PolicySuggestionTests.hour
        let hold = PolicySuggestion.Hold(binding: Self.binding(.kernel()), from: 0, until: nil)
        let suggestions = PolicySuggestion.suggest([hold], start: 0, now: 10 * hour, minLifetime: hour)
        let text = PolicySuggestion.yaml(suggestions, header: [])
        #expect(text.contains("holder: kernel") && !text.contains("comm:"), "\(text)")
        #expect(text.contains("the kernel (no process)"), "\(text)")
        let policy = try PolicyFile.parse(text)
        #expect(policy.allows(Self.binding(.kernel())))
        #expect(!policy.allows(Self.binding(Owner(pid: 5, comm: "kernel", uid: 0))))
    }
}
