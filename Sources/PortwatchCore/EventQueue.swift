/// A FIFO of elements at absolute positions that never move once appended: new elements go
/// to the back array, the front array is consumed from `start`, and when the front is used
/// up the two swap (the spent array's room is reused). Dropping from the front costs
/// nothing, unlike removing the head of one array, which moves and copies every element
/// behind it.
struct EventQueue<Element> {
    private var front: [Element] = []
    private var back: [Element] = []
    /// Absolute position of `front[0]`.
    private var base = 0
    /// Absolute position of the first element not yet consumed.
    private(set) var start = 0
    /// Room kept when the queue is drained; a burst's larger room is given back once it is over.
    let retained: Int

    init(retained: Int) { self.retained = retained }

    /// Absolute position the next append gets.
    var end: Int { base + front.count + back.count }

    /// Changes one element in place. (A subscript's `_modify` would do the same through a
    /// coroutine whose frame, too large for its inline buffer, is a malloc per access.)
    @inline(__always)
    mutating func update<R>(_ position: Int, _ body: (inout Element) -> R) -> R {
        let i = position - base
        return i < front.count ? body(&front[i]) : body(&back[i - front.count])
    }

    /// Reads part of one element in place (a field of it, without copying the whole element
    /// as a read through the subscript does).
    @inline(__always)
    func read<R>(_ position: Int, _ body: (borrowing Element) -> R) -> R {
        let i = position - base
        return i < front.count ? body(front[i]) : body(back[i - front.count])
    }

    mutating func append(_ element: Element) { back.append(element) }

    /// Removes elements from the back while `condition` holds for the last one, never
    /// below `start`: their positions are handed out again by the next appends.
    mutating func removeLast(while condition: (borrowing Element) -> Bool) {
        while end > start {
            if let last = back.indices.last {
                guard condition(back[last]) else { return }
                back.removeLast()
            } else {
                guard condition(front[front.count - 1]) else { return }
                front.removeLast()
            }
        }
    }

    /// The elements in `range` (absolute positions), read in place.
    func elements(_ range: Range<Int>) -> FlattenSequence<[ArraySlice<Element>]> {
        let split = base + front.count
        let inFront = front[(min(range.lowerBound, split) - base)..<(min(range.upperBound, split) - base)]
        let inBack = back[(max(range.lowerBound, split) - split)..<(max(range.upperBound, split) - split)]
        return [inFront, inBack].joined()
    }

    /// Marks everything before `position` consumed, freeing the front once all of it is.
    mutating func consume(upTo position: Int) {
        start = max(start, position)
        while start >= base + front.count && !(front.isEmpty && back.isEmpty) {
            base += front.count
            let busy = back.count
            swap(&front, &back)
            // A quarter full or more: still in a burst, keep the room for the next one.
            back.removeAll(keepingCapacity: back.capacity <= max(retained, 4 * busy))
            if front.isEmpty { break }
        }
    }
}

extension EventQueue: Sendable where Element: Sendable {}
