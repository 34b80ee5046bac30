//! The audit database schema and its migrations (`PRAGMA user_version`).

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE records (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    incident_id TEXT,
    event_id    TEXT,
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX records_by_incident ON records (incident_id, seq);
CREATE TRIGGER records_are_append_only_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER records_are_append_only_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;

CREATE TABLE incidents (
    incident_id TEXT PRIMARY KEY,
    account     TEXT NOT NULL,
    region      TEXT NOT NULL,
    cluster     TEXT NOT NULL,
    nodegroup   TEXT NOT NULL,
    cause       TEXT NOT NULL,
    mode        TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    summary     TEXT NOT NULL,
    plan_id     TEXT,
    opened_at   TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX incidents_by_nodegroup ON incidents (account, region, cluster, nodegroup, cause, updated_at);

CREATE TABLE incident_steps (
    incident_id TEXT NOT NULL,
    position    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (incident_id, position)
);

CREATE TABLE events (
    event_id    TEXT PRIMARY KEY,
    message_id  TEXT,
    received_at TEXT NOT NULL,
    disposition TEXT NOT NULL,
    incident_id TEXT
);
CREATE INDEX events_by_incident ON events (incident_id);
"#];

pub fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = connection.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
