import ArgumentParser
import FoundationEssentials
import Glibc
import PortwatchSystem
import PortwatchCore
import PortwatchStore

/// Text and JSON forms of ledger rows, shared by the reading commands.
enum LedgerOutput {
    /// RFC 3339 in UTC to the second, e.g. 2026-01-01T00:00:00Z (no formatter object per call).
    static func time(_ ns: UInt64) -> String {
        var seconds = time_t(ns / 1_000_000_000)
        var t = tm()
        gmtime_r(&seconds, &t)
        return digits(UInt64(t.tm_year + 1900), 4) + "-" + digits(UInt64(t.tm_mon + 1), 2) + "-" + digits(UInt64(t.tm_mday), 2)
            + "T" + digits(UInt64(t.tm_hour), 2) + ":" + digits(UInt64(t.tm_min), 2) + ":" + digits(UInt64(t.tm_sec), 2) + "Z"
    }

    /// `value` in decimal, zero-padded to `width`.
    private static func digits(_ value: UInt64, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }

    static func duration(_ ns: UInt64) -> String { DurationText.format(ns) }

    /// Columns padded to their widest cell.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[i] - cell.count)) }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    /// A row's fields as JSON (inside an object `out` has begun), the same names as `history` uses.
    static func writeFields(_ b: Binding, to out: inout StreamWriter) {
        let a = b.owner.attribution
        out.field("netns", Int64(b.key.netns))
        out.field("protocol", "\(b.key.transport)")
        out.field("family", "\(b.key.family)")
        out.field("address", b.key.address)
        out.field("port", Int64(b.key.port))
        out.field("pid", Int64(b.owner.pid))
        out.field("comm", b.owner.comm)
        out.field("uid", Int64(b.owner.uid))
        out.field("holders", Int64(b.holders))
        out.field("unit", a.unit)
        out.field("container_id", a.containerID)
        out.field("pod", a.pod)
        out.field("namespace", a.namespace)
        out.field("container", a.container)
        out.field("exe", b.owner.exe)
        out.field("exe_deleted", b.owner.exeDeleted ? 1 : 0)
        out.field("exposure", "\(b.key.exposure)")
    }

    /// The EXE column: the executable, or "-".
    static func exe(_ owner: Owner) -> String { owner.exe.isEmpty ? "-" : owner.exe }

    /// The UNIT column: the systemd unit, or "-".
    static func unit(_ owner: Owner) -> String { owner.attribution.unit.isEmpty ? "-" : owner.attribution.unit }

    /// The POD column: namespace/pod, else the container's name or short id, else "-".
    static func pod(_ owner: Owner) -> String {
        let a = owner.attribution
        guard let cell = podCell(pod: a.pod, namespace: a.namespace, container: a.container, containerID: a.containerID) else { return "-" }
        return cell.namespace.map { "\($0)/\(cell.name)" } ?? String(cell.name)
    }

    /// What the POD column shows, for Strings (`ls`) and a history row's bytes alike: the
    /// pod with its namespace when there is one, else the container's name, else its id's
    /// first 12 characters; nil for "-".
    static func podCell<Text: Collection>(pod: Text, namespace: Text, container: Text, containerID: Text) -> (namespace: Text?, name: Text.SubSequence)? {
        if !pod.isEmpty { return (namespace.isEmpty ? nil : namespace, pod[...]) }
        if !container.isEmpty { return (nil, container[...]) }
        return containerID.isEmpty ? nil : (nil, containerID.prefix(12))
    }

    static func hostPort(_ key: BindingKey, ports: String? = nil) -> String {
        let ports = ports ?? "\(key.port)"
        return key.family == .ipv6 ? "[\(key.address)]:\(ports)" : "\(key.address):\(ports)"
    }

    /// Opens the ledger read-only or ends with one line saying why.
    static func reader(_ path: String) throws -> StoreReader {
        do { return try StoreReader(path: path) } catch { throw fail("\(error)") }
    }

    static func fail(_ message: String) -> ExitCode {
        FileDescriptor.writeStandardError("portwatch: \(message)\n")
        return ExitCode(1)
    }
}
