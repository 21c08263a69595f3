import PortwatchYAML
import Testing

/// The YAML reader under the policy file and the web configuration (libyaml's parser).
@Suite struct YAMLNodeTests {
    @Test func mappingsSequencesAndScalarsKeepTheirOrderAndLines() throws {
        let root = try #require(try YAMLNode.parse("""
            # comment
            expected:
              - { port: 22, protocol: "tcp" }
              - ports: '8000-8999'
                comm: nginx
            metrics:
              drop_labels: [pid, comm]
            """))
        let mapping = try #require(root.mapping)
        #expect(mapping.pairs.map { $0.key.string } == ["expected", "metrics"])
        #expect(mapping.pairs.map(\.key.line) == [2, 6])
        let rules = try #require(mapping["expected"]?.sequence)
        #expect(rules.map(\.line) == [3, 4])
        #expect(rules[0].mapping?["port"]?.string == "22")
        #expect(rules[0].mapping?["protocol"]?.string == "tcp")
        #expect(rules[1].mapping?.pairs.map { "\($0.key.string ?? "")=\($0.value.string ?? "")" } == ["ports=8000-8999", "comm=nginx"])
        #expect(mapping["metrics"]?.mapping?["drop_labels"]?.sequence?.compactMap(\.string) == ["pid", "comm"])
        #expect(mapping["absent"]?.line == nil)
    }

    @Test func aliasesAreTheNodeTheirAnchorNames() throws {
        let root = try #require(try YAMLNode.parse("""
            base: &web { protocol: tcp, comm: nginx }
            copy: *web
            list: [&p 80, *p]
            """))
        #expect(root.mapping?["copy"]?.mapping?["comm"]?.string == "nginx")
        #expect(root.mapping?["list"]?.sequence?.compactMap(\.string) == ["80", "80"])
    }

    @Test func noDocumentIsNil() throws {
        #expect(try YAMLNode.parse("")?.line == nil)
        #expect(try YAMLNode.parse("# only a comment\n")?.line == nil)
    }

    @Test(arguments: [
        ("a: [1, 2\n", "line 2"),
        ("a: b: c\n", "line 1"),
        ("a: 1\n---\nb: 2\n", "second document"),
        ("a: *nowhere\n", "names no anchor"),
        ("a:\n\t- 1\n", "line 2"),
    ])
    func textThatIsNotYAMLSaysWhere(text: String, expected: String) {
        #expect { try YAMLNode.parse(text) } throws: { error in "\(error)".contains(expected) }
    }
}
