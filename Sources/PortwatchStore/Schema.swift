/// The database layout, versioned with `PRAGMA user_version` and migrated forward on open.
enum Schema {
    /// Each entry moves the schema from version `index` to `index + 1`.
    static let migrations: [String] = [
        """
        CREATE TABLE bindings (
            netns INTEGER NOT NULL, protocol TEXT NOT NULL, family TEXT NOT NULL,
            address TEXT NOT NULL, port INTEGER NOT NULL,
            pid INTEGER NOT NULL, comm TEXT NOT NULL, uid INTEGER NOT NULL,
            state TEXT NOT NULL, holders INTEGER NOT NULL,
            first_seen INTEGER NOT NULL, last_change INTEGER NOT NULL,
            PRIMARY KEY (netns, protocol, family, address, port)
        ) WITHOUT ROWID;
        CREATE TABLE sockets (
            cookie INTEGER PRIMARY KEY,
            netns INTEGER NOT NULL, protocol TEXT NOT NULL, family TEXT NOT NULL,
            address TEXT NOT NULL, port INTEGER NOT NULL
        );
        CREATE TABLE counters (
            name TEXT NOT NULL, label TEXT NOT NULL, value INTEGER NOT NULL,
            PRIMARY KEY (name, label)
        ) WITHOUT ROWID;
        CREATE TABLE history (
            id INTEGER PRIMARY KEY, time INTEGER NOT NULL, action TEXT NOT NULL,
            netns INTEGER NOT NULL, protocol TEXT NOT NULL, family TEXT NOT NULL,
            address TEXT NOT NULL, port INTEGER NOT NULL,
            pid INTEGER NOT NULL, comm TEXT NOT NULL, uid INTEGER NOT NULL, state TEXT NOT NULL,
            opened INTEGER NOT NULL
        );
        CREATE INDEX history_by_time ON history (time);
        CREATE INDEX history_by_port ON history (port, time);
        """,
        // Why a port was closed: released, connected (a client now), shutdown, resync.
        "ALTER TABLE history ADD COLUMN reason TEXT NOT NULL DEFAULT ''",
        // Who holds the port beyond the process: systemd unit, container, Kubernetes pod.
        ["bindings", "history"].flatMap { table in
            ["unit", "container_id", "pod", "namespace", "container"].map {
                "ALTER TABLE \(table) ADD COLUMN \($0) TEXT NOT NULL DEFAULT '';"
            }
        }.joined(separator: "\n"),
        // Transient listeners (action 'transient'): how long they lived, how many one record
        // stands for, and the highest port when they used several.
        """
        ALTER TABLE history ADD COLUMN lifetime INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE history ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE history ADD COLUMN port_max INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX history_by_action ON history (action, time);
        """,
        // Every history write went into four b-trees, the port index at a random place each
        // time. Reads by port are bounded by a period and go through the time index; the
        // transient gauges read a partial index that only transient records enter.
        """
        DROP INDEX history_by_port;
        DROP INDEX history_by_action;
        CREATE INDEX history_transients ON history (time) WHERE action = 'transient';
        """,
        // A row keeps one of its sockets (most have only one): opening and closing a port
        // writes the row alone, and the sockets table lists only a row's other sockets.
        "ALTER TABLE bindings ADD COLUMN cookie INTEGER NOT NULL DEFAULT 0",
        // The exact ports of a folded transient record: its listed ports between port and
        // port_max (2 bytes each, big-endian; NULL when there are none), and how many of its
        // transients used a port not listed. A record written before knew its two ends only.
        """
        ALTER TABLE history ADD COLUMN ports BLOB;
        ALTER TABLE history ADD COLUMN ports_unlisted INTEGER NOT NULL DEFAULT 0;
        UPDATE history SET ports_unlisted = count - 2 WHERE action = 'transient' AND port_max > port AND count > 2;
        """,
        // The holder's executable (/proc/PID/exe; '' when not known).
        """
        ALTER TABLE bindings ADD COLUMN exe TEXT NOT NULL DEFAULT '';
        ALTER TABLE history ADD COLUMN exe TEXT NOT NULL DEFAULT '';
        """,
        // The keys of the rows each commit wrote or deleted, in order: a scrape reads the rows
        // changed since it last looked instead of the whole table. The newest entries are kept
        // (see `Store.rowLogKept`); a reader that fell further behind reads the whole table.
        """
        CREATE TABLE row_log (
            seq INTEGER PRIMARY KEY,
            netns INTEGER NOT NULL, protocol TEXT NOT NULL, family TEXT NOT NULL,
            address TEXT NOT NULL, port INTEGER NOT NULL
        );
        """,
    ]

    static var version: Int { migrations.count }
}
