import CBPF
import Foundation
import Glibc
import PortwatchCapture
import PortwatchCore

/// The daemon's user-space work per kernel event, alone (no kernel, no ring, no thread): the
/// records of a UDP bind+close flood (two threads' sockets interleaved, a random ephemeral port
/// each, one process) decoded, reconciled (200 ms window) and folded into transient records in
/// poll-sized batches, as the capture thread does. Against decoding alone, the least any
/// consumer of the records does.
enum UserPathBench {
    /// Records as the ring holds them: two threads, each binding a socket and closing it
    /// about 2.7 µs later, their records interleaved at random.
    static func records(count: Int) -> [pw_event] {
        var g = SystemRandomNumberGenerator()
        var out: [pw_event] = []
        out.reserveCapacity(count)
        var open: [UInt64?] = [nil, nil]
        var port: [UInt16] = [0, 0]
        var cookie: UInt64 = 1 << 20
        var t: UInt64 = 1_000_000_000
        var binding = pw_binding()
        binding.cgroup = 1
        binding.netns = 4026531840
        binding.pid = 4242
        binding.protocol = UInt8(IPPROTO_UDP)
        binding.family = UInt8(AF_INET)
        binding.state = UInt8(PW_STATE_BOUND.rawValue)
        withUnsafeMutableBytes(of: &binding.addr) { $0[0] = 127; $0[3] = 1 }
        withUnsafeMutableBytes(of: &binding.comm) { out in for (i, b) in "flood".utf8.enumerated() { out[i] = b } }
        while out.count < count {
            let thread = Int.random(in: 0...1, using: &g)
            t += 1_350
            var e = pw_event()
            e.binding = binding
            e.ts_ns = t
            if let c = open[thread] {
                e.cookie = c
                e.kind = PW_EVENT_CLOSE.rawValue
                e.reason = PW_REASON_RELEASED.rawValue
                e.binding.port = port[thread]
                open[thread] = nil
            } else {
                cookie += 1
                port[thread] = UInt16.random(in: 32768...60999, using: &g)
                e.cookie = cookie
                e.kind = PW_EVENT_OPEN.rawValue
                e.binding.port = port[thread]
                open[thread] = cookie
            }
            out.append(e)
        }
        return out
    }

    /// Records per poll in the daemon's flood (one wakeup per 64 KiB of records).
    static let pollSize = 700

    static func run(report: Report, repeats: Int) {
        let raw = records(count: 2_000_000)
        let size = MemoryLayout<pw_event>.size
        var decodeOnly: [Double] = [], whole: [Double] = [], recorded = 0
        for run in 0..<repeats {
            Progress.step("user-space path", run: run, of: repeats)
            // Alternating which goes first.
            for first in [run % 2 == 0, run % 2 != 0] {
                var decoder = EventDecoder()
                var events: [PortEvent] = []
                if first {
                    let seconds = Measure.cpuTime {
                        raw.withUnsafeBufferPointer { records in
                            for start in stride(from: 0, to: records.count, by: pollSize) {
                                for i in start..<min(records.count, start + pollSize) {
                                    if let e = decoder.decode(records.baseAddress! + i, size: size) { events.append(e) }
                                }
                                blackHole(events.count)
                                events.removeAll(keepingCapacity: true)
                            }
                        }
                    }
                    decodeOnly.append(seconds / Double(raw.count) * 1e9)
                } else {
                    var reconciler = Reconciler(window: 200_000_000)
                    var log = TransientLog()
                    var written = 0
                    let seconds = Measure.cpuTime {
                        raw.withUnsafeBufferPointer { records in
                            var lastFlush: UInt64 = 0
                            for start in stride(from: 0, to: records.count, by: pollSize) {
                                for i in start..<min(records.count, start + pollSize) {
                                    if let e = decoder.decode(records.baseAddress! + i, size: size) { events.append(e) }
                                }
                                let now = events.last?.time ?? 0
                                reconciler.ingest(events)
                                reconciler.drainTransients { written += log.add($0, now: now).count }
                                events.removeAll(keepingCapacity: true)
                                // A flush per 100 ms of the records' time, as the daemon's tick.
                                if now &- lastFlush >= 100_000_000 {
                                    lastFlush = now
                                    written += reconciler.flush(now: now)?.changes.count ?? 0
                                    written += log.due(now: now).count
                                }
                            }
                        }
                    }
                    recorded = written
                    whole.append(seconds / Double(raw.count) * 1e9)
                }
            }
        }
        let figures = [
            Figure(name: "decode, reconcile and fold, per event", unit: "ns", runs: whole),
            Figure(name: "baseline: decode alone, per event", unit: "ns", runs: decodeOnly),
        ]
        report.add("The daemon's user-space path per event (2,000,000 records of a UDP bind+close flood, in batches of \(pollSize))", figures, notes: [
            "whole path / decode alone: \(Report.format(figures[0].median / figures[1].median))",
            "records and rows made in the last run: \(recorded)",
        ])
    }

    @inline(never)
    static func blackHole(_ x: Int) { if x == -1 { print(x) } }
}
