import Foundation

/// Runs other programs from tests: exit status and combined output.
public enum TestProcess {
    /// `arguments[0]` is looked up on PATH; `input`, if any, is written to its stdin.
    @discardableResult
    public static func run(_ arguments: [String], input: String? = nil) -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = arguments
        let stdin = Pipe(), out = Pipe()
        p.standardInput = input == nil ? FileHandle.nullDevice : stdin
        p.standardOutput = out
        p.standardError = out
        guard (try? p.run()) != nil else { return (-1, "cannot run \(arguments.first ?? "")") }
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    /// A shell command line.
    @discardableResult
    public static func sh(_ command: String) -> (status: Int32, output: String) {
        run(["sh", "-c", command])
    }
}

/// The running kernel's release, as uname gives it.
public enum KernelRelease {
    public static var text: String {
        var uts = utsname()
        uname(&uts)
        return withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// Whether the kernel is older than major.minor.
    public static func isBefore(_ major: Int, _ minor: Int) -> Bool {
        text.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }.lexicographicallyPrecedes([major, minor])
    }
}
