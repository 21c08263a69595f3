import ArgumentParser

/// A port or an inclusive range of ports on the command line: `4444` or `8000-8999`.
struct PortsArgument: ExpressibleByArgument, Sendable, Equatable {
    let range: ClosedRange<UInt16>

    init?(argument: String) {
        let parts = argument.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard let low = UInt16(parts[0]) else { return nil }
        let high = parts.count == 2 ? UInt16(parts[1]) : low
        guard let high, low <= high else { return nil }
        range = low...high
    }

    static var defaultCompletionKind: CompletionKind { .default }
}
