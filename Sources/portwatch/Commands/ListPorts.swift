import ArgumentParser
import FoundationEssentials
import Glibc
import PortwatchCore
import PortwatchPolicy
import PortwatchStore
import PortwatchSystem

/// `portwatch ls`: the ports held now, from the ledger.
struct ListPorts: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the ports held now, like `ss -tulpn`, from the ledger.",
        discussion: "Exit codes: 0 listed (possibly nothing), 1 the ledger or policy cannot be read, 64 bad flags."
    )

    @OptionGroup var database: DatabaseOption

    @Option(help: "Only this port or range of ports, e.g. 4444 or 8000-8999.")
    var port: PortsArgument?

    @Option(name: .customLong("protocol"), help: "Only this protocol: tcp or udp.")
    var transport: String?

    @Option(help: "Only ports held by processes with this name.")
    var comm: String?

    @Flag(help: "Only ports the policy (--policy.file) does not allow.")
    var unexpected = false

    @Option(name: .customLong("policy.file"), help: "Expected-listener policy, for --unexpected; its ignore: rules hide ports unless --all.")
    var policyFile: String?

    @Flag(help: "Also the ports the policy's ignore: rules leave out (with --policy.file).")
    var all = false

    @Option(help: "Also list the transient (short-lived) listeners recorded in this period, e.g. 1h.")
    var since: PrometheusDuration?

    @Option(help: "table or json.")
    var output: OutputFormat = .table

    func validate() throws {
        if let transport, TransportProtocol(name: transport) == nil { throw ValidationError("--protocol must be tcp or udp") }
        if unexpected && policyFile == nil { throw ValidationError("--unexpected needs --policy.file to know what is expected") }
    }

    func run() throws {
        let reader = try LedgerOutput.reader(database.path)
        var rows = try reader.snapshot().rows
        var transients: [HistoryEntry] = []
        if let since {
            let now = SystemClock().wallNanoseconds()
            do {
                let query = HistoryQuery(ports: port?.range, since: now &- min(now, since.nanoseconds), kinds: [.transient])
                try reader.history(query) { transients.append($0) }
            } catch { throw LedgerOutput.fail("\(error)") }
        }
        // A transient group's ports were matched by the query (exactly or by its range).
        func wanted(_ row: Binding, anyPort: Bool = false) -> Bool {
            (anyPort || port.map { $0.range.contains(row.key.port) } ?? true) && (transport == nil || row.key.transport.description == transport)
                && (comm == nil || row.owner.comm == comm)
        }
        rows = rows.filter { wanted($0) }
        transients = transients.filter { wanted($0.row, anyPort: true) }
        if let policyFile {
            do {
                let policy = try PolicyFile.load(path: policyFile)
                if !all {
                    rows = policy.shown(rows)
                    transients = transients.filter { !$0.bindings.allSatisfy(policy.ignores) }
                }
                if unexpected {
                    rows = policy.unexpected(rows)
                    // A group is unexpected when a port it is known to have held is.
                    transients = transients.filter { !$0.bindings.allSatisfy(policy.allows) }
                }
            } catch { throw LedgerOutput.fail("\(error)") }
        }
        switch output {
        case .json: writeJSON(rows, transients)
        case .table: print(tableText(rows, transients), terminator: "")
        }
    }

    /// How a transient group met --port (nil without it).
    private func match(_ e: HistoryEntry) -> PortMatch? {
        port.flatMap { HistoryQuery(ports: $0.range).match(e.held, port: e.row.key.port) }
    }

    private func writeJSON(_ rows: [Binding], _ transients: [HistoryEntry]) {
        // One array: `ls` is a snapshot, read whole (`history` streams JSON Lines).
        var out = StreamWriter()
        out.beginArray()
        for row in rows {
            out.beginObject()
            LedgerOutput.writeFields(row, to: &out)
            out.field("state", "\(row.state)")
            out.field("since", LedgerOutput.time(row.firstSeen))
            out.endObject()
        }
        for e in transients {
            out.beginObject()
            LedgerOutput.writeFields(e.row, to: &out)
            out.field("state", "transient")
            out.field("since", LedgerOutput.time(e.opened))
            out.field("count", Int64(e.count))
            out.field("port_max", Int64(e.portMax))
            out.field("ports", numbers: e.heldPorts.ports.map(Int64.init))
            out.field("ports_unlisted", Int64(e.heldPorts.unlisted))
            out.field("lifetime_seconds", seconds: e.lifetime ?? 0)
            if let match = match(e) { out.field("match", match.rawValue) }
            out.endObject()
        }
        out.endArray()
        out.flush()
    }

    private func tableText(_ rows: [Binding], _ transients: [HistoryEntry]) -> String {
        LedgerOutput.table(
            ["PROTO", "LOCAL", "STATE", "PID", "COMM", "UID", "UNIT", "POD", "NETNS", "SINCE", "EXE"],
            rows.map { r in
                ["\(r.key.transport)", LedgerOutput.hostPort(r.key), "\(r.state)", "\(r.owner.pid)", r.owner.comm,
                 "\(r.owner.uid)", LedgerOutput.unit(r.owner), LedgerOutput.pod(r.owner), "\(r.key.netns)",
                 LedgerOutput.time(r.firstSeen), LedgerOutput.exe(r.owner)]
            } + transients.map { e in
                let r = e.row
                let inRange = match(e) == .range
                let state = (e.count > 1 ? "transient x\(e.count)" : "transient") + (inRange ? ", in range" : "")
                return ["\(r.key.transport)", LedgerOutput.hostPort(r.key, ports: e.ports), state, "\(r.owner.pid)", r.owner.comm,
                        "\(r.owner.uid)", LedgerOutput.unit(r.owner), LedgerOutput.pod(r.owner), "\(r.key.netns)",
                        LedgerOutput.time(e.opened), LedgerOutput.exe(r.owner)]
            })
    }
}
