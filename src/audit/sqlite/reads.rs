//! Reads on the connection: incidents, records, plans, controls, leases and the chain check.

use super::*;

impl Reads for Connection {
    fn event_seen(&self, event_id: &str) -> StoreResult<Option<EventSeen>> {
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

    fn list(&self, limit: usize) -> StoreResult<Vec<IncidentSummary>> {
        summaries(
            self,
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM incidents ORDER BY opened_at DESC, incident_id DESC LIMIT ?1"
            ),
            &[&(limit as i64)],
        )
    }

    fn incident(&self, incident_id: &str) -> StoreResult<Option<IncidentSummary>> {
        Ok(summaries(
            self,
            &format!("SELECT {SUMMARY_COLUMNS} FROM incidents WHERE incident_id = ?1"),
            &[&incident_id],
        )?
        .pop())
    }

    fn incident_subject(&self, incident_id: &str) -> StoreResult<Option<String>> {
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
        at: SubjectScope,
        cause: &str,
    ) -> StoreResult<Vec<IncidentSummary>> {
        summaries(
            self,
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM incidents WHERE account = ?1 AND region = ?2 AND cause = ?3 \
                 AND subject = ?4 ORDER BY updated_at DESC"
            ),
            &[&at.account, &at.region, &cause, &at.subject],
        )
    }

    fn last_fix_on_subject(&self, at: SubjectScope) -> StoreResult<Option<(String, String)>> {
        Ok(self
            .query_row(
                "SELECT s.incident_id, MAX(s.updated_at) FROM incident_steps s JOIN incidents i USING (incident_id)
                 WHERE i.account = ?1 AND i.region = ?2 AND i.subject = ?3 AND s.status = 'applied'
                 GROUP BY s.incident_id ORDER BY MAX(s.updated_at) DESC LIMIT 1",
                params![at.account, at.region, at.subject],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn incident_nodegroups(&self, incident_id: &str) -> StoreResult<Vec<String>> {
        let mut statement = self.prepare(
            "SELECT cluster || '/' || nodegroup FROM incident_nodegroups WHERE incident_id = ?1 ORDER BY cluster, nodegroup",
        )?;
        let rows = statement.query_map(params![incident_id], |row| row.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }

    fn incidents_for(&self, key: &NodegroupKey, cause: &str) -> StoreResult<Vec<IncidentSummary>> {
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
    ) -> StoreResult<Vec<IncidentSummary>> {
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

    fn last_fix_applied(&self, key: &NodegroupKey) -> StoreResult<Option<(String, String)>> {
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

    fn run_died(&self, incident_id: &str) -> StoreResult<bool> {
        // Two lookups in records_by_incident_kind, however many records the incident has.
        Ok(self.query_row(
            "SELECT EXISTS (SELECT 1 FROM records
                 WHERE incident_id = ?1 AND kind IN ('step_intent', 'step_result')
                 AND seq > COALESCE((SELECT MAX(seq) FROM records
                                     WHERE incident_id = ?1 AND kind = 'outcome'), 0))",
            params![incident_id],
            |row| row.get(0),
        )?)
    }

    fn records(&self, incident_id: &str) -> StoreResult<Vec<Record>> {
        records_where(self, "WHERE incident_id = ?1 ORDER BY seq", &[&incident_id])
    }

    fn loose_records(&self, limit: usize) -> StoreResult<Vec<Record>> {
        records_where(
            self,
            "WHERE incident_id IS NULL ORDER BY seq DESC LIMIT ?1",
            &[&(limit as i64)],
        )
    }

    fn all_records(&self, after_seq: i64) -> StoreResult<Vec<Record>> {
        records_where(self, "WHERE seq > ?1 ORDER BY seq", &[&after_seq])
    }

    fn verify_chain(&self) -> StoreResult<Result<u64, ChainBreak>> {
        let mut statement = self.prepare(
            "SELECT seq, at, incident_id, event_id, kind, body, prev_hash, hash, hash_version FROM records ORDER BY seq",
        )?;
        let mut rows = statement.query([])?;
        let mut expected_prev = GENESIS.to_string();
        let mut last_seq: i64 = 0;
        let mut newest_version = 1;
        let mut count = 0;
        let broken = |seq: i64, why: &str| ChainBreak {
            chain: GLOBAL_CHAIN.into(),
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
            let version: i64 = row.get(8)?;
            if Some(seq) != last_seq.checked_add(1) {
                return Ok(Err(broken(seq, "a record is missing before this one")));
            }
            if prev != expected_prev {
                return Ok(Err(broken(
                    seq,
                    "prev_hash does not match the previous record",
                )));
            }
            if version < newest_version {
                return Ok(Err(broken(seq, "the hash version goes back")));
            }
            let (incident, event) = (incident.as_deref(), event.as_deref());
            let computed = match version {
                1 => chain_hash(&prev, &at, incident, event, &kind, &body),
                2 => chain_hash_v2(GLOBAL_CHAIN, seq, &prev, &at, incident, event, &kind, &body),
                _ => return Ok(Err(broken(seq, "an unknown hash version"))),
            };
            if computed != hash {
                return Ok(Err(broken(seq, "hash does not match the record's content")));
            }
            newest_version = version;
            expected_prev = hash;
            last_seq = seq;
            count += 1;
        }
        // Deleting the newest records leaves a valid prefix: the head says how far it went.
        let head: Option<(i64, String)> = self
            .query_row(
                "SELECT seq, hash FROM chain_heads WHERE chain = ?1",
                params![GLOBAL_CHAIN],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        match head {
            None if count > 0 => {
                return Ok(Err(broken(
                    last_seq,
                    "the chain has no head: it was removed",
                )));
            }
            Some((seq, hash)) if seq != last_seq || hash != expected_prev => {
                return Ok(Err(broken(
                    last_seq.saturating_add(1),
                    "the chain ends before its head: records were removed or rewritten",
                )));
            }
            _ => {}
        }
        if let Some(why) = controls_without_records(self)? {
            return Ok(Err(ChainBreak {
                chain: "controls".into(),
                seq: 0,
                why,
            }));
        }
        Ok(Ok(count))
    }

    fn chain_heads(&self) -> StoreResult<Vec<ChainHead>> {
        let mut statement = self.prepare("SELECT chain, seq, hash, at, mac FROM chain_heads")?;
        let heads = statement
            .query_map([], |row| {
                Ok(ChainHead {
                    chain: row.get(0)?,
                    seq: row.get(1)?,
                    hash: row.get(2)?,
                    at: row.get(3)?,
                    mac: row.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(heads)
    }

    fn plans(&self, status: Option<PlanStatus>) -> StoreResult<Vec<PlanRow>> {
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

    fn plan(&self, plan_id: &str) -> StoreResult<Option<PlanRow>> {
        Ok(plan_rows(
            self,
            &format!(
                "SELECT {PLAN_COLUMNS} FROM plans p JOIN incidents i USING (incident_id) WHERE p.plan_id = ?1"
            ),
            &[&plan_id],
        )?
        .pop())
    }

    fn control(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(self
            .query_row(
                "SELECT value FROM controls WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn kill_switch(&self) -> StoreResult<Option<KillSwitch>> {
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

    fn mutations_since(&self, account: &str, since: &str) -> StoreResult<u32> {
        Ok(self.query_row(
            "SELECT COUNT(*) FROM mutations WHERE account = ?1 AND at >= ?2",
            params![account, since],
            |row| row.get(0),
        )?)
    }

    fn last_mutation(&self, resource: &str, fix: &str) -> StoreResult<Option<(String, String)>> {
        Ok(self
            .query_row(
                "SELECT at, incident_id FROM mutations WHERE resource = ?1 AND fix = ?2 ORDER BY seq DESC LIMIT 1",
                params![resource, fix],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn open_breakers(&self, scopes: &[String]) -> StoreResult<Vec<String>> {
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

    fn breakers(&self) -> StoreResult<Vec<Breaker>> {
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

    fn lease(&self, key: &str) -> StoreResult<Option<Lease>> {
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

/// The control rows that change what nodemedic does must agree with the records that set them:
/// a kill switch turned off by deleting its row, or a plan marked approved by an UPDATE, is
/// tampering the chain alone would not show.
fn controls_without_records(connection: &Connection) -> StoreResult<Option<String>> {
    let row_on = connection
        .query_row(
            "SELECT value FROM controls WHERE name = ?1",
            params![KILL_SWITCH],
            |row| row.get::<_, String>(0),
        )
        .optional()?
        .is_some_and(|value| value == "on");
    let record_on = connection
        .query_row(
            "SELECT json_extract(body, '$.on') FROM records WHERE kind = 'kill_switch' ORDER BY seq DESC LIMIT 1",
            [],
            |row| row.get::<_, Option<bool>>(0),
        )
        .optional()?
        .flatten()
        .unwrap_or(false);
    if row_on != record_on {
        return Ok(Some(format!(
            "the kill switch is {} but its last record says {}",
            if row_on { "on" } else { "off" },
            if record_on { "on" } else { "off" }
        )));
    }
    let unrecorded: Option<String> = connection
        .query_row(
            "SELECT plan_id FROM plans p WHERE status = 'approved' AND NOT EXISTS (
                 SELECT 1 FROM records r WHERE r.kind = 'approval_decision'
                   AND json_extract(r.body, '$.plan_id') = p.plan_id
                   AND json_extract(r.body, '$.decision') = 'approved'
                   AND json_extract(r.body, '$.by') IS p.decided_by)
             LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(
        unrecorded
            .map(|plan| format!("plan {plan} is approved but no record says who approved it")),
    )
}
