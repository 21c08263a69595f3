import Foundation
import Glibc
import Testing
import PortwatchTestSupport
import PortwatchCore
@testable import PortwatchStore

/// A writer SIGKILLed at random moments leaves a database that opens, passes
/// integrity_check, and holds exactly the last committed batch.
@Suite struct CrashTests {
    static var writer: String { TestBinaries.path("StoreCrashWriter") }

    @Test func killedWriterLeavesTheLastCommittedBatch() throws {
        let path = try temporaryDirectory() + "/crash.db"
        var generator = SystemRandomNumberGenerator()
        var lastSeen = 0
        for round in 0..<40 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.writer)
            process.arguments = [path]
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            // Let it commit a few batches, then kill it at a random moment.
            var text = ""
            let wanted = Int.random(in: 1...30, using: &generator)
            while text.components(separatedBy: "committed ").count - 1 < wanted {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            usleep(UInt32.random(in: 0...3_000, using: &generator))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            text += String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let printed = text.split(separator: "\n").compactMap { Int($0.dropFirst("committed ".count)) }.max() ?? lastSeen

            // Opens; intact; the state of batch N or N+1 (committed but not yet printed).
            let store = try Store(path: path)
            var integrity = ""
            try store.db.prepare("PRAGMA integrity_check").query { integrity = $0.text(0) }
            #expect(integrity == "ok", "round \(round)")
            let committed = Int(try store.counters().first { $0.name == CounterEntry.events }?.value ?? 0)
            #expect(committed == printed || committed == printed + 1, "round \(round): \(committed) vs printed \(printed)")
            let ports = try store.loadState().rows.keys.map { Int($0.port) }.sorted()
            let expected = committed == 0 ? [] : Array(max(1, committed - 49)...committed)
            #expect(ports == expected, "round \(round): rows are exactly those of batch \(committed)")
            #expect(committed >= lastSeen, "nothing committed is lost")
            lastSeen = committed
        }
        #expect(lastSeen > 40, "the writer made progress across restarts")
    }
}
