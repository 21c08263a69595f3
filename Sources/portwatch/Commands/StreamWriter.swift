import Glibc

/// Buffered output to stdout for commands that print many lines: one write per 64 KiB
/// (and on `flush`), no per-line locking or formatting objects.
struct StreamWriter {
    private var buffer: [UInt8] = []

    init() { buffer.reserveCapacity(1 << 16) }

    mutating func write(_ text: String) {
        var text = text
        text.withUTF8 { buffer.append(contentsOf: $0) }
        if buffer.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        var offset = 0
        while offset < buffer.count {
            let n = buffer.withUnsafeBytes { Glibc.write(1, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            // The reader went away (`| head`): nothing more to say.
            if n <= 0 { exit(0) }
            offset += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// One JSON object on one line (JSON Lines), built field by field.
struct JSONLine {
    private(set) var text = "{"

    mutating func add(_ key: String, _ value: String?) {
        separator(key)
        guard let value else { return text += "null" }
        text += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }

    mutating func add(_ key: String, _ value: Int64) {
        separator(key)
        text += String(value)
    }

    mutating func add(_ key: String, seconds ns: UInt64?) {
        separator(key)
        guard let ns else { return text += "null" }
        text += String(ns / 1_000_000_000)
        var fraction = ns % 1_000_000_000
        guard fraction > 0 else { return }
        var width = 9
        while fraction % 10 == 0 { fraction /= 10; width -= 1 }
        text += "." + LedgerOutput.digits(fraction, width)
    }

    private mutating func separator(_ key: String) {
        if text.utf8.count > 1 { text += "," }
        text += "\"" + key + "\":"
    }

    var line: String { text + "}\n" }
}
