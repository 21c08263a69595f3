import Foundation

/// A directory laid out as the kubelet lays out a ConfigMap or Secret volume (its AtomicWriter):
/// the files live in a hidden `..<timestamp>` directory, `..data` links to it, and each
/// visible name links to `..data/<name>`. An update writes a new hidden directory and renames
/// a new `..data` link over the old one, so the visible links themselves never change.
public final class KubernetesVolume {
    public let dir: String
    private var generation = 0

    public init(_ files: [String: String]) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-k8s-volume-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try publish(files)
        for name in files.keys {
            try FileManager.default.createSymbolicLink(atPath: dir + "/" + name, withDestinationPath: "..data/" + name)
        }
    }

    public func path(_ name: String) -> String { dir + "/" + name }

    /// Publishes a new version of the files, as the kubelet does on an update.
    public func publish(_ files: [String: String]) throws {
        generation += 1
        let hidden = "..2026_12_06_00_00_00.\(generation)"
        try FileManager.default.createDirectory(atPath: dir + "/" + hidden, withIntermediateDirectories: false)
        for (name, text) in files { try text.write(toFile: dir + "/" + hidden + "/" + name, atomically: false, encoding: .utf8) }
        let old = try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/..data")
        try FileManager.default.createSymbolicLink(atPath: dir + "/..data_tmp", withDestinationPath: hidden)
        guard rename(dir + "/..data_tmp", dir + "/..data") == 0 else { throw POSIXError(.EIO) }
        if let old { try FileManager.default.removeItem(atPath: dir + "/" + old) }
    }
}
