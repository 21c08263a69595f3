/// Swift's dictionaries and arrays keep their room when elements are removed: a table that
/// held 10,000 entries once keeps room for 10,000 until it is made again. These make it again,
/// at its size, once it uses less than a quarter of its room (so that a table that shrinks
/// and grows back by less than that is not made again each time).
extension Dictionary {
    /// Made again at its size when it uses less than a quarter of room for more than `floor`.
    public mutating func giveBackRoom(keeping floor: Int) {
        guard capacity > floor, count < capacity / 4 else { return }
        var smaller = Self(minimumCapacity: count)
        for (key, value) in self { smaller[key] = value }
        self = smaller
    }
}

extension Array {
    /// Made again at its size when it uses less than a quarter of room for more than `floor`.
    public mutating func giveBackRoom(keeping floor: Int) {
        guard capacity > floor, count < capacity / 4 else { return }
        self = withUnsafeBufferPointer { Array($0) }
    }
}
