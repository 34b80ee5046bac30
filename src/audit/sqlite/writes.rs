//! Writes inside one transaction: records, the incident index and the guard's shared state.

use super::*;

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
