//! Writes inside one transaction: records, the incident index and the guard's shared state.
//! The rules over them live in [`crate::audit::Tx`]; SQLite serialises writers, so a
//! transaction's reads stay true until it commits.

use super::*;

impl Writes for Transaction<'_> {
    fn reads(&self) -> &dyn Reads {
        &**self
    }

    fn append(&self, record: NewRecord) -> StoreResult<i64> {
        let (last_seq, prev_hash): (i64, String) = self
            .query_row(
                "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?
            .unwrap_or_else(|| (0, GENESIS.to_string()));
        let seq = last_seq
            .checked_add(1)
            .ok_or_else(|| AuditError::Backend("the record sequence is exhausted".into()))?;
        let at = now();
        let kind = record.kind.as_str();
        let body_text = serde_json::to_string(record.body)?;
        let hash = chain_hash_v2(
            GLOBAL_CHAIN,
            seq,
            &prev_hash,
            &at,
            record.incident_id,
            record.event_id,
            kind,
            &body_text,
        );
        self.execute(
            "INSERT INTO records (seq, at, incident_id, event_id, kind, body, prev_hash, hash, hash_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 2)",
            params![seq, at, record.incident_id, record.event_id, kind, body_text, prev_hash, hash],
        )?;
        Ok(seq)
    }

    fn mark_event(&self, mark: EventMark) -> StoreResult<()> {
        self.execute(
            "INSERT OR IGNORE INTO events (event_id, message_id, received_at, disposition, incident_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![mark.event_id, mark.message_id, now(), mark.disposition, mark.incident_id],
        )?;
        Ok(())
    }

    fn open_incident(&self, incident: NewIncident) -> StoreResult<()> {
        let at = now();
        let key = incident.key;
        self.execute(
            "INSERT INTO incidents (incident_id, account, region, cluster, nodegroup, cause, mode, outcome, summary, opened_at, updated_at, subject)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
            params![
                incident.incident_id,
                key.account,
                key.region,
                key.cluster,
                key.nodegroup,
                incident.cause,
                incident.mode,
                Outcome::InProgress.as_str(),
                incident.summary,
                at,
                incident.subject
            ],
        )?;
        self.join_nodegroup(Member {
            incident_id: incident.incident_id,
            cluster: &key.cluster,
            nodegroup: &key.nodegroup,
        })
    }

    fn join_nodegroup(&self, member: Member) -> StoreResult<()> {
        self.execute(
            "INSERT OR IGNORE INTO incident_nodegroups (incident_id, cluster, nodegroup) VALUES (?1, ?2, ?3)",
            params![member.incident_id, member.cluster, member.nodegroup],
        )?;
        Ok(())
    }

    fn set_outcome(&self, incident_id: &str, mode: &str, outcome: Outcome) -> StoreResult<()> {
        let changed = self.execute(
            "UPDATE incidents SET mode = ?2, outcome = ?3, updated_at = ?4 WHERE incident_id = ?1",
            params![incident_id, mode, outcome.as_str(), now()],
        )?;
        if changed == 0 {
            return Err(AuditError::NoSuchIncident(incident_id.into()));
        }
        Ok(())
    }

    fn set_plan(&self, plan: IncidentPlan) -> StoreResult<()> {
        let at = now();
        self.execute(
            "UPDATE incidents SET plan_id = ?2, updated_at = ?3 WHERE incident_id = ?1",
            params![plan.incident_id, plan.plan_id, at],
        )?;
        self.execute(
            "DELETE FROM incident_steps WHERE incident_id = ?1",
            params![plan.incident_id],
        )?;
        for (position, (kind, status, detail)) in plan.steps.iter().enumerate() {
            self.execute(
                "INSERT INTO incident_steps (incident_id, position, kind, status, detail, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![plan.incident_id, position as i64, kind, status, detail, at],
            )?;
        }
        Ok(())
    }

    fn set_step(&self, change: StepChange) -> StoreResult<()> {
        self.execute(
            "UPDATE incident_steps SET status = ?3, detail = ?4, updated_at = ?5 WHERE incident_id = ?1 AND position = ?2",
            params![change.incident_id, change.position as i64, change.status, change.detail, now()],
        )?;
        Ok(())
    }

    fn stored_plan(&self, plan_id: &str) -> StoreResult<Option<StoredPlan>> {
        Ok(self
            .query_row(
                "SELECT status, incident_id FROM plans WHERE plan_id = ?1",
                params![plan_id],
                |row| {
                    Ok(StoredPlan {
                        status: row.get(0)?,
                        incident_id: row.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    fn supersede_waiting_plans(&self, incident_id: &str, keep_plan_id: &str) -> StoreResult<()> {
        self.execute(
            "UPDATE plans SET status = 'superseded', updated_at = ?3 WHERE incident_id = ?1 AND plan_id != ?2 AND status = 'awaiting_approval'",
            params![incident_id, keep_plan_id, now()],
        )?;
        Ok(())
    }

    fn save_plan(&self, plan: PlanWrite, how: PlanSave) -> StoreResult<()> {
        let at = now();
        let waiting = PlanStatus::AwaitingApproval.as_str();
        let trigger = serde_json::to_string(plan.trigger)?;
        match how {
            PlanSave::Insert => self.execute(
                "INSERT INTO plans (plan_id, incident_id, status, created_at, updated_at, plan, trigger) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
                params![plan.plan_id, plan.incident_id, waiting, at, serde_json::to_string(plan.plan)?, trigger],
            )?,
            PlanSave::RefreshTrigger => self.execute(
                "UPDATE plans SET updated_at = ?3, trigger = ?4 WHERE plan_id = ?1 AND incident_id = ?2 AND status = 'awaiting_approval'",
                params![plan.plan_id, plan.incident_id, at, trigger],
            )?,
            PlanSave::Reopen => self.execute(
                "UPDATE plans SET status = ?2, incident_id = ?3, updated_at = ?4, trigger = ?5,
                     decided_by = NULL, decided_at = NULL, decision_reason = NULL
                 WHERE plan_id = ?1",
                params![plan.plan_id, waiting, plan.incident_id, at, trigger],
            )?,
        };
        Ok(())
    }

    fn set_plan_status(&self, change: PlanStatusChange) -> StoreResult<()> {
        let at = now();
        let decided = change.status.is_decision();
        self.execute(
            "UPDATE plans SET status = ?2, updated_at = ?3,
                 decided_by = CASE WHEN ?6 THEN ?4 ELSE decided_by END,
                 decided_at = CASE WHEN ?6 THEN ?3 ELSE decided_at END,
                 decision_reason = CASE WHEN ?6 THEN ?5 ELSE decision_reason END
             WHERE plan_id = ?1",
            params![
                change.plan_id,
                change.status.as_str(),
                at,
                change.by,
                change.reason,
                decided
            ],
        )?;
        Ok(())
    }

    fn set_kill_switch(&self, on: bool, by: Option<&str>, reason: Option<&str>) -> StoreResult<()> {
        self.execute(
            "INSERT INTO controls (name, value, set_by, at, reason) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, set_by = excluded.set_by, at = excluded.at, reason = excluded.reason",
            params![KILL_SWITCH, if on { "on" } else { "off" }, by, now(), reason],
        )?;
        Ok(())
    }

    fn set_control(&self, name: &str, value: &str, by: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO controls (name, value, set_by, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, set_by = excluded.set_by, at = excluded.at",
            params![name, value, by, now()],
        )?;
        Ok(())
    }

    fn ensure_control(&self, name: &str, value: &str) -> StoreResult<String> {
        self.execute(
            "INSERT INTO controls (name, value, at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
            params![name, value, now()],
        )?;
        Ok(self.query_row(
            "SELECT value FROM controls WHERE name = ?1",
            params![name],
            |row| row.get(0),
        )?)
    }

    fn lock_rate(&self, _account: &str) -> StoreResult<()> {
        // The transaction already holds SQLite's one write lock.
        Ok(())
    }

    fn record_mutation(&self, row: MutationRow) -> StoreResult<i64> {
        self.execute(
            "INSERT INTO mutations (at, account, resource, fix, incident_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now(), row.account, row.resource, row.fix, row.incident_id],
        )?;
        Ok(self.last_insert_rowid())
    }

    fn release_mutation(&self, reservation: i64) -> StoreResult<()> {
        self.execute("DELETE FROM mutations WHERE seq = ?1", params![reservation])?;
        Ok(())
    }

    fn add_breaker_failure(&self, failure: BreakerFailure) -> StoreResult<()> {
        self.execute(
            "INSERT INTO breaker_failures (scope, at, incident_id, reason) VALUES (?1, ?2, ?3, ?4)",
            params![
                failure.scope,
                failure.at,
                failure.incident_id,
                failure.reason
            ],
        )?;
        Ok(())
    }

    fn breaker_open(&self, scope: &str) -> StoreResult<bool> {
        Ok(!self.open_breakers(&[scope.to_string()])?.is_empty())
    }

    fn breaker_failures_since(&self, scope: &str, window_start: &str) -> StoreResult<u32> {
        let forgiven: i64 = self
            .query_row(
                "SELECT forgiven_through FROM breakers WHERE scope = ?1",
                params![scope],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0);
        Ok(self.query_row(
            "SELECT COUNT(*) FROM breaker_failures WHERE scope = ?1 AND at >= ?2 AND seq > ?3",
            params![scope, window_start, forgiven],
            |row| row.get(0),
        )?)
    }

    fn open_breaker(&self, scope: &str, at: &str, reason: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO breakers (scope, state, opened_at, reason) VALUES (?1, 'open', ?2, ?3)
             ON CONFLICT (scope) DO UPDATE SET state = 'open', opened_at = excluded.opened_at, reason = excluded.reason,
                 closed_at = NULL, closed_by = NULL",
            params![scope, at, reason],
        )?;
        Ok(())
    }

    fn reset_breaker(&self, scope: &str, by: &str) -> StoreResult<bool> {
        let changed = self.execute(
            "UPDATE breakers SET state = 'closed', closed_at = ?2, closed_by = ?3,
                 forgiven_through = (SELECT COALESCE(MAX(seq), 0) FROM breaker_failures WHERE scope = ?1)
             WHERE scope = ?1 AND state = 'open'",
            params![scope, now(), by],
        )?;
        Ok(changed > 0)
    }

    fn acquire_lease(&self, claim: LeaseClaim) -> StoreResult<bool> {
        let changed = self.execute(
            "INSERT INTO leases (key, holder, expires_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= ?4",
            params![claim.key, claim.holder, claim.expires_at_ms, claim.now_ms],
        )?;
        Ok(changed > 0)
    }

    fn release_lease(&self, key: &str, holder: &str) -> StoreResult<()> {
        self.execute(
            "DELETE FROM leases WHERE key = ?1 AND holder = ?2",
            params![key, holder],
        )?;
        Ok(())
    }
}
