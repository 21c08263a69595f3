import Glibc
import PortwatchSystem

/// The kernel memory of the loaded BPF maps, as the kernel charges it to the daemon's memory
/// cgroup: the `memlock:` line of each map descriptor in /proc/self/fdinfo. Linux 6.4 and
/// later give the memory in use (a map of bound sockets grows and shrinks with its entries);
/// earlier kernels an estimate from the map's size. Linux 5.11 to 6.3 estimate a ring buffer
/// at 0 bytes (it has no keys or values): a ring buffer is given at least its data size.
/// Read on any thread.
public struct MapMemory: Sendable {
    struct Map: Sendable {
        let name: String
        let fd: Int32
        /// The kernel's id of the map, so that a descriptor closed and reused is not read as it.
        let id: UInt64
    }

    let maps: [Map]

    public init() { maps = [] }

    /// The maps behind `descriptors` (name -> descriptor); a descriptor whose fdinfo shows no
    /// BPF map is left out.
    init(_ descriptors: [(name: String, fd: Int32)]) {
        maps = descriptors.compactMap { d in
            Self.fields(d.fd).flatMap { f in f.id.map { Map(name: d.name, fd: d.fd, id: $0) } }
        }.sorted { $0.name < $1.name }
    }

    /// Bytes per map, by name; a map that can no longer be read (closed) is left out.
    public func read() -> [(map: String, bytes: UInt64)] {
        maps.compactMap { m in
            guard let f = Self.fields(m.fd), f.id == m.id, let bytes = f.memlock else { return nil }
            return (m.name, f.type == Self.ringBufferType ? max(bytes, f.maxEntries ?? 0) : bytes)
        }
    }

    /// BPF_MAP_TYPE_RINGBUF, whose max_entries is its data size in bytes.
    static let ringBufferType: UInt64 = 27

    /// What a descriptor's fdinfo says of its map (nil: unreadable). Read at every scrape:
    /// the lines are matched as bytes, no text is made.
    private static func fields(_ fd: Int32) -> (id: UInt64?, type: UInt64?, maxEntries: UInt64?, memlock: UInt64?)? {
        // A map's fdinfo is a few hundred bytes.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { buffer in
            guard let count = FileDescriptor.read(path: "/proc/self/fdinfo/\(fd)", into: UnsafeMutableRawBufferPointer(buffer)),
                  count > 0 else { return nil }
            var id: UInt64?, type: UInt64?, maxEntries: UInt64?, memlock: UInt64?
            var start = 0
            while start < count {
                var end = start
                while end < count, buffer[end] != UInt8(ascii: "\n") { end += 1 }
                let line = UnsafeBufferPointer(rebasing: buffer[start..<end])
                if let value = Self.value(line, "map_id:") { id = value }
                else if let value = Self.value(line, "map_type:") { type = value }
                else if let value = Self.value(line, "max_entries:") { maxEntries = value }
                else if let value = Self.value(line, "memlock:") { memlock = value }
                start = end + 1
            }
            return (id, type, maxEntries, memlock)
        }
    }

    /// The decimal number after `name` (and tabs or spaces) when the line starts with it.
    private static func value(_ line: UnsafeBufferPointer<UInt8>, _ name: StaticString) -> UInt64? {
        let n = name.utf8CodeUnitCount
        guard line.count > n, let start = line.baseAddress, memcmp(start, name.utf8Start, n) == 0 else { return nil }
        var i = n
        while i < line.count, line[i] == UInt8(ascii: " ") || line[i] == UInt8(ascii: "\t") { i += 1 }
        var value: UInt64 = 0, digits = 0
        while i < line.count, line[i] >= UInt8(ascii: "0"), line[i] <= UInt8(ascii: "9") {
            value = value &* 10 &+ UInt64(line[i] - UInt8(ascii: "0"))
            i += 1
            digits += 1
        }
        return digits > 0 ? value : nil
    }
}
