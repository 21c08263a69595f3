import Testing
import PortwatchCore

/// Attribution keeps its names in a shared box: equality and hashing must still be by name.
@Suite struct AttributionValueTests {
    let full = Attribution(unit: "kubelet.service", containerID: "0123456789abcdef", pod: "web-7d9f", namespace: "shop", container: "nginx")

    @Test func equalByNamesWhicheverBoxHoldsThem() {
        let again = Attribution(unit: "kubelet.service", containerID: "0123456789abcdef", pod: "web-7d9f", namespace: "shop", container: "nginx")
        #expect(full == again)
        let copies = (0..<64).map { _ in
            Attribution(unit: "kubelet.service", containerID: "0123456789abcdef", pod: "web-7d9f", namespace: "shop", container: "nginx")
        }
        #expect(Set(copies).count == 1, "equal attributions hash alike, whichever box holds their names")
        #expect(Attribution() == Attribution(unit: "", pod: ""))
        var built = Attribution(unit: "kubelet.service")
        built.containerID = "0123456789abcdef"
        built.pod = "web-7d9f"
        built.namespace = "shop"
        built.container = "nginx"
        #expect(built == full)
    }

    @Test func anyOneNameMakesADifference() {
        let changes: [(inout Attribution) -> Void] = [
            { $0.unit = "other.service" }, { $0.containerID = "fedcba9876543210" }, { $0.pod = "web-8x2q" },
            { $0.namespace = "shop-staging" }, { $0.container = "envoy" },
        ]
        for change in changes {
            var other = full
            change(&other)
            #expect(other != full)
            #expect(Set([full, other]).count == 2)
        }
        #expect(Attribution(unit: "a", pod: "b") != Attribution(unit: "ab"), "names do not run into each other")
        #expect(Attribution() != Attribution(unit: "x.service"))
    }

    @Test func settingANameLeavesTheOthersAndOtherCopies() {
        var copy = full
        copy.pod = "web-8x2q"
        #expect(full.pod == "web-7d9f", "the original keeps its names")
        #expect(copy.unit == full.unit && copy.containerID == full.containerID && copy.namespace == full.namespace && copy.container == full.container)
        copy.pod = "web-7d9f"
        #expect(copy == full)
    }
}
