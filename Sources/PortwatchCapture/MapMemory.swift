import Foundation
import Glibc

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

    /// What a descriptor's fdinfo says of its map (nil: unreadable).
    private static func fields(_ fd: Int32) -> (id: UInt64?, type: UInt64?, maxEntries: UInt64?, memlock: UInt64?)? {
        let file = open("/proc/self/fdinfo/\(fd)", O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { return nil }
        defer { Glibc.close(file) }
        // A map's fdinfo is a few hundred bytes.
        var buffer = [UInt8](repeating: 0, count: 1024)
        let count = buffer.withUnsafeMutableBytes { Glibc.read(file, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        var id: UInt64?, type: UInt64?, maxEntries: UInt64?, memlock: UInt64?
        for line in buffer[..<count].split(separator: UInt8(ascii: "\n")) {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let value = UInt64(String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingCharacters(in: .whitespaces))
            switch String(decoding: line[..<colon], as: UTF8.self) {
            case "map_id": id = value
            case "map_type": type = value
            case "max_entries": maxEntries = value
            case "memlock": memlock = value
            default: break
            }
        }
        return (id, type, maxEntries, memlock)
    }
}
