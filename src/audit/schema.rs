//! The audit database schema and its migrations (`PRAGMA user_version`).

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    r#"
-- What an incident is about when several nodegroups share one broken resource (a key, a route
-- table): events of every nodegroup with the same cause and subject join one incident.
ALTER TABLE incidents ADD COLUMN subject TEXT;
CREATE INDEX incidents_by_subject ON incidents (account, region, cause, subject, updated_at);
CREATE TABLE incident_nodegroups (
    incident_id TEXT NOT NULL,
    cluster     TEXT NOT NULL,
    nodegroup   TEXT NOT NULL,
    PRIMARY KEY (incident_id, cluster, nodegroup)
);

-- Plans waiting for, or decided by, a human. An approval binds to the plan id (a content hash).
CREATE TABLE plans (
    plan_id         TEXT PRIMARY KEY,
    incident_id     TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    plan            TEXT NOT NULL,
    trigger         TEXT NOT NULL,
    decided_by      TEXT,
    decided_at      TEXT,
    decision_reason TEXT
);
CREATE INDEX plans_by_status ON plans (status, updated_at);

-- Switches an operator flips without a restart (the kill switch).
CREATE TABLE controls (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL,
    set_by TEXT,
    at     TEXT NOT NULL,
    reason TEXT
);

-- Every mutation applied, for cooldowns and rate limits.
CREATE TABLE mutations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    account     TEXT NOT NULL,
    resource    TEXT NOT NULL,
    fix         TEXT NOT NULL,
    incident_id TEXT NOT NULL
);
CREATE INDEX mutations_by_account ON mutations (account, at);
CREATE INDEX mutations_by_resource ON mutations (resource, fix, at);

-- Failed fixes and verifications by scope, and the breakers they open.
CREATE TABLE breaker_failures (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    scope       TEXT NOT NULL,
    at          TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX breaker_failures_by_scope ON breaker_failures (scope, at);
CREATE TABLE breakers (
    scope     TEXT PRIMARY KEY,
    state     TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    reason    TEXT NOT NULL,
    closed_at TEXT,
    closed_by TEXT,
    -- A reset forgives the failures up to this breaker_failures.seq (clocks tie; sequences do not).
    forgiven_through INTEGER NOT NULL DEFAULT 0
);
"#,
    r#"
-- Who works a nodegroup (or a shared resource) now, across processes on one database.
CREATE TABLE leases (
    key           TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
"#,
    r#"
-- Records from here on hash their chain and sequence number too (version 2).
ALTER TABLE records ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 1;
-- The chain's newest record as the last write left it, signed (mac) with audit.anchor_key when
-- one is set: a file rewritten without the key cannot sign a shortened or recomputed chain.
CREATE TABLE chain_heads (
    chain TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL,
    at    TEXT NOT NULL,
    mac   TEXT
);
INSERT INTO chain_heads (chain, seq, hash, at)
    SELECT 'global', seq, hash, at FROM records ORDER BY seq DESC LIMIT 1;
"#,
    r#"
-- Whether an incident's last run died is asked for every event of its nodegroup: the newest
-- record of a kind, found without reading an incident that a storm of events keeps joining.
CREATE INDEX records_by_incident_kind ON records (incident_id, kind, seq);
"#,
];

/// Brings the schema up to date. Each step reads the version inside its own IMMEDIATE transaction,
/// so that replicas starting together on one database migrate it once, not once each.
pub fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    loop {
        let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let Some(migration) = MIGRATIONS.get(version.max(0) as usize) else {
            return tx.commit();
        };
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}
