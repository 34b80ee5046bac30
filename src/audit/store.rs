//! The SQLite store behind the audit trail. Every write is one transaction that appends records
//! and updates the incident index together, committed with `synchronous=FULL` before it returns:
//! a message is deleted only after this returns.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

use super::schema;
use super::*;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A timestamp that sorts as text: UTC, milliseconds, always the same width.
pub fn timestamp(at: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

pub fn now() -> String {
    timestamp(OffsetDateTime::now_utc())
}

#[derive(Clone)]
pub struct AuditStore {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditStore")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditStore {
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        Self::open_with_journal(path, "wal")
    }

    /// Opens with an SQLite journal mode: `wal` (the default), or `delete` for a database on a
    /// network filesystem (EFS, NFS), where WAL's shared memory index is not safe.
    pub fn open_with_journal(path: &Path, journal_mode: &str) -> Result<Self, AuditError> {
        let open_error = |source| AuditError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut connection = Connection::open(path).map_err(open_error)?;
        connection
            .pragma_update(None, "journal_mode", journal_mode)
            .map_err(open_error)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_error)?;
        schema::migrate(&mut connection).map_err(open_error)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `work` in one transaction and commits it.
    pub fn write_blocking<T>(
        &self,
        work: impl FnOnce(&Tx) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let tx = Tx { inner: transaction };
        let value = work(&tx)?;
        tx.inner.commit()?;
        Ok(value)
    }

    pub fn read_blocking<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        let connection = self.lock();
        work(&connection)
    }

    /// [`write_blocking`](Self::write_blocking) off the async runtime's threads.
    pub async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Tx) -> Result<T, AuditError> + Send + 'static,
    ) -> Result<T, AuditError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write_blocking(work))
            .await
            .map_err(|e| AuditError::Task(e.to_string()))?
    }

    pub async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, AuditError> + Send + 'static,
    ) -> Result<T, AuditError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(work))
            .await
            .map_err(|e| AuditError::Task(e.to_string()))?
    }
}

/// One open write transaction.
pub struct Tx<'a> {
    inner: rusqlite::Transaction<'a>,
}

impl Tx<'_> {
    /// Reads inside the transaction see what it already wrote.
    pub fn connection(&self) -> &Connection {
        &self.inner
    }

    /// Appends a record to the chain.
    pub fn append(
        &self,
        incident_id: Option<&str>,
        event_id: Option<&str>,
        kind: RecordKind,
        body: &Value,
    ) -> Result<i64, AuditError> {
        let prev_hash: String = self
            .inner
            .query_row(
                "SELECT hash FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or_else(|| GENESIS.to_string());
        let at = now();
        let body_text = serde_json::to_string(body)?;
        let hash = chain_hash(
            &prev_hash,
            &at,
            incident_id,
            event_id,
            kind.as_str(),
            &body_text,
        );
        self.inner.execute(
            "INSERT INTO records (at, incident_id, event_id, kind, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![at, incident_id, event_id, kind.as_str(), body_text, prev_hash, hash],
        )?;
        Ok(self.inner.last_insert_rowid())
    }

    /// Remembers what became of an event id (first disposition wins).
    pub fn mark_event(
        &self,
        event_id: &str,
        message_id: Option<&str>,
        disposition: &str,
        incident_id: Option<&str>,
    ) -> Result<(), AuditError> {
        self.inner.execute(
            "INSERT OR IGNORE INTO events (event_id, message_id, received_at, disposition, incident_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![event_id, message_id, now(), disposition, incident_id],
        )?;
        Ok(())
    }

    /// Opens an incident; `subject` names the shared resource when the cause is one (a key, a
    /// route table), so that other nodegroups' events join it.
    pub fn open_incident(
        &self,
        incident_id: &str,
        key: &NodegroupKey,
        cause: &str,
        subject: Option<&str>,
        mode: &str,
        summary: &str,
    ) -> Result<(), AuditError> {
        let at = now();
        self.inner.execute(
            "INSERT INTO incidents (incident_id, account, region, cluster, nodegroup, cause, mode, outcome, summary, opened_at, updated_at, subject)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
            params![
                incident_id,
                key.account,
                key.region,
                key.cluster,
                key.nodegroup,
                cause,
                mode,
                Outcome::InProgress.as_str(),
                summary,
                at,
                subject
            ],
        )?;
        self.join_nodegroup(incident_id, &key.cluster, &key.nodegroup)
    }

    /// Records that a nodegroup is affected by an incident.
    pub fn join_nodegroup(
        &self,
        incident_id: &str,
        cluster: &str,
        nodegroup: &str,
    ) -> Result<(), AuditError> {
        self.inner.execute(
            "INSERT OR IGNORE INTO incident_nodegroups (incident_id, cluster, nodegroup) VALUES (?1, ?2, ?3)",
            params![incident_id, cluster, nodegroup],
        )?;
        Ok(())
    }

    pub fn set_outcome(
        &self,
        incident_id: &str,
        mode: &str,
        outcome: Outcome,
    ) -> Result<(), AuditError> {
        let changed = self.inner.execute(
            "UPDATE incidents SET mode = ?2, outcome = ?3, updated_at = ?4 WHERE incident_id = ?1",
            params![incident_id, mode, outcome.as_str(), now()],
        )?;
        if changed == 0 {
            return Err(AuditError::NoSuchIncident(incident_id.into()));
        }
        Ok(())
    }

    pub fn set_plan(
        &self,
        incident_id: &str,
        plan_id: &str,
        steps: &[(String, String, String)],
    ) -> Result<(), AuditError> {
        let at = now();
        self.inner.execute(
            "UPDATE incidents SET plan_id = ?2, updated_at = ?3 WHERE incident_id = ?1",
            params![incident_id, plan_id, at],
        )?;
        self.inner.execute(
            "DELETE FROM incident_steps WHERE incident_id = ?1",
            params![incident_id],
        )?;
        for (position, (kind, status, detail)) in steps.iter().enumerate() {
            self.inner.execute(
                "INSERT INTO incident_steps (incident_id, position, kind, status, detail, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![incident_id, position as i64, kind, status, detail, at],
            )?;
        }
        Ok(())
    }

    pub fn set_step(
        &self,
        incident_id: &str,
        position: usize,
        status: &str,
        detail: &str,
    ) -> Result<(), AuditError> {
        self.inner.execute(
            "UPDATE incident_steps SET status = ?3, detail = ?4, updated_at = ?5 WHERE incident_id = ?1 AND position = ?2",
            params![incident_id, position as i64, status, detail, now()],
        )?;
        Ok(())
    }
}

fn chain_hash(
    prev_hash: &str,
    at: &str,
    incident_id: Option<&str>,
    event_id: Option<&str>,
    kind: &str,
    body: &str,
) -> String {
    let mut hasher = Sha256::new();
    for part in [
        prev_hash,
        at,
        incident_id.unwrap_or(""),
        event_id.unwrap_or(""),
        kind,
        body,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize())
}

/// Queries used by the pipeline and the CLI.
pub mod query {
    use super::*;

    pub fn event_seen(
        connection: &Connection,
        event_id: &str,
    ) -> Result<Option<EventSeen>, AuditError> {
        Ok(connection
            .query_row(
                "SELECT disposition, incident_id FROM events WHERE event_id = ?1",
                params![event_id],
                |row| {
                    Ok(EventSeen {
                        disposition: row.get(0)?,
                        incident_id: row.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    const SUMMARY_COLUMNS: &str = "incident_id, account, region, cluster, nodegroup, cause, mode, outcome, summary, plan_id, opened_at, updated_at";

    fn summaries(
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
                outcome: row.get(7)?,
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
            incident.nodegroups = incident_nodegroups(connection, &incident.incident_id)?;
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

    pub fn list(connection: &Connection, limit: usize) -> Result<Vec<IncidentSummary>, AuditError> {
        summaries(
            connection,
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM incidents ORDER BY opened_at DESC, incident_id DESC LIMIT ?1"
            ),
            &[&(limit as i64)],
        )
    }

    pub fn incident(
        connection: &Connection,
        incident_id: &str,
    ) -> Result<Option<IncidentSummary>, AuditError> {
        Ok(summaries(
            connection,
            &format!("SELECT {SUMMARY_COLUMNS} FROM incidents WHERE incident_id = ?1"),
            &[&incident_id],
        )?
        .pop())
    }

    /// The shared resource an incident is about, when it is one.
    pub fn incident_subject(
        connection: &Connection,
        incident_id: &str,
    ) -> Result<Option<String>, AuditError> {
        Ok(connection
            .query_row(
                "SELECT subject FROM incidents WHERE incident_id = ?1",
                params![incident_id],
                |row| row.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Incidents of a cause about a shared resource (any nodegroup), most recently updated first.
    pub fn incidents_for_subject(
        connection: &Connection,
        account: &str,
        region: &str,
        cause: &str,
        subject: &str,
    ) -> Result<Vec<IncidentSummary>, AuditError> {
        summaries(
            connection,
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM incidents WHERE account = ?1 AND region = ?2 AND cause = ?3 \
                 AND subject = ?4 ORDER BY updated_at DESC"
            ),
            &[&account, &region, &cause, &subject],
        )
    }

    /// When a fix was last applied to a shared resource, and in which incident.
    pub fn last_fix_on_subject(
        connection: &Connection,
        account: &str,
        region: &str,
        subject: &str,
    ) -> Result<Option<(String, String)>, AuditError> {
        Ok(connection
            .query_row(
                "SELECT s.incident_id, MAX(s.updated_at) FROM incident_steps s JOIN incidents i USING (incident_id)
                 WHERE i.account = ?1 AND i.region = ?2 AND i.subject = ?3 AND s.status = 'applied'
                 GROUP BY s.incident_id ORDER BY MAX(s.updated_at) DESC LIMIT 1",
                params![account, region, subject],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    /// Nodegroups an incident concerns.
    pub fn incident_nodegroups(
        connection: &Connection,
        incident_id: &str,
    ) -> Result<Vec<String>, AuditError> {
        let mut statement = connection
            .prepare("SELECT cluster || '/' || nodegroup FROM incident_nodegroups WHERE incident_id = ?1 ORDER BY cluster, nodegroup")?;
        let rows = statement.query_map(params![incident_id], |row| row.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }

    /// Incidents of a nodegroup for a cause, most recently updated first.
    pub fn incidents_for(
        connection: &Connection,
        key: &NodegroupKey,
        cause: &str,
    ) -> Result<Vec<IncidentSummary>, AuditError> {
        summaries(
            connection,
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM incidents WHERE account = ?1 AND region = ?2 AND cluster = ?3 \
                 AND nodegroup = ?4 AND cause = ?5 ORDER BY updated_at DESC"
            ),
            &[
                &key.account,
                &key.region,
                &key.cluster,
                &key.nodegroup,
                &cause,
            ],
        )
    }

    /// When a fix was last applied to a nodegroup (the newest applied step), if ever.
    pub fn last_fix_applied(
        connection: &Connection,
        key: &NodegroupKey,
    ) -> Result<Option<(String, String)>, AuditError> {
        Ok(connection
            .query_row(
                "SELECT s.incident_id, MAX(s.updated_at) FROM incident_steps s JOIN incidents i USING (incident_id)
                 WHERE i.account = ?1 AND i.region = ?2 AND i.cluster = ?3 AND i.nodegroup = ?4 AND s.status = 'applied'
                 GROUP BY s.incident_id ORDER BY MAX(s.updated_at) DESC LIMIT 1",
                params![key.account, key.region, key.cluster, key.nodegroup],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    pub fn records(connection: &Connection, incident_id: &str) -> Result<Vec<Record>, AuditError> {
        let mut statement = connection.prepare(
            "SELECT seq, at, incident_id, event_id, kind, body, prev_hash, hash FROM records WHERE incident_id = ?1 ORDER BY seq",
        )?;
        let rows = statement.query_map(params![incident_id], record_from_row)?;
        let mut records = Vec::new();
        for row in rows {
            records.push(row??);
        }
        Ok(records)
    }

    /// Records that belong to no incident (rejected, ignored, healthy), newest first.
    pub fn loose_records(connection: &Connection, limit: usize) -> Result<Vec<Record>, AuditError> {
        let mut statement = connection.prepare(
            "SELECT seq, at, incident_id, event_id, kind, body, prev_hash, hash FROM records WHERE incident_id IS NULL ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = statement.query_map(params![limit as i64], record_from_row)?;
        let mut records = Vec::new();
        for row in rows {
            records.push(row??);
        }
        Ok(records)
    }

    type RowResult = Result<Record, AuditError>;

    fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
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
            });
        Ok(record)
    }

    /// Walks the whole chain; returns the number of records, or the first broken link.
    pub fn verify_chain(connection: &Connection) -> Result<Result<u64, (i64, String)>, AuditError> {
        let mut statement = connection
            .prepare("SELECT seq, at, incident_id, event_id, kind, body, prev_hash, hash FROM records ORDER BY seq")?;
        let mut rows = statement.query([])?;
        let mut expected_prev = GENESIS.to_string();
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let at: String = row.get(1)?;
            let incident: Option<String> = row.get(2)?;
            let event: Option<String> = row.get(3)?;
            let kind: String = row.get(4)?;
            let body: String = row.get(5)?;
            let prev: String = row.get(6)?;
            let hash: String = row.get(7)?;
            if prev != expected_prev {
                return Ok(Err((
                    seq,
                    "prev_hash does not match the previous record".into(),
                )));
            }
            if chain_hash(
                &prev,
                &at,
                incident.as_deref(),
                event.as_deref(),
                &kind,
                &body,
            ) != hash
            {
                return Ok(Err((
                    seq,
                    "hash does not match the record's content".into(),
                )));
            }
            expected_prev = hash;
            count += 1;
        }
        Ok(Ok(count))
    }
}

#[cfg(test)]
mod tests {
    use super::query::*;
    use super::*;
    use serde_json::json;

    fn store() -> (AuditStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("nodemedic-audit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.db");
        (AuditStore::open(&path).unwrap(), dir)
    }

    fn key() -> NodegroupKey {
        NodegroupKey {
            account: "123456789012".into(),
            region: "us-west-2".into(),
            cluster: "eks-workshop".into(),
            nodegroup: "ng-1".into(),
        }
    }

    #[test]
    fn records_chain_and_verify() {
        let (store, dir) = store();
        store
            .write_blocking(|tx| {
                tx.open_incident("inc-1", &key(), "unknown", None, "dry-run", "s")?;
                tx.append(
                    Some("inc-1"),
                    Some("e1"),
                    RecordKind::EventReceived,
                    &json!({"a": 1}),
                )?;
                tx.append(
                    Some("inc-1"),
                    None,
                    RecordKind::Outcome,
                    &json!({"outcome": "planned"}),
                )?;
                tx.append(None, Some("e2"), RecordKind::EventIgnored, &json!({}))?;
                Ok(())
            })
            .unwrap();
        let verified = store.read_blocking(verify_chain).unwrap();
        assert_eq!(verified, Ok(3));
        let records = store.read_blocking(|c| records(c, "inc-1")).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].prev_hash, records[0].hash);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn records_cannot_be_changed_or_deleted() {
        let (store, dir) = store();
        store
            .write_blocking(|tx| tx.append(None, None, RecordKind::EventIgnored, &json!({"x": 1})))
            .unwrap();
        let connection = Connection::open(store.path()).unwrap();
        let update = connection.execute("UPDATE records SET body = '{}'", []);
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = connection.execute("DELETE FROM records", []);
        assert!(delete.unwrap_err().to_string().contains("append-only"));
        std::fs::remove_dir_all(dir).unwrap();
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
        let connection = Connection::open(store.path()).unwrap();
        connection
            .execute_batch(
                "DROP TRIGGER records_are_append_only_update; UPDATE records SET body = '{\"x\":9}' WHERE seq = 1;",
            )
            .unwrap();
        let verified = store.read_blocking(verify_chain).unwrap();
        assert_eq!(
            verified,
            Err((1, "hash does not match the record's content".into()))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let (store, dir) = store();
        let result: Result<(), AuditError> = store.write_blocking(|tx| {
            tx.append(None, Some("e1"), RecordKind::EventIgnored, &json!({}))?;
            tx.mark_event("e1", None, "ignored", None)?;
            Err(AuditError::NoSuchIncident("forced".into()))
        });
        assert!(result.is_err());
        assert_eq!(store.read_blocking(|c| event_seen(c, "e1")).unwrap(), None);
        assert_eq!(store.read_blocking(verify_chain).unwrap(), Ok(0));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_index_lists_incidents_with_their_steps_and_events() {
        let (store, dir) = store();
        store
            .write_blocking(|tx| {
                tx.open_incident(
                    "inc-1",
                    &key(),
                    "subnet_no_egress_route",
                    None,
                    "auto",
                    "no route",
                )?;
                tx.mark_event("e1", Some("m1"), "incident", Some("inc-1"))?;
                tx.mark_event("e1", Some("m2"), "duplicate", Some("inc-1"))?;
                tx.set_plan(
                    "inc-1",
                    "plan-1",
                    &[
                        ("add_nat_route".into(), "planned".into(), String::new()),
                        ("cycle_nodegroup".into(), "planned".into(), String::new()),
                    ],
                )?;
                tx.set_step("inc-1", 0, "applied", "route added")?;
                tx.set_outcome("inc-1", "auto", Outcome::Failed)
            })
            .unwrap();
        let listed = store.read_blocking(|c| list(c, 10)).unwrap();
        assert_eq!(listed.len(), 1);
        let incident = &listed[0];
        assert_eq!(incident.events, 1, "the first disposition of an event wins");
        assert_eq!(incident.outcome, "failed");
        assert_eq!(incident.plan_id.as_deref(), Some("plan-1"));
        assert_eq!(incident.actions[0].status, "applied");
        assert_eq!(incident.actions[1].status, "planned");
        assert_eq!(
            store
                .read_blocking(|c| event_seen(c, "e1"))
                .unwrap()
                .unwrap()
                .disposition,
            "incident"
        );
        let found = store
            .read_blocking(|c| incidents_for(c, &key(), "subnet_no_egress_route"))
            .unwrap();
        assert_eq!(found.len(), 1);
        let fixed = store
            .read_blocking(|c| last_fix_applied(c, &key()))
            .unwrap();
        assert_eq!(fixed.map(|(id, _)| id), Some("inc-1".to_string()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn timestamps_sort_as_text() {
        let early = timestamp(time::macros::datetime!(2024-10-04 18:06:36.5 UTC));
        let late = timestamp(time::macros::datetime!(2024-10-04 18:06:36.75 UTC));
        assert_eq!(early, "2024-10-04T18:06:36.500Z");
        assert!(early < late);
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let error = AuditStore::open(Path::new("/nonexistent/dir/audit.db")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/dir/audit.db"));
    }
}
