import CYAML

/// A YAML document as a tree of nodes, parsed by libyaml: what the policy file and the web
/// configuration are read from. Scalars stay text (the readers say which values they take);
/// aliases are resolved to the node their anchor names; tags are ignored.
public struct YAMLNode: Sendable {
    public enum Kind: Sendable {
        case scalar(String)
        case sequence([YAMLNode])
        case mapping(YAMLMapping)
    }

    public var kind: Kind
    /// Where the node starts in the text, counted from 1.
    public var line: Int

    /// The text of a scalar; nil for a sequence or a mapping.
    public var string: String? {
        if case .scalar(let text) = kind { return text }
        return nil
    }

    public var sequence: [YAMLNode]? {
        if case .sequence(let items) = kind { return items }
        return nil
    }

    public var mapping: YAMLMapping? {
        if case .mapping(let pairs) = kind { return pairs }
        return nil
    }

    /// The first document of `text`; nil when it holds none (empty, or only comments).
    public static func parse(_ text: String) throws(YAMLError) -> YAMLNode? {
        var bytes = Array(text.utf8)
        if bytes.isEmpty { return nil }
        return try bytes.withUnsafeMutableBufferPointer { (buffer) throws(YAMLError) -> YAMLNode? in
            var builder = Builder()
            return try builder.parse(buffer)
        }
    }
}

/// A mapping's pairs in the order of the text.
public struct YAMLMapping: Sendable, Sequence {
    public var pairs: [(key: YAMLNode, value: YAMLNode)]

    public init(_ pairs: [(key: YAMLNode, value: YAMLNode)] = []) { self.pairs = pairs }

    public var count: Int { pairs.count }

    /// The value of the first pair whose key is the scalar `key`.
    public subscript(key: String) -> YAMLNode? {
        pairs.first { $0.key.string == key }?.value
    }

    public func makeIterator() -> IndexingIterator<[(key: YAMLNode, value: YAMLNode)]> { pairs.makeIterator() }
}

/// Text that is not YAML, with libyaml's words and where it stopped.
public struct YAMLError: Error, CustomStringConvertible {
    public var description: String
}

/// Builds the tree from libyaml's events.
private struct Builder {
    /// A sequence or mapping being read. A struct changed in place on the stack: a frame taken
    /// off the stack, appended to and put back copied its array each time (an enum's payload
    /// cannot be changed in place), which made a list of 20,000 rules take seconds.
    private struct Frame {
        var line: Int
        var anchor: String?
        var isSequence: Bool
        var items: [YAMLNode] = []
        var pairs: [(key: YAMLNode, value: YAMLNode)] = []
        /// A mapping's key waiting for its value.
        var key: YAMLNode?
    }

    private var stack: [Frame] = []
    private var anchors: [String: YAMLNode] = [:]
    private var root: YAMLNode?

    mutating func parse(_ input: UnsafeMutableBufferPointer<UInt8>) throws(YAMLError) -> YAMLNode? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw YAMLError(description: "out of memory") }
        defer { yaml_parser_delete(&parser) }
        yaml_parser_set_input_string(&parser, input.baseAddress, input.count)
        var documents = 0
        while true {
            var event = yaml_event_t()
            guard yaml_parser_parse(&parser, &event) == 1 else { throw Self.error(parser) }
            defer { yaml_event_delete(&event) }
            let line = Int(event.start_mark.line) + 1
            switch event.type {
            case YAML_STREAM_END_EVENT:
                return root
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1 { throw YAMLError(description: "line \(line): a second document; the file holds one") }
            case YAML_SCALAR_EVENT:
                let scalar = event.data.scalar
                let text = String(decoding: UnsafeBufferPointer(start: scalar.value, count: Int(scalar.length)), as: UTF8.self)
                add(YAMLNode(kind: .scalar(text), line: line), anchor: Self.text(scalar.anchor))
            case YAML_SEQUENCE_START_EVENT:
                stack.append(Frame(line: line, anchor: Self.text(event.data.sequence_start.anchor), isSequence: true))
            case YAML_MAPPING_START_EVENT:
                stack.append(Frame(line: line, anchor: Self.text(event.data.mapping_start.anchor), isSequence: false))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                let frame = stack.removeLast()
                add(YAMLNode(kind: frame.isSequence ? .sequence(frame.items) : .mapping(YAMLMapping(frame.pairs)), line: frame.line),
                    anchor: frame.anchor)
            case YAML_ALIAS_EVENT:
                let name = Self.text(event.data.alias.anchor) ?? ""
                guard let node = anchors[name] else { throw YAMLError(description: "line \(line): alias *\(name) names no anchor before it") }
                add(node, anchor: nil)
            default:
                break
            }
        }
    }

    private mutating func add(_ node: YAMLNode, anchor: String?) {
        if let anchor { anchors[anchor] = node }
        guard !stack.isEmpty else {
            root = node
            return
        }
        let top = stack.count - 1
        if stack[top].isSequence {
            stack[top].items.append(node)
        } else if let key = stack[top].key {
            stack[top].pairs.append((key, node))
            stack[top].key = nil
        } else {
            stack[top].key = node
        }
    }

    private static func text(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    private static func error(_ parser: yaml_parser_t) -> YAMLError {
        let problem = parser.problem.map { String(cString: $0) } ?? "cannot be read"
        let context = parser.context.map { " (\(String(cString: $0)))" } ?? ""
        return YAMLError(description: "line \(parser.problem_mark.line + 1), column \(parser.problem_mark.column + 1): \(problem)\(context)")
    }
}
