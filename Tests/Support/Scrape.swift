/// One scrape in the Prometheus text format, parsed: the one reader of exposition text the
/// tests share. Series are addressed exactly as exposed: `name` or `name{label="v",...}`.
public struct Scrape: Sendable {
    public struct Sample: Sendable, Equatable {
        public var name: String
        /// Labels in exposition order, as written (values unescaped).
        public var labels: [(String, String)]
        public var value: Double
        /// The series as written before the value.
        public var series: String
        /// The whole line as exposed.
        public var line: String

        public static func == (a: Sample, b: Sample) -> Bool {
            a.series == b.series && a.value == b.value
        }

        public func label(_ name: String) -> String? { labels.first { $0.0 == name }?.1 }
    }

    public let text: String
    public let samples: [Sample]

    public init(_ text: String) {
        self.text = text
        samples = text.split(separator: "\n").compactMap { Self.parse(Substring($0)) }
    }

    /// The value of one series, nil when it is not exposed.
    public func value(_ series: String) -> Double? { samples.first { $0.series == series }?.value }

    /// Every sample of a metric family (`name` without labels, or with any).
    public func samples(_ name: String) -> [Sample] { samples.filter { $0.name == name } }

    /// The sum over all of a family's series (0 when absent).
    public func sum(_ name: String) -> Double { samples(name).reduce(0) { $0 + $1.value } }

    static func parse(_ line: Substring) -> Sample? {
        guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...])
        else { return nil }
        let series = String(line[..<space])
        guard let brace = series.firstIndex(of: "{") else {
            return Sample(name: series, labels: [], value: value, series: series, line: String(line))
        }
        var labels: [(String, String)] = []
        var rest = series[series.index(after: brace)...].dropLast() // without the closing brace
        while let equals = rest.firstIndex(of: "=") {
            let name = String(rest[..<equals])
            var i = rest.index(equals, offsetBy: 2) // past ="
            var text = ""
            while i < rest.endIndex && rest[i] != "\"" {
                if rest[i] == "\\" {
                    i = rest.index(after: i)
                    text.append(rest[i] == "n" ? "\n" : rest[i])
                } else {
                    text.append(rest[i])
                }
                i = rest.index(after: i)
            }
            labels.append((name, text))
            rest = rest[rest.index(after: i)...].drop { $0 == "," }
        }
        return Sample(name: String(series[..<brace]), labels: labels, value: value, series: series, line: String(line))
    }
}
