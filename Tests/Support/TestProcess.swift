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

    /// `bytes` decompressed by gzip(1) (not by the zlib the daemon compresses with); nil when
    /// gzip refuses them.
    public static func gunzip(_ bytes: [UInt8]) -> [UInt8]? {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pw-\(UUID().uuidString).gz").path
        guard FileManager.default.createFile(atPath: file, contents: Data(bytes)) else { return nil }
        defer { try? FileManager.default.removeItem(atPath: file) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["gzip", "-dc", file]
        let out = Pipe()
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return p.terminationStatus == 0 ? Array(data) : nil
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

/// A process's memory as /proc shows it.
public enum ProcessMemory {
    /// KiB resident of the read-only mappings (code, constants) of `pid`'s executable, from
    /// /proc/PID/smaps; nil when it cannot be read. `pid` may be "self".
    public static func executableCodeKiB(_ pid: String) -> Int? {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe"),
              let smaps = try? String(contentsOfFile: "/proc/\(pid)/smaps", encoding: .utf8) else { return nil }
        var total = 0, counting = false
        for line in smaps.split(separator: "\n") {
            // A mapping's header: `start-end perms offset dev inode [path]`; then its `Name: value` lines.
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            if let first = fields.first, !first.hasSuffix(":") {
                counting = fields.count == 6 && fields[5].drop(while: { $0 == " " }) == exe && !fields[1].contains("w")
            } else if counting, fields.first == "Rss:", fields.count > 1 {
                total += Int(fields[1]) ?? 0
            }
        }
        return total
    }
}
