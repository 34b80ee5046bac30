//! The guard's memory in the store: plans and their approvals, the kill switch, the mutations
//! applied (cooldowns, rate limits), and circuit breakers. Writes go through [`Tx`] so that they
//! commit with the audit records that explain them.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AuditError;
use super::store::{Tx, now};

/// Where a plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// At least one step waits for a human.
    AwaitingApproval,
    Approved,
    Rejected,
    /// Approved but not acted on within the approval TTL.
    Expired,
    /// The world changed after approval: the plan no longer matches it.
    Stale,
    /// A newer plan replaced it before anyone decided.
    Superseded,
    Applied,
    /// Approved and run, but a step failed or verification failed and it was rolled back.
    Failed,
    /// Approved, but the guard refused a step (scope, breaker, fix policy `never`).
    Refused,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::AwaitingApproval => "awaiting_approval",
            PlanStatus::Approved => "approved",
            PlanStatus::Rejected => "rejected",
            PlanStatus::Expired => "expired",
            PlanStatus::Stale => "stale",
            PlanStatus::Superseded => "superseded",
            PlanStatus::Applied => "applied",
            PlanStatus::Failed => "failed",
            PlanStatus::Refused => "refused",
        }
    }

    pub fn parse(text: &str) -> Option<PlanStatus> {
        [
            PlanStatus::AwaitingApproval,
            PlanStatus::Approved,
            PlanStatus::Rejected,
            PlanStatus::Expired,
            PlanStatus::Stale,
            PlanStatus::Superseded,
            PlanStatus::Applied,
            PlanStatus::Failed,
            PlanStatus::Refused,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A plan as the approval workflow sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRow {
    pub plan_id: String,
    pub incident_id: String,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub plan: Value,
    pub trigger: Value,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub decision_reason: Option<String>,
    pub cluster: String,
    pub nodegroup: String,
    pub cause: String,
}

/// The kill switch when it is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillSwitch {
    pub set_by: Option<String>,
    pub at: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    pub scope: String,
    pub state: String,
    pub opened_at: String,
    pub reason: String,
    pub closed_at: Option<String>,
    pub closed_by: Option<String>,
}

const KILL_SWITCH: &str = "kill_switch";

impl Tx<'_> {
    /// Records a plan waiting for approval; a plan already waiting for the same incident is
    /// superseded by the new one. A plan that comes back after it expired, went stale, was
    /// superseded, applied, failed or refused waits again, for this incident and trigger, with
    /// its old decision cleared. Returns whether the plan is newly waiting (and so announced):
    /// false when it was already waiting, is approved, or was rejected.
    pub fn register_plan(
        &self,
        incident_id: &str,
        plan_id: &str,
        plan: &Value,
        trigger: &Value,
    ) -> Result<bool, AuditError> {
        let at = now();
        let before: Option<String> = self
            .connection()
            .query_row(
                "SELECT status FROM plans WHERE plan_id = ?1",
                params![plan_id],
                |row| row.get(0),
            )
            .optional()?;
        self.connection().execute(
            "UPDATE plans SET status = 'superseded', updated_at = ?3 WHERE incident_id = ?1 AND plan_id != ?2 AND status = 'awaiting_approval'",
            params![incident_id, plan_id, at],
        )?;
        let waiting = PlanStatus::AwaitingApproval.as_str();
        let settled = |status: &str| {
            [
                PlanStatus::AwaitingApproval,
                PlanStatus::Approved,
                PlanStatus::Rejected,
            ]
            .iter()
            .any(|s| s.as_str() == status)
        };
        match before.as_deref() {
            None => {
                self.connection().execute(
                    "INSERT INTO plans (plan_id, incident_id, status, created_at, updated_at, plan, trigger) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
                    params![plan_id, incident_id, waiting, at, serde_json::to_string(plan)?, serde_json::to_string(trigger)?],
                )?;
                Ok(true)
            }
            Some(status) if settled(status) => {
                // The latest event of the same incident is what an approval re-collects for.
                self.connection().execute(
                    "UPDATE plans SET updated_at = ?3, trigger = ?4 WHERE plan_id = ?1 AND incident_id = ?2 AND status = 'awaiting_approval'",
                    params![plan_id, incident_id, at, serde_json::to_string(trigger)?],
                )?;
                Ok(false)
            }
            Some(_) => {
                self.connection().execute(
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

    pub fn set_plan_status(
        &self,
        plan_id: &str,
        status: PlanStatus,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), AuditError> {
        let at = now();
        let decided = matches!(status, PlanStatus::Approved | PlanStatus::Rejected);
        self.connection().execute(
            "UPDATE plans SET status = ?2, updated_at = ?3,
                 decided_by = CASE WHEN ?6 THEN ?4 ELSE decided_by END,
                 decided_at = CASE WHEN ?6 THEN ?3 ELSE decided_at END,
                 decision_reason = CASE WHEN ?6 THEN ?5 ELSE decision_reason END
             WHERE plan_id = ?1",
            params![plan_id, status.as_str(), at, by, reason, decided],
        )?;
        Ok(())
    }

    pub fn set_kill_switch(
        &self,
        on: bool,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), AuditError> {
        self.connection().execute(
            "INSERT INTO controls (name, value, set_by, at, reason) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, set_by = excluded.set_by, at = excluded.at, reason = excluded.reason",
            params![KILL_SWITCH, if on { "on" } else { "off" }, by, now(), reason],
        )?;
        Ok(())
    }

    /// Reserves a mutation before it is made, so that concurrent handlers see it in the hourly
    /// count and the cooldown at once; `None` when the account already made `limit` mutations
    /// since `since`. Released with [`Tx::release_mutation`] when nothing changed.
    pub fn reserve_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
        since: &str,
        limit: u32,
    ) -> Result<Option<i64>, AuditError> {
        if mutations_since(self.connection(), account, since)? >= limit {
            return Ok(None);
        }
        self.record_mutation(account, resource, fix, incident_id)?;
        Ok(Some(self.connection().last_insert_rowid()))
    }

    pub fn release_mutation(&self, seq: i64) -> Result<(), AuditError> {
        self.connection()
            .execute("DELETE FROM mutations WHERE seq = ?1", params![seq])?;
        Ok(())
    }

    pub fn record_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
    ) -> Result<(), AuditError> {
        self.connection().execute(
            "INSERT INTO mutations (at, account, resource, fix, incident_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now(), account, resource, fix, incident_id],
        )?;
        Ok(())
    }

    /// Counts a failure against each scope; returns the scopes whose breaker this opens.
    pub fn record_breaker_failure(
        &self,
        scopes: &[String],
        incident_id: &str,
        reason: &str,
        threshold_for: impl Fn(&str) -> u32,
        window_start: &str,
    ) -> Result<Vec<String>, AuditError> {
        let at = now();
        let mut opened = Vec::new();
        for scope in scopes {
            self.connection().execute(
                "INSERT INTO breaker_failures (scope, at, incident_id, reason) VALUES (?1, ?2, ?3, ?4)",
                params![scope, at, incident_id, reason],
            )?;
            let already_open: bool = self
                .connection()
                .query_row(
                    "SELECT state = 'open' FROM breakers WHERE scope = ?1",
                    params![scope],
                    |row| row.get(0),
                )
                .optional()?
                .unwrap_or(false);
            if already_open {
                continue;
            }
            // Failures in the window, after those the last reset forgave.
            let forgiven: i64 = self
                .connection()
                .query_row(
                    "SELECT forgiven_through FROM breakers WHERE scope = ?1",
                    params![scope],
                    |row| row.get(0),
                )
                .optional()?
                .unwrap_or(0);
            let failures: u32 = self.connection().query_row(
                "SELECT COUNT(*) FROM breaker_failures WHERE scope = ?1 AND at >= ?2 AND seq > ?3",
                params![scope, window_start, forgiven],
                |row| row.get(0),
            )?;
            if failures >= threshold_for(scope) {
                self.connection().execute(
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

    /// Closes a breaker; returns whether it was open.
    pub fn reset_breaker(&self, scope: &str, by: &str) -> Result<bool, AuditError> {
        let changed = self.connection().execute(
            "UPDATE breakers SET state = 'closed', closed_at = ?2, closed_by = ?3,
                 forgiven_through = (SELECT COALESCE(MAX(seq), 0) FROM breaker_failures WHERE scope = ?1)
             WHERE scope = ?1 AND state = 'open'",
            params![scope, now(), by],
        )?;
        Ok(changed > 0)
    }
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

pub fn plans(
    connection: &Connection,
    status: Option<PlanStatus>,
) -> Result<Vec<PlanRow>, AuditError> {
    match status {
        Some(status) => plan_rows(
            connection,
            &format!(
                "SELECT {PLAN_COLUMNS} FROM plans p JOIN incidents i USING (incident_id) WHERE p.status = ?1 ORDER BY p.updated_at DESC"
            ),
            &[&status.as_str()],
        ),
        None => plan_rows(
            connection,
            &format!(
                "SELECT {PLAN_COLUMNS} FROM plans p JOIN incidents i USING (incident_id) ORDER BY p.updated_at DESC"
            ),
            &[],
        ),
    }
}

pub fn plan(connection: &Connection, plan_id: &str) -> Result<Option<PlanRow>, AuditError> {
    Ok(plan_rows(
        connection,
        &format!("SELECT {PLAN_COLUMNS} FROM plans p JOIN incidents i USING (incident_id) WHERE p.plan_id = ?1"),
        &[&plan_id],
    )?
    .pop())
}

pub fn kill_switch(connection: &Connection) -> Result<Option<KillSwitch>, AuditError> {
    Ok(connection
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

pub fn mutations_since(
    connection: &Connection,
    account: &str,
    since: &str,
) -> Result<u32, AuditError> {
    Ok(connection.query_row(
        "SELECT COUNT(*) FROM mutations WHERE account = ?1 AND at >= ?2",
        params![account, since],
        |row| row.get(0),
    )?)
}

/// When `fix` last changed `resource`, and in which incident.
pub fn last_mutation(
    connection: &Connection,
    resource: &str,
    fix: &str,
) -> Result<Option<(String, String)>, AuditError> {
    Ok(connection
        .query_row(
            "SELECT at, incident_id FROM mutations WHERE resource = ?1 AND fix = ?2 ORDER BY seq DESC LIMIT 1",
            params![resource, fix],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?)
}

pub fn open_breakers(
    connection: &Connection,
    scopes: &[String],
) -> Result<Vec<String>, AuditError> {
    let mut open = Vec::new();
    for scope in scopes {
        let is_open: bool = connection
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

pub fn breakers(connection: &Connection) -> Result<Vec<Breaker>, AuditError> {
    let mut statement = connection.prepare("SELECT scope, state, opened_at, reason, closed_at, closed_by FROM breakers ORDER BY opened_at DESC")?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditStore, NodegroupKey};
    use serde_json::json;

    fn store() -> (AuditStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("nodemedic-control-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = AuditStore::open(&dir.join("audit.db")).unwrap();
        store
            .write_blocking(|tx| {
                let key = NodegroupKey {
                    account: "1".into(),
                    region: "r".into(),
                    cluster: "c".into(),
                    nodegroup: "ng".into(),
                };
                tx.open_incident("inc-1", &key, "subnet_no_egress_route", None, "auto", "s")
            })
            .unwrap();
        (store, dir)
    }

    #[test]
    fn a_plan_waits_is_approved_and_a_newer_plan_supersedes_a_waiting_one() {
        let (store, dir) = store();
        let first = store
            .write_blocking(|tx| {
                tx.register_plan("inc-1", "plan-a", &json!({"id": "plan-a"}), &json!({}))
            })
            .unwrap();
        assert!(first, "a new plan is announced");
        let again = store
            .write_blocking(|tx| {
                tx.register_plan("inc-1", "plan-a", &json!({"id": "plan-a"}), &json!({}))
            })
            .unwrap();
        assert!(!again, "already waiting: not announced again");
        store
            .write_blocking(|tx| {
                tx.register_plan("inc-1", "plan-b", &json!({"id": "plan-b"}), &json!({}))
            })
            .unwrap();
        assert_eq!(
            store
                .read_blocking(|c| plan(c, "plan-a"))
                .unwrap()
                .unwrap()
                .status,
            "superseded"
        );
        store
            .write_blocking(|tx| {
                tx.set_plan_status(
                    "plan-b",
                    PlanStatus::Approved,
                    Some("alice"),
                    Some("looks right"),
                )
            })
            .unwrap();
        let approved = store
            .read_blocking(|c| plans(c, Some(PlanStatus::Approved)))
            .unwrap();
        assert_eq!(approved.len(), 1);
        assert_eq!(approved[0].decided_by.as_deref(), Some("alice"));
        assert_eq!(approved[0].cluster, "c");
        // Registering the approved plan again (a later event) does not reset its approval.
        let before = store
            .write_blocking(|tx| tx.register_plan("inc-1", "plan-b", &json!({}), &json!({})))
            .unwrap();
        assert!(!before, "an approved plan is not asked for again");
        assert_eq!(
            store
                .read_blocking(|c| plan(c, "plan-b"))
                .unwrap()
                .unwrap()
                .status,
            "approved"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_plan_that_comes_back_waits_again_unless_it_was_rejected() {
        let (store, dir) = store();
        let register = |id: &'static str| {
            store
                .write_blocking(move |tx| tx.register_plan("inc-1", id, &json!({}), &json!({})))
                .unwrap()
        };
        let status = |id: &'static str| store.read_blocking(move |c| plan(c, id)).unwrap().unwrap();
        for (id, left_as) in [
            ("plan-expired", PlanStatus::Expired),
            ("plan-stale", PlanStatus::Stale),
            ("plan-failed", PlanStatus::Failed),
        ] {
            assert!(register(id));
            store
                .write_blocking(|tx| {
                    tx.set_plan_status(id, PlanStatus::Approved, Some("alice"), None)
                })
                .unwrap();
            store
                .write_blocking(|tx| tx.set_plan_status(id, left_as, None, None))
                .unwrap();
            assert!(register(id), "{id} is asked for again");
            let row = status(id);
            assert_eq!(row.status, "awaiting_approval");
            assert_eq!(row.decided_by, None, "the old approval does not carry over");
        }
        assert!(register("plan-rejected"));
        store
            .write_blocking(|tx| {
                tx.set_plan_status("plan-rejected", PlanStatus::Rejected, Some("bob"), None)
            })
            .unwrap();
        assert!(!register("plan-rejected"));
        assert_eq!(status("plan-rejected").status, "rejected");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_kill_switch_turns_on_and_off() {
        let (store, dir) = store();
        assert_eq!(store.read_blocking(kill_switch).unwrap(), None);
        store
            .write_blocking(|tx| tx.set_kill_switch(true, Some("bob"), Some("storm")))
            .unwrap();
        assert_eq!(
            store
                .read_blocking(kill_switch)
                .unwrap()
                .unwrap()
                .reason
                .as_deref(),
            Some("storm")
        );
        store
            .write_blocking(|tx| tx.set_kill_switch(false, Some("bob"), None))
            .unwrap();
        assert_eq!(store.read_blocking(kill_switch).unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_breaker_opens_at_its_threshold_and_a_reset_forgives_earlier_failures() {
        let (store, dir) = store();
        let scopes = vec!["vpc:vpc-1".to_string(), "global".to_string()];
        let threshold = |scope: &str| if scope == "global" { 6 } else { 2 };
        let fail = || {
            store
                .write_blocking(|tx| {
                    tx.record_breaker_failure(
                        &scopes,
                        "inc-1",
                        "verification failed",
                        threshold,
                        "0000",
                    )
                })
                .unwrap()
        };
        assert!(fail().is_empty());
        assert_eq!(fail(), vec!["vpc:vpc-1"]);
        assert_eq!(
            store.read_blocking(|c| open_breakers(c, &scopes)).unwrap(),
            vec!["vpc:vpc-1"]
        );
        assert!(
            store
                .write_blocking(|tx| tx.reset_breaker("vpc:vpc-1", "alice"))
                .unwrap()
        );
        assert!(
            store
                .read_blocking(|c| open_breakers(c, &scopes))
                .unwrap()
                .is_empty()
        );
        assert!(
            fail().is_empty(),
            "failures before the reset do not count again"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn mutations_are_counted_per_account_and_found_per_resource() {
        let (store, dir) = store();
        store
            .write_blocking(|tx| tx.record_mutation("1", "rtb-1", "add_nat_route", "inc-1"))
            .unwrap();
        store
            .write_blocking(|tx| tx.record_mutation("2", "rtb-2", "add_nat_route", "inc-1"))
            .unwrap();
        assert_eq!(
            store
                .read_blocking(|c| mutations_since(c, "1", "0000"))
                .unwrap(),
            1
        );
        assert!(
            store
                .read_blocking(|c| last_mutation(c, "rtb-1", "add_nat_route"))
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .read_blocking(|c| last_mutation(c, "rtb-1", "cycle_nodegroup"))
                .unwrap()
                .is_none()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
