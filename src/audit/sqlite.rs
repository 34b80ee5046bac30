//! The SQLite backend: one database file, one writer (a process-wide connection behind a mutex),
//! every write one transaction committed with `synchronous=FULL`. The audit records form one
//! chain (`global`), guarded by triggers that refuse updates and deletes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::backend::{ChainBreak, Lease, Reads, Writes};
use super::control::{Breaker, KillSwitch, PlanRow, PlanStatus};
use super::schema;
use super::store::{GENESIS, chain_hash, now};
use super::*;

const KILL_SWITCH: &str = "kill_switch";

pub struct SqliteBackend {
    connection: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteBackend {
    pub fn open(path: &Path, journal_mode: &str) -> Result<Self, AuditError> {
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
            connection: Mutex::new(connection),
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

    /// Runs `work` in one IMMEDIATE transaction (so that another process's writer waits instead
    /// of failing mid-transaction) and commits it.
    pub fn write<T>(
        &self,
        work: &dyn Fn(&dyn Writes) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = work(&transaction)?;
        transaction.commit()?;
        Ok(value)
    }

    pub fn read<T>(
        &self,
        work: &dyn Fn(&dyn Reads) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        let connection = self.lock();
        work(&*connection)
    }
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
            chain: "global".into(),
        });
    Ok(record)
}

fn records_where(
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

const PLAN_COLUMNS: &str = "p.plan_id, p.incident_id, p.status, p.created_at, p.updated_at, p.plan, p.trigger, p.decided_by, \
                            p.decided_at, p.decision_reason, i.cluster, i.nodegroup, i.cause";

fn plan_rows(
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
                status: row.get(2)?,
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

impl Reads for Connection {
    fn event_seen(&self, event_id: &str) -> Result<Option<EventSeen>, AuditError> {
        Ok(self
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

    fn list(&self, limit: usize) -> Result<Vec<IncidentSummary>, AuditError> {
        summaries(
            self,
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM incidents ORDER BY opened_at DESC, incident_id DESC LIMIT ?1"
            ),
            &[&(limit as i64)],
        )
    }

    fn incident(&self, incident_id: &str) -> Result<Option<IncidentSummary>, AuditError> {
        Ok(summaries(
            self,
            &format!("SELECT {SUMMARY_COLUMNS} FROM incidents WHERE incident_id = ?1"),
            &[&incident_id],
        )?
        .pop())
    }

    fn incident_subject(&self, incident_id: &str) -> Result<Option<String>, AuditError> {
        Ok(self
            .query_row(
                "SELECT subject FROM incidents WHERE incident_id = ?1",
                params![incident_id],
                |row| row.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    fn incidents_for_subject(
        &self,
        account: &str,
        region: &str,
        cause: &str,
        subject: &str,
    ) -> Result<Vec<IncidentSummary>, AuditError> {
        summaries(
            self,
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM incidents WHERE account = ?1 AND region = ?2 AND cause = ?3 \
                 AND subject = ?4 ORDER BY updated_at DESC"
            ),
            &[&account, &region, &cause, &subject],
        )
    }

    fn last_fix_on_subject(
        &self,
        account: &str,
        region: &str,
        subject: &str,
    ) -> Result<Option<(String, String)>, AuditError> {
        Ok(self
            .query_row(
                "SELECT s.incident_id, MAX(s.updated_at) FROM incident_steps s JOIN incidents i USING (incident_id)
                 WHERE i.account = ?1 AND i.region = ?2 AND i.subject = ?3 AND s.status = 'applied'
                 GROUP BY s.incident_id ORDER BY MAX(s.updated_at) DESC LIMIT 1",
                params![account, region, subject],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn incident_nodegroups(&self, incident_id: &str) -> Result<Vec<String>, AuditError> {
        let mut statement = self.prepare(
            "SELECT cluster || '/' || nodegroup FROM incident_nodegroups WHERE incident_id = ?1 ORDER BY cluster, nodegroup",
        )?;
        let rows = statement.query_map(params![incident_id], |row| row.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }

    fn incidents_for(
        &self,
        key: &NodegroupKey,
        cause: &str,
    ) -> Result<Vec<IncidentSummary>, AuditError> {
        summaries(
            self,
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

    fn incidents_of_nodegroup(
        &self,
        key: &NodegroupKey,
        limit: usize,
    ) -> Result<Vec<IncidentSummary>, AuditError> {
        summaries(
            self,
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM incidents WHERE account = ?1 AND region = ?2 AND cluster = ?3 \
                 AND nodegroup = ?4 ORDER BY updated_at DESC LIMIT ?5"
            ),
            &[
                &key.account,
                &key.region,
                &key.cluster,
                &key.nodegroup,
                &(limit as i64),
            ],
        )
    }

    fn last_fix_applied(&self, key: &NodegroupKey) -> Result<Option<(String, String)>, AuditError> {
        Ok(self
            .query_row(
                "SELECT s.incident_id, MAX(s.updated_at) FROM incident_steps s JOIN incidents i USING (incident_id)
                 WHERE i.account = ?1 AND i.region = ?2 AND i.cluster = ?3 AND i.nodegroup = ?4 AND s.status = 'applied'
                 GROUP BY s.incident_id ORDER BY MAX(s.updated_at) DESC LIMIT 1",
                params![key.account, key.region, key.cluster, key.nodegroup],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn records(&self, incident_id: &str) -> Result<Vec<Record>, AuditError> {
        records_where(self, "WHERE incident_id = ?1 ORDER BY seq", &[&incident_id])
    }

    fn loose_records(&self, limit: usize) -> Result<Vec<Record>, AuditError> {
        records_where(
            self,
            "WHERE incident_id IS NULL ORDER BY seq DESC LIMIT ?1",
            &[&(limit as i64)],
        )
    }

    fn all_records(&self, after_seq: i64) -> Result<Vec<Record>, AuditError> {
        records_where(self, "WHERE seq > ?1 ORDER BY seq", &[&after_seq])
    }

    fn verify_chain(&self) -> Result<Result<u64, ChainBreak>, AuditError> {
        let mut statement = self.prepare(
            "SELECT seq, at, incident_id, event_id, kind, body, prev_hash, hash FROM records ORDER BY seq",
        )?;
        let mut rows = statement.query([])?;
        let mut expected_prev = GENESIS.to_string();
        let mut count = 0;
        let broken = |seq: i64, why: &str| ChainBreak {
            chain: "global".into(),
            seq,
            why: why.into(),
        };
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
                return Ok(Err(broken(
                    seq,
                    "prev_hash does not match the previous record",
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
                return Ok(Err(broken(seq, "hash does not match the record's content")));
            }
            expected_prev = hash;
            count += 1;
        }
        Ok(Ok(count))
    }

    fn plans(&self, status: Option<PlanStatus>) -> Result<Vec<PlanRow>, AuditError> {
        match status {
            Some(status) => plan_rows(
                self,
                &format!(
                    "SELECT {PLAN_COLUMNS} FROM plans p JOIN incidents i USING (incident_id) WHERE p.status = ?1 ORDER BY p.updated_at DESC"
                ),
                &[&status.as_str()],
            ),
            None => plan_rows(
                self,
                &format!(
                    "SELECT {PLAN_COLUMNS} FROM plans p JOIN incidents i USING (incident_id) ORDER BY p.updated_at DESC"
                ),
                &[],
            ),
        }
    }

    fn plan(&self, plan_id: &str) -> Result<Option<PlanRow>, AuditError> {
        Ok(plan_rows(
            self,
            &format!(
                "SELECT {PLAN_COLUMNS} FROM plans p JOIN incidents i USING (incident_id) WHERE p.plan_id = ?1"
            ),
            &[&plan_id],
        )?
        .pop())
    }

    fn kill_switch(&self) -> Result<Option<KillSwitch>, AuditError> {
        Ok(self
            .query_row(
                "SELECT set_by, at, reason FROM controls WHERE name = ?1 AND value = 'on'",
                params![KILL_SWITCH],
                |row| {
                    Ok(KillSwitch {
                        set_by: row.get(0)?,
                        at: row.get(1)?,
                        reason: row.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn mutations_since(&self, account: &str, since: &str) -> Result<u32, AuditError> {
        Ok(self.query_row(
            "SELECT COUNT(*) FROM mutations WHERE account = ?1 AND at >= ?2",
            params![account, since],
            |row| row.get(0),
        )?)
    }

    fn last_mutation(
        &self,
        resource: &str,
        fix: &str,
    ) -> Result<Option<(String, String)>, AuditError> {
        Ok(self
            .query_row(
                "SELECT at, incident_id FROM mutations WHERE resource = ?1 AND fix = ?2 ORDER BY seq DESC LIMIT 1",
                params![resource, fix],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn open_breakers(&self, scopes: &[String]) -> Result<Vec<String>, AuditError> {
        let mut open = Vec::new();
        for scope in scopes {
            let is_open: bool = self
                .query_row(
                    "SELECT state = 'open' FROM breakers WHERE scope = ?1",
                    params![scope],
                    |row| row.get(0),
                )
                .optional()?
                .unwrap_or(false);
            if is_open {
                open.push(scope.clone());
            }
        }
        Ok(open)
    }

    fn breakers(&self) -> Result<Vec<Breaker>, AuditError> {
        let mut statement = self.prepare(
            "SELECT scope, state, opened_at, reason, closed_at, closed_by FROM breakers ORDER BY opened_at DESC",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(Breaker {
                scope: row.get(0)?,
                state: row.get(1)?,
                opened_at: row.get(2)?,
                reason: row.get(3)?,
                closed_at: row.get(4)?,
                closed_by: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn lease(&self, key: &str) -> Result<Option<Lease>, AuditError> {
        Ok(self
            .query_row(
                "SELECT key, holder, expires_at_ms FROM leases WHERE key = ?1",
                params![key],
                |row| {
                    Ok(Lease {
                        key: row.get(0)?,
                        holder: row.get(1)?,
                        expires_at_ms: row.get(2)?,
                    })
                },
            )
            .optional()?)
    }
}

impl Writes for Transaction<'_> {
    fn reads(&self) -> &dyn Reads {
        &**self
    }

    fn append(
        &self,
        incident_id: Option<&str>,
        event_id: Option<&str>,
        kind: RecordKind,
        body: &Value,
    ) -> Result<i64, AuditError> {
        let prev_hash: String = self
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
        self.execute(
            "INSERT INTO records (at, incident_id, event_id, kind, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![at, incident_id, event_id, kind.as_str(), body_text, prev_hash, hash],
        )?;
        Ok(self.last_insert_rowid())
    }

    fn mark_event(
        &self,
        event_id: &str,
        message_id: Option<&str>,
        disposition: &str,
        incident_id: Option<&str>,
    ) -> Result<(), AuditError> {
        self.execute(
            "INSERT OR IGNORE INTO events (event_id, message_id, received_at, disposition, incident_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![event_id, message_id, now(), disposition, incident_id],
        )?;
        Ok(())
    }

    fn open_incident(
        &self,
        incident_id: &str,
        key: &NodegroupKey,
        cause: &str,
        subject: Option<&str>,
        mode: &str,
        summary: &str,
    ) -> Result<(), AuditError> {
        let at = now();
        self.execute(
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

    fn join_nodegroup(
        &self,
        incident_id: &str,
        cluster: &str,
        nodegroup: &str,
    ) -> Result<(), AuditError> {
        self.execute(
            "INSERT OR IGNORE INTO incident_nodegroups (incident_id, cluster, nodegroup) VALUES (?1, ?2, ?3)",
            params![incident_id, cluster, nodegroup],
        )?;
        Ok(())
    }

    fn set_outcome(
        &self,
        incident_id: &str,
        mode: &str,
        outcome: Outcome,
    ) -> Result<(), AuditError> {
        let changed = self.execute(
            "UPDATE incidents SET mode = ?2, outcome = ?3, updated_at = ?4 WHERE incident_id = ?1",
            params![incident_id, mode, outcome.as_str(), now()],
        )?;
        if changed == 0 {
            return Err(AuditError::NoSuchIncident(incident_id.into()));
        }
        Ok(())
    }

    fn set_plan(
        &self,
        incident_id: &str,
        plan_id: &str,
        steps: &[(String, String, String)],
    ) -> Result<(), AuditError> {
        let at = now();
        self.execute(
            "UPDATE incidents SET plan_id = ?2, updated_at = ?3 WHERE incident_id = ?1",
            params![incident_id, plan_id, at],
        )?;
        self.execute(
            "DELETE FROM incident_steps WHERE incident_id = ?1",
            params![incident_id],
        )?;
        for (position, (kind, status, detail)) in steps.iter().enumerate() {
            self.execute(
                "INSERT INTO incident_steps (incident_id, position, kind, status, detail, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![incident_id, position as i64, kind, status, detail, at],
            )?;
        }
        Ok(())
    }

    fn set_step(
        &self,
        incident_id: &str,
        position: usize,
        status: &str,
        detail: &str,
    ) -> Result<(), AuditError> {
        self.execute(
            "UPDATE incident_steps SET status = ?3, detail = ?4, updated_at = ?5 WHERE incident_id = ?1 AND position = ?2",
            params![incident_id, position as i64, status, detail, now()],
        )?;
        Ok(())
    }

    fn register_plan(
        &self,
        incident_id: &str,
        plan_id: &str,
        plan: &Value,
        trigger: &Value,
    ) -> Result<bool, AuditError> {
        let at = now();
        let before: Option<String> = self
            .query_row(
                "SELECT status FROM plans WHERE plan_id = ?1",
                params![plan_id],
                |row| row.get(0),
            )
            .optional()?;
        self.execute(
            "UPDATE plans SET status = 'superseded', updated_at = ?3 WHERE incident_id = ?1 AND plan_id != ?2 AND status = 'awaiting_approval'",
            params![incident_id, plan_id, at],
        )?;
        let waiting = PlanStatus::AwaitingApproval.as_str();
        match before.as_deref() {
            None => {
                self.execute(
                    "INSERT INTO plans (plan_id, incident_id, status, created_at, updated_at, plan, trigger) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
                    params![plan_id, incident_id, waiting, at, serde_json::to_string(plan)?, serde_json::to_string(trigger)?],
                )?;
                Ok(true)
            }
            Some(status) if PlanStatus::settled(status) => {
                // The latest event of the same incident is what an approval re-collects for.
                self.execute(
                    "UPDATE plans SET updated_at = ?3, trigger = ?4 WHERE plan_id = ?1 AND incident_id = ?2 AND status = 'awaiting_approval'",
                    params![plan_id, incident_id, at, serde_json::to_string(trigger)?],
                )?;
                Ok(false)
            }
            Some(_) => {
                self.execute(
                    "UPDATE plans SET status = ?2, incident_id = ?3, updated_at = ?4, trigger = ?5,
                         decided_by = NULL, decided_at = NULL, decision_reason = NULL
                     WHERE plan_id = ?1",
                    params![
                        plan_id,
                        waiting,
                        incident_id,
                        at,
                        serde_json::to_string(trigger)?
                    ],
                )?;
                Ok(true)
            }
        }
    }

    fn set_plan_status(
        &self,
        plan_id: &str,
        status: PlanStatus,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), AuditError> {
        let at = now();
        let decided = status.is_decision();
        self.execute(
            "UPDATE plans SET status = ?2, updated_at = ?3,
                 decided_by = CASE WHEN ?6 THEN ?4 ELSE decided_by END,
                 decided_at = CASE WHEN ?6 THEN ?3 ELSE decided_at END,
                 decision_reason = CASE WHEN ?6 THEN ?5 ELSE decision_reason END
             WHERE plan_id = ?1",
            params![plan_id, status.as_str(), at, by, reason, decided],
        )?;
        Ok(())
    }

    fn set_kill_switch(
        &self,
        on: bool,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), AuditError> {
        self.execute(
            "INSERT INTO controls (name, value, set_by, at, reason) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, set_by = excluded.set_by, at = excluded.at, reason = excluded.reason",
            params![KILL_SWITCH, if on { "on" } else { "off" }, by, now(), reason],
        )?;
        Ok(())
    }

    fn reserve_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
        since: &str,
        limit: u32,
    ) -> Result<Option<i64>, AuditError> {
        if self.mutations_since(account, since)? >= limit {
            return Ok(None);
        }
        self.record_mutation(account, resource, fix, incident_id)?;
        Ok(Some(self.last_insert_rowid()))
    }

    fn release_mutation(&self, seq: i64) -> Result<(), AuditError> {
        self.execute("DELETE FROM mutations WHERE seq = ?1", params![seq])?;
        Ok(())
    }

    fn record_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
    ) -> Result<(), AuditError> {
        self.execute(
            "INSERT INTO mutations (at, account, resource, fix, incident_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now(), account, resource, fix, incident_id],
        )?;
        Ok(())
    }

    fn record_breaker_failure(
        &self,
        scopes: &[String],
        incident_id: &str,
        reason: &str,
        threshold_for: &dyn Fn(&str) -> u32,
        window_start: &str,
    ) -> Result<Vec<String>, AuditError> {
        let at = now();
        let mut opened = Vec::new();
        for scope in scopes {
            self.execute(
                "INSERT INTO breaker_failures (scope, at, incident_id, reason) VALUES (?1, ?2, ?3, ?4)",
                params![scope, at, incident_id, reason],
            )?;
            if !self.open_breakers(std::slice::from_ref(scope))?.is_empty() {
                continue;
            }
            // Failures in the window, after those the last reset forgave.
            let forgiven: i64 = self
                .query_row(
                    "SELECT forgiven_through FROM breakers WHERE scope = ?1",
                    params![scope],
                    |row| row.get(0),
                )
                .optional()?
                .unwrap_or(0);
            let failures: u32 = self.query_row(
                "SELECT COUNT(*) FROM breaker_failures WHERE scope = ?1 AND at >= ?2 AND seq > ?3",
                params![scope, window_start, forgiven],
                |row| row.get(0),
            )?;
            if failures >= threshold_for(scope) {
                self.execute(
                    "INSERT INTO breakers (scope, state, opened_at, reason) VALUES (?1, 'open', ?2, ?3)
                     ON CONFLICT (scope) DO UPDATE SET state = 'open', opened_at = excluded.opened_at, reason = excluded.reason,
                         closed_at = NULL, closed_by = NULL",
                    params![scope, at, format!("{failures} failures since {window_start}: {reason}")],
                )?;
                opened.push(scope.clone());
            }
        }
        Ok(opened)
    }

    fn reset_breaker(&self, scope: &str, by: &str) -> Result<bool, AuditError> {
        let changed = self.execute(
            "UPDATE breakers SET state = 'closed', closed_at = ?2, closed_by = ?3,
                 forgiven_through = (SELECT COALESCE(MAX(seq), 0) FROM breaker_failures WHERE scope = ?1)
             WHERE scope = ?1 AND state = 'open'",
            params![scope, now(), by],
        )?;
        Ok(changed > 0)
    }

    fn acquire_lease(
        &self,
        key: &str,
        holder: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<bool, AuditError> {
        let changed = self.execute(
            "INSERT INTO leases (key, holder, expires_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= ?4",
            params![key, holder, expires_at_ms, now_ms],
        )?;
        Ok(changed > 0)
    }

    fn release_lease(&self, key: &str, holder: &str) -> Result<(), AuditError> {
        self.execute(
            "DELETE FROM leases WHERE key = ?1 AND holder = ?2",
            params![key, holder],
        )?;
        Ok(())
    }
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
