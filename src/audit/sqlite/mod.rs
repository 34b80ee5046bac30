//! The SQLite backend: one database file, one writer (a process-wide connection behind a mutex),
//! every write one transaction committed with `synchronous=FULL`. The audit records form one
//! chain (`global`), guarded by triggers that refuse updates and deletes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::backend::{
    BreakerFailure, ChainBreak, ChainHead, EventMark, IncidentPlan, Lease, LeaseClaim, Member,
    MutationRow, NewIncident, NewRecord, PlanSave, PlanStatusChange, PlanWrite, ReadWork, Reads,
    StepChange, StoreResult, StoredPlan, SubjectScope, WriteWork, Writes,
};
use super::control::{Breaker, KillSwitch, PlanRow, PlanStatus};
use super::schema;
use super::store::{GENESIS, chain_hash, chain_hash_v2, head_mac};
use super::*;
use crate::core::mac_key::MacKey;
use crate::core::time::now;

mod reads;
mod writes;

pub(super) const KILL_SWITCH: &str = "kill_switch";
/// SQLite keeps one chain.
pub(super) const GLOBAL_CHAIN: &str = "global";

pub struct SqliteBackend {
    connection: Mutex<Connection>,
    /// Reads go through a connection of their own when the file is in WAL mode, where a reader
    /// sees the last commit without waiting: on the writer's they queued behind every commit's
    /// fsync (`synchronous=FULL`). In rollback-journal mode readers and the writer block each
    /// other anyway, so reads share the writer's connection.
    reader: Option<Mutex<Connection>>,
    path: PathBuf,
    /// Signs the chain's head after every write (`audit.anchor_key`).
    anchor: std::sync::OnceLock<MacKey>,
}

impl SqliteBackend {
    pub fn open(path: &Path, journal_mode: &str) -> Result<Self, AuditError> {
        let open_error = |source| AuditError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut connection = Connection::open(path).map_err(open_error)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_error)?;
        // Replicas starting together on a new file race to switch it to WAL and migrate it; the
        // loser can get "database is locked" without SQLite's busy handler ever waiting (the
        // switch takes an exclusive lock, and a read upgrading to a write is refused), so the
        // opening is retried for a bounded time instead of the daemon exiting.
        let deadline = std::time::Instant::now() + OPEN_BUSY_PATIENCE;
        loop {
            match prepare(&mut connection, journal_mode) {
                Ok(()) => break,
                Err(error) if is_busy(&error) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(error) => return Err(open_error(error)),
            }
        }
        let in_wal_mode = connection
            .pragma_query_value(None, "journal_mode", |row| row.get::<_, String>(0))
            .map_err(open_error)?
            .eq_ignore_ascii_case("wal");
        let reader = if in_wal_mode {
            Some(Mutex::new(open_reader(path).map_err(open_error)?))
        } else {
            None
        };
        Ok(Self {
            connection: Mutex::new(connection),
            reader,
            path: path.to_path_buf(),
            anchor: std::sync::OnceLock::new(),
        })
    }

    /// Signs the chain's head with `key` from now on.
    pub fn anchor_with(&self, key: MacKey) {
        let _ = self.anchor.set(key);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `work` in one IMMEDIATE transaction (so that another process's writer waits instead
    /// of failing mid-transaction) and commits it.
    pub fn write<T>(&self, work: WriteWork<'_, T>) -> StoreResult<T> {
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = work(&transaction)?;
        move_head(&transaction, self.anchor.get())?;
        transaction.commit()?;
        Ok(value)
    }

    pub fn read<T>(&self, work: ReadWork<'_, T>) -> StoreResult<T> {
        match &self.reader {
            Some(reader) => {
                let connection = reader
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                work(&*connection)
            }
            None => work(&*self.lock()),
        }
    }
}

/// A connection that only reads (`query_only`: a read that tried to write would fail, not
/// write outside the writer's transactions).
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let reader = Connection::open(path)?;
    reader.busy_timeout(std::time::Duration::from_secs(5))?;
    reader.pragma_update(None, "query_only", true)?;
    Ok(reader)
}

/// How long a replica keeps trying to open a file another replica is setting up.
const OPEN_BUSY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

fn prepare(connection: &mut Connection, journal_mode: &str) -> rusqlite::Result<()> {
    connection.pragma_update(None, "journal_mode", journal_mode)?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    schema::migrate(connection)
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Moves the chain's head to its newest record, signed when there is a key, in the transaction
/// that appended: the head is what `verify` measures the chain's end against.
fn move_head(transaction: &Transaction<'_>, key: Option<&MacKey>) -> StoreResult<()> {
    let newest: Option<(i64, String)> = transaction
        .query_row(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((seq, hash)) = newest else {
        return Ok(());
    };
    let head: Option<(i64, Option<String>)> = transaction
        .query_row(
            "SELECT seq, mac FROM chain_heads WHERE chain = ?1",
            params![GLOBAL_CHAIN],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    // Unchanged, and signed if it can be: nothing to write.
    if head
        .as_ref()
        .is_some_and(|(at_seq, mac)| *at_seq == seq && (mac.is_some() || key.is_none()))
    {
        return Ok(());
    }
    let at = now();
    let mac = key.map(|key| head_mac(key, GLOBAL_CHAIN, seq, &hash, &at));
    transaction.execute(
        "INSERT INTO chain_heads (chain, seq, hash, at, mac) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, at = excluded.at, mac = excluded.mac",
        params![GLOBAL_CHAIN, seq, hash, at, mac],
    )?;
    Ok(())
}

/// An enum column (an outcome, a plan status): its text, parsed where it is read. A value this
/// build does not know is an error, not a default.
pub(super) fn enum_column<T>(
    row: &rusqlite::Row<'_>,
    index: usize,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown value {text:?}").into(),
        )
    })
}

pub(super) const SUMMARY_COLUMNS: &str = "incident_id, account, region, cluster, nodegroup, cause, mode, outcome, summary, plan_id, opened_at, updated_at";

pub(super) fn summaries(
    connection: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<IncidentSummary>, AuditError> {
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map(params, |row| {
        Ok(IncidentSummary {
            incident_id: row.get(0)?,
            account: row.get(1)?,
            region: row.get(2)?,
            cluster: row.get(3)?,
            nodegroup: row.get(4)?,
            cause: row.get(5)?,
            mode: row.get(6)?,
            outcome: enum_column(row, 7, Outcome::parse)?,
            summary: row.get(8)?,
            plan_id: row.get(9)?,
            opened_at: row.get(10)?,
            updated_at: row.get(11)?,
            events: 0,
            actions: Vec::new(),
            nodegroups: Vec::new(),
        })
    })?;
    let mut found = rows.collect::<Result<Vec<_>, _>>()?;
    for incident in &mut found {
        incident.events = connection.query_row(
            "SELECT COUNT(*) FROM events WHERE incident_id = ?1",
            params![incident.incident_id],
            |row| row.get(0),
        )?;
        incident.nodegroups = connection.incident_nodegroups(&incident.incident_id)?;
        let mut steps = connection.prepare(
            "SELECT kind, status, detail FROM incident_steps WHERE incident_id = ?1 ORDER BY position",
        )?;
        incident.actions = steps
            .query_map(params![incident.incident_id], |row| {
                Ok(ActionSummary {
                    kind: row.get(0)?,
                    status: row.get(1)?,
                    detail: row.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
    }
    Ok(found)
}

type RowResult = Result<Record, AuditError>;

pub(super) fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let body: String = row.get(5)?;
    let record = serde_json::from_str(&body)
        .map_err(AuditError::from)
        .map(|body| Record {
            seq: row.get(0).unwrap_or_default(),
            at: row.get(1).unwrap_or_default(),
            incident_id: row.get(2).unwrap_or_default(),
            event_id: row.get(3).unwrap_or_default(),
            kind: row.get(4).unwrap_or_default(),
            body,
            prev_hash: row.get(6).unwrap_or_default(),
            hash: row.get(7).unwrap_or_default(),
            chain: "global".into(),
        });
    Ok(record)
}

pub(super) fn records_where(
    connection: &Connection,
    condition: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Record>, AuditError> {
    let mut statement = connection.prepare(&format!(
        "SELECT seq, at, incident_id, event_id, kind, body, prev_hash, hash FROM records {condition}"
    ))?;
    let rows = statement.query_map(params, record_from_row)?;
    let mut records = Vec::new();
    for row in rows {
        records.push(row??);
    }
    Ok(records)
}

pub(super) const PLAN_COLUMNS: &str = "p.plan_id, p.incident_id, p.status, p.created_at, p.updated_at, p.plan, p.trigger, p.decided_by, \
                            p.decided_at, p.decision_reason, i.cluster, i.nodegroup, i.cause";

pub(super) fn plan_rows(
    connection: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<PlanRow>, AuditError> {
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map(params, |row| {
        let plan: String = row.get(5)?;
        let trigger: String = row.get(6)?;
        Ok((
            plan,
            trigger,
            PlanRow {
                plan_id: row.get(0)?,
                incident_id: row.get(1)?,
                status: enum_column(row, 2, PlanStatus::parse)?,
                created_at: row.get(3)?,
                updated_at: row.get(4)?,
                plan: Value::Null,
                trigger: Value::Null,
                decided_by: row.get(7)?,
                decided_at: row.get(8)?,
                decision_reason: row.get(9)?,
                cluster: row.get(10)?,
                nodegroup: row.get(11)?,
                cause: row.get(12)?,
            },
        ))
    })?;
    let mut found = Vec::new();
    for row in rows {
        let (plan, trigger, mut entry) = row?;
        entry.plan = serde_json::from_str(&plan)?;
        entry.trigger = serde_json::from_str(&trigger)?;
        found.push(entry);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditStore;
    use serde_json::json;

    fn store() -> (AuditStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("nodemedic-sqlite-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.db");
        (AuditStore::open(&path).unwrap(), dir)
    }

    fn path_of(dir: &Path) -> PathBuf {
        dir.join("audit.db")
    }

    #[test]
    fn a_read_does_not_wait_for_a_write_in_progress() {
        let (store, dir) = store();
        let (writing, write_started) = std::sync::mpsc::channel();
        let (finish_write, may_finish) = std::sync::mpsc::channel::<()>();
        let may_finish = Mutex::new(may_finish);
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                store.write_blocking(|tx| {
                    tx.append(None, None, RecordKind::EventIgnored, &json!({"x": 1}))?;
                    let _ = writing.send(());
                    let _ = may_finish.lock().unwrap().recv();
                    Ok(())
                })
            })
        };
        write_started.recv().unwrap();
        let (read_done, read_result) = std::sync::mpsc::channel();
        let reader = store.clone();
        std::thread::spawn(move || {
            let _ = read_done.send(reader.read_blocking(|reads| reads.all_records(0)));
        });
        let read = read_result.recv_timeout(std::time::Duration::from_secs(10));
        finish_write.send(()).unwrap();
        writer.join().unwrap().unwrap();
        let records = read
            .expect("the read answered while the write was open")
            .unwrap();
        assert!(records.is_empty(), "a read sees only what is committed");
        assert_eq!(
            store
                .read_blocking(|reads| reads.all_records(0))
                .unwrap()
                .len(),
            1
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn records_cannot_be_changed_or_deleted() {
        let (store, dir) = store();
        store
            .write_blocking(|tx| tx.append(None, None, RecordKind::EventIgnored, &json!({"x": 1})))
            .unwrap();
        let connection = Connection::open(path_of(&dir)).unwrap();
        let update = connection.execute("UPDATE records SET body = '{}'", []);
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = connection.execute("DELETE FROM records", []);
        assert!(delete.unwrap_err().to_string().contains("append-only"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_replica_opening_while_another_holds_the_new_file_waits_for_it() {
        let dir = std::env::temp_dir().join(format!("nodemedic-sqlite-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_of(&dir);
        // Another process holding the fresh file (as a replica switching it to WAL does).
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            holder.execute_batch("COMMIT").unwrap();
        });
        let opened = SqliteBackend::open(&path, "wal");
        release.join().unwrap();
        assert!(opened.is_ok(), "{:?}", opened.err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn replicas_starting_together_on_a_new_file_all_open_it() {
        for _ in 0..20 {
            let dir =
                std::env::temp_dir().join(format!("nodemedic-sqlite-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = path_of(&dir);
            let opened: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || SqliteBackend::open(&path, "wal").map(|_| ()))
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|opening| opening.join().unwrap())
                .collect();
            assert!(opened.iter().all(Result::is_ok), "{opened:?}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn tampering_below_the_triggers_is_detected() {
        let (store, dir) = store();
        store
            .write_blocking(|tx| {
                tx.append(None, None, RecordKind::EventIgnored, &json!({"x": 1}))?;
                tx.append(None, None, RecordKind::EventIgnored, &json!({"x": 2}))
            })
            .unwrap();
        let connection = Connection::open(path_of(&dir)).unwrap();
        connection
            .execute_batch(
                "DROP TRIGGER records_are_append_only_update; UPDATE records SET body = '{\"x\":9}' WHERE seq = 1;",
            )
            .unwrap();
        let verified = store.read_blocking(|r| r.verify_chain()).unwrap();
        assert_eq!(
            verified,
            Err(ChainBreak {
                chain: "global".into(),
                seq: 1,
                why: "hash does not match the record's content".into()
            })
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let error = AuditStore::open(Path::new("/nonexistent/dir/audit.db")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/dir/audit.db"));
    }

    #[test]
    fn two_processes_on_one_file_share_leases() {
        let (first, dir) = store();
        let second = AuditStore::open(&path_of(&dir)).unwrap();
        let take = |store: &AuditStore, holder: &'static str, now: i64| {
            store
                .write_blocking(move |tx| tx.acquire_lease("nodegroup:a", holder, now, now + 1000))
                .unwrap()
        };
        assert!(take(&first, "replica-1", 0));
        assert!(!take(&second, "replica-2", 10), "held by the other replica");
        assert!(take(&first, "replica-1", 20), "renewed by its holder");
        assert!(take(&second, "replica-2", 1020), "expired: taken over");
        second
            .write_blocking(|tx| tx.release_lease("nodegroup:a", "replica-2"))
            .unwrap();
        assert!(take(&first, "replica-1", 1030), "released");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
