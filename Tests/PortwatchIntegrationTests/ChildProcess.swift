import Foundation
import Glibc

/// Another process that takes ports on the test's behalf (python3 on a short script),
/// so that exit, fork and other namespaces can be exercised. It prints what it did
/// on stdout, one line each, and acts on lines written to its stdin.
final class ChildProcess {
    let process = Process()
    private let input = Pipe(), output = Pipe()
    private var buffered = ""

    /// Common helpers for the scripts: `tcp(addr, port, listen)`, `udp(addr, port)`, `say(x)`, `wait()`.
    static let prelude = """
    import os, socket, sys
    def say(*a):
        print(*a, flush=True)
    def wait():
        return sys.stdin.readline().strip()
    def tcp(addr="127.0.0.1", port=0, listen=True, reuse=False):
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
        if reuse: s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((addr, port))
        if listen: s.listen()
        return s
    def udp(addr="127.0.0.1", port=0):
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
        return s

    """

    /// Binds a TCP socket and says its port; listens when told to, and says "listening".
    static let bindsThenListensWhenTold = """
    s = tcp(listen=False)
    say(s.getsockname()[1])
    wait()
    s.listen()
    say("listening")
    wait()
    """

    /// The system interpreter, so that other users (setpriv) can run it too.
    static let systemPython = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : "python3"

    init(_ script: String, wrapper: [String] = [], interpreter: String = ChildProcess.systemPython) throws {
        let python = interpreter
        let command = wrapper + [python, "-c", Self.prelude + script]
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        process.standardInput = input
        process.standardOutput = output
        try process.run()
    }

    /// The next line the child printed (nil if it ended first).
    func line() -> String? {
        while !buffered.contains("\n") {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            buffered += String(decoding: chunk, as: UTF8.self)
        }
        let index = buffered.firstIndex(of: "\n")!
        let line = String(buffered[..<index])
        buffered = String(buffered[buffered.index(after: index)...])
        return line
    }

    func send(_ line: String) {
        input.fileHandleForWriting.write(Data((line + "\n").utf8))
    }

    var pid: Int32 { process.processIdentifier }

    /// The process name the kernel has for it (e.g. python3.11).
    var comm: String {
        ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// True once the process is gone or a zombie.
    static func hasExited(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(close, offsetBy: 2)] == "Z"
    }

    func kill(_ signal: Int32 = SIGKILL) {
        Glibc.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning { kill() }
    }
}

extension ChildProcess {
    /// A child in a new network namespace listening on 0.0.0.0: the child, its port, and the
    /// namespace's inode.
    static func listenerInNewNetworkNamespace() throws -> (child: ChildProcess, port: UInt16, netns: String) {
        let child = try ChildProcess("""
        s = tcp("0.0.0.0")
        say(s.getsockname()[1], os.readlink("/proc/self/ns/net"))
        wait()
        """, wrapper: ["unshare", "-n"])
        let words = (child.line() ?? "").split(separator: " ")
        guard words.count == 2, let port = UInt16(words[0]) else { throw ChildFailed(output: words.joined(separator: " ")) }
        return (child, port, String(words[1].dropFirst(5).dropLast()))
    }

    struct ChildFailed: Error { let output: String }
}

