import Foundation

/// A python3 script that makes the sockets a benchmark measures: it says what it made on its
/// first line, and ends (with whatever it forked) when its stdin gets a line or closes.
final class Workload {
    private let process = Process()
    private let input = Pipe()
    private let lines: LineReader

    init(script: String, arguments: [String]) throws {
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        process.standardInput = input
        process.standardOutput = output
        lines = LineReader(output.fileHandleForReading)
        try process.run()
    }

    /// The next line the script printed.
    func line() -> String? { lines.next() }

    func stop() {
        input.fileHandleForWriting.write(Data("\n".utf8))
        process.waitUntilExit()
    }
}
