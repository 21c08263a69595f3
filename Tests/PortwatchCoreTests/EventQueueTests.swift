import Testing
@testable import PortwatchCore

/// The reconciler's event queue against a plain array: random appends, marks, reads of
/// ranges that straddle its two halves, and consumption, over 20,000 steps.
@Suite struct EventQueueTests {
    @Test func behavesLikeAnArrayConsumedFromTheFront() {
        var rng = SystemRandomNumberGenerator()
        var queue = EventQueue<Int>(retained: 8)
        var model: [Int] = []
        var start = 0
        var next = 0
        for _ in 0..<20_000 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<5:
                queue.append(next)
                model.append(next)
                next += 1
            case 5, 6:
                guard start < model.count else { continue }
                let p = Int.random(in: start..<model.count, using: &rng)
                queue[p] += 1_000_000
                model[p] += 1_000_000
            case 7, 8:
                let lo = Int.random(in: start...model.count, using: &rng)
                let hi = Int.random(in: lo...model.count, using: &rng)
                #expect(Array(queue.elements(lo..<hi)) == Array(model[lo..<hi]))
            default:
                start = Int.random(in: start...model.count, using: &rng)
                queue.consume(upTo: start)
            }
            #expect(queue.start == start && queue.end == model.count)
            if start < model.count { #expect(queue[start] == model[start]) }
        }
    }
}
