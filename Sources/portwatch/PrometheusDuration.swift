import ArgumentParser

/// A duration written the Prometheus way: `250ms`, `1s`, `5m`, `1h30m`, `7d`, `0`.
struct PrometheusDuration: ExpressibleByArgument, CustomStringConvertible, Sendable, Equatable {
    let nanoseconds: UInt64
    let text: String

    init?(argument: String) {
        if argument == "0" { nanoseconds = 0; text = argument; return }
        let units: [(String, UInt64)] = [("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000),
                                         ("h", 3_600_000_000_000), ("d", 86_400_000_000_000), ("w", 604_800_000_000_000),
                                         ("y", 31_536_000_000_000_000)]
        var rest = Substring(argument)
        var total: UInt64 = 0
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, let n = UInt64(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            let unitText = rest.prefix { $0.isLetter }
            guard let unit = units.first(where: { $0.0 == unitText }) else { return nil }
            rest = rest.dropFirst(unitText.count)
            let (product, overflow) = n.multipliedReportingOverflow(by: unit.1)
            guard !overflow else { return nil }
            total += product
        }
        nanoseconds = total
        text = argument
    }

    var description: String { text }
    var seconds: Double { Double(nanoseconds) / 1e9 }
    var milliseconds: Int { Int(nanoseconds / 1_000_000) }
}
