//! Reads: incidents, records, plans, controls and leases, straight from the tables.

use super::*;

impl Reads for DynamoBackend {
    fn event_seen(&self, event_id: &str) -> StoreResult<Option<EventSeen>> {
        Ok(self
            .get_state(&format!("EVT#{event_id}"), "EVT")?
            .map(|item| EventSeen {
                disposition: text(&item, "disposition").unwrap_or_default(),
                incident_id: text(&item, "incident_id"),
            }))
    }

    fn list(&self, limit: usize) -> StoreResult<Vec<IncidentSummary>> {
        let items = self.listed("INCIDENTS", Some(limit))?;
        let mut found = self.summaries(items)?;
        found.sort_by(|a, b| {
            b.opened_at
                .cmp(&a.opened_at)
                .then(b.incident_id.cmp(&a.incident_id))
        });
        Ok(found)
    }

    fn incident(&self, incident_id: &str) -> StoreResult<Option<IncidentSummary>> {
        match self.get_state(&format!("INC#{incident_id}"), "META")? {
            Some(meta) => Ok(Some(self.summary(&meta)?)),
            None => Ok(None),
        }
    }

    fn incident_subject(&self, incident_id: &str) -> StoreResult<Option<String>> {
        Ok(self
            .get_state(&format!("INC#{incident_id}"), "META")?
            .and_then(|meta| text(&meta, "subject")))
    }

    fn incidents_for_subject(
        &self,
        at: SubjectScope,
        cause: &str,
    ) -> StoreResult<Vec<IncidentSummary>> {
        let items = self
            .by_subject(at.account, at.region, at.subject)?
            .into_iter()
            .filter(|item| text(item, "cause").as_deref() == Some(cause))
            .collect();
        self.summaries(items)
    }

    fn last_fix_on_subject(&self, at: SubjectScope) -> StoreResult<Option<(String, String)>> {
        let incidents = self.by_subject(at.account, at.region, at.subject)?;
        self.last_applied(&incidents)
    }

    fn incident_nodegroups(&self, incident_id: &str) -> StoreResult<Vec<String>> {
        Ok(self
            .partition(&format!("INC#{incident_id}"), Some("NG#"))?
            .iter()
            .filter_map(|item| text(item, "sk"))
            .map(|sk| sk.trim_start_matches("NG#").to_string())
            .collect())
    }

    fn incidents_for(&self, key: &NodegroupKey, cause: &str) -> StoreResult<Vec<IncidentSummary>> {
        let items = self
            .by_nodegroup(key)?
            .into_iter()
            .filter(|item| text(item, "cause").as_deref() == Some(cause))
            .collect();
        self.summaries(items)
    }

    fn incidents_of_nodegroup(
        &self,
        key: &NodegroupKey,
        limit: usize,
    ) -> StoreResult<Vec<IncidentSummary>> {
        let mut items = self.by_nodegroup(key)?;
        items.truncate(limit);
        self.summaries(items)
    }

    fn last_fix_applied(&self, key: &NodegroupKey) -> StoreResult<Option<(String, String)>> {
        let incidents = self.by_nodegroup(key)?;
        self.last_applied(&incidents)
    }

    fn records(&self, incident_id: &str) -> StoreResult<Vec<Record>> {
        self.chain_records(incident_id, true, None)
    }

    fn loose_records(&self, limit: usize) -> StoreResult<Vec<Record>> {
        let today = time::OffsetDateTime::now_utc().date();
        let mut found = Vec::new();
        for back in 0..LOOSE_DAYS {
            let day = today - time::Duration::days(back);
            for shard in 0..LOOSE_SHARDS {
                found.extend(self.chain_records(
                    &format!("loose/{day}/{shard}"),
                    false,
                    Some(limit),
                )?);
            }
            if found.len() >= limit {
                break;
            }
        }
        found.sort_by(|a, b| b.at.cmp(&a.at));
        found.truncate(limit);
        Ok(found)
    }

    fn all_records(&self, _after_seq: i64) -> StoreResult<Vec<Record>> {
        let mut records = Vec::new();
        for chain in self.every_chain()? {
            records.extend(self.chain_records(&chain, true, None)?);
        }
        Ok(records)
    }

    fn verify_chain(&self) -> StoreResult<Result<u64, ChainBreak>> {
        let mut count = 0;
        for chain in self.every_chain()? {
            let broken = |seq: i64, why: &str| ChainBreak {
                chain: chain.clone(),
                seq,
                why: why.into(),
            };
            // The head item is read from the table: the index may lag.
            let Some(head) = self.get_state(&format!("CHAIN#{chain}"), "HEAD")? else {
                if self.chain_records(&chain, true, Some(1))?.is_empty() {
                    continue;
                }
                return Ok(Err(broken(
                    1,
                    "the chain has no head: its HEAD item was deleted",
                )));
            };
            let mut expected_prev = GENESIS.to_string();
            let mut expected_seq = 1;
            for record in self.chain_records(&chain, true, None)? {
                if record.seq != expected_seq {
                    return Ok(Err(broken(
                        record.seq,
                        "a record is missing before this one",
                    )));
                }
                if record.prev_hash != expected_prev {
                    return Ok(Err(broken(
                        record.seq,
                        "prev_hash does not match the previous record",
                    )));
                }
                let body = serde_json::to_string(&record.body)?;
                if chain_hash(
                    &record.prev_hash,
                    &record.at,
                    record.incident_id.as_deref(),
                    record.event_id.as_deref(),
                    &record.kind,
                    &body,
                ) != record.hash
                {
                    return Ok(Err(broken(
                        record.seq,
                        "hash does not match the record's content",
                    )));
                }
                expected_prev = record.hash;
                expected_seq += 1;
                count += 1;
            }
            // Deleting the newest records would leave a valid prefix: the head says how far it goes.
            if number(&head, "seq") != Some(expected_seq - 1)
                || text(&head, "hash").as_deref() != Some(expected_prev.as_str())
            {
                return Ok(Err(broken(
                    expected_seq,
                    "the chain ends before its head: records were removed",
                )));
            }
        }
        Ok(Ok(count))
    }

    fn chain_heads(&self) -> StoreResult<Vec<ChainHead>> {
        Ok(self
            .listed("CHAINS", None)?
            .iter()
            .filter_map(|item| {
                Some(ChainHead {
                    chain: text(item, "chain")?,
                    seq: number(item, "seq")?,
                    hash: text(item, "hash")?,
                    at: text(item, "at").unwrap_or_default(),
                    mac: text(item, "mac"),
                })
            })
            .collect())
    }

    fn plans(&self, status: Option<PlanStatus>) -> StoreResult<Vec<PlanRow>> {
        let statuses: Vec<PlanStatus> = match status {
            Some(status) => vec![status],
            None => PlanStatus::ALL.to_vec(),
        };
        let mut plans = Vec::new();
        for status in statuses {
            for item in self.listed(&format!("PLANS#{}", status.as_str()), None)? {
                // The index may lag: the table has the truth.
                if let Some(id) = text(&item, "plan_id")
                    && let Some(item) = self.get_state(&format!("PLAN#{id}"), "PLAN")?
                    && text(&item, "status").as_deref() == Some(status.as_str())
                {
                    plans.push(plan_from_item(&item)?);
                }
            }
        }
        plans.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        Ok(plans)
    }

    fn plan(&self, plan_id: &str) -> StoreResult<Option<PlanRow>> {
        self.get_state(&format!("PLAN#{plan_id}"), "PLAN")?
            .map(|item| plan_from_item(&item))
            .transpose()
    }

    fn control(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(self
            .get_state(&format!("CTRL#{name}"), "CTRL")?
            .and_then(|item| text(&item, "value")))
    }

    fn kill_switch(&self) -> StoreResult<Option<KillSwitch>> {
        Ok(kill_switch_of(
            self.get_state(KILL_SWITCH, "CTRL")?.as_ref(),
        ))
    }

    fn mutations_since(&self, account: &str, since: &str) -> StoreResult<u32> {
        Ok(self
            .query(
                &self.state,
                None,
                "#pk = :pk AND #sk >= :since",
                &[("#pk", "pk"), ("#sk", "sk")],
                &[(":pk", s(format!("MUT#{account}"))), (":since", s(since))],
                true,
                None,
            )?
            .len() as u32)
    }

    fn last_mutation(&self, resource: &str, fix: &str) -> StoreResult<Option<(String, String)>> {
        Ok(self
            .query(
                &self.state,
                None,
                "#pk = :pk",
                &[("#pk", "pk")],
                &[(":pk", s(format!("MUTR#{resource}#{fix}")))],
                false,
                Some(1),
            )?
            .first()
            .map(|item| {
                (
                    text(item, "at").unwrap_or_default(),
                    text(item, "incident_id").unwrap_or_default(),
                )
            }))
    }

    fn open_breakers(&self, scopes: &[String]) -> StoreResult<Vec<String>> {
        let mut open = Vec::new();
        for scope in scopes {
            if self
                .get_state(&format!("BRK#{scope}"), "BRK")?
                .is_some_and(|item| text(&item, "state").as_deref() == Some("open"))
            {
                open.push(scope.clone());
            }
        }
        Ok(open)
    }

    fn breakers(&self) -> StoreResult<Vec<Breaker>> {
        let mut breakers: Vec<Breaker> = self
            .listed("BREAKERS", None)?
            .iter()
            .map(|item| Breaker {
                scope: text(item, "scope").unwrap_or_default(),
                state: text(item, "state").unwrap_or_default(),
                opened_at: text(item, "opened_at").unwrap_or_default(),
                reason: text(item, "reason").unwrap_or_default(),
                closed_at: text(item, "closed_at"),
                closed_by: text(item, "closed_by"),
            })
            .collect();
        breakers.sort_by(|a, b| b.opened_at.cmp(&a.opened_at));
        Ok(breakers)
    }

    fn lease(&self, lease_key: &str) -> StoreResult<Option<Lease>> {
        Ok(self
            .get_state(&format!("LEASE#{lease_key}"), "LEASE")?
            .map(|item| Lease {
                key: lease_key.to_string(),
                holder: text(&item, "holder").unwrap_or_default(),
                expires_at_ms: number(&item, "expires_at_ms").unwrap_or(0),
            }))
    }
}

/// The kill switch its control item says, when it is on.
pub(super) fn kill_switch_of(item: Option<&Item>) -> Option<KillSwitch> {
    item.filter(|item| text(item, "value").as_deref() == Some("on"))
        .map(|item| KillSwitch {
            set_by: text(item, "set_by"),
            at: text(item, "at").unwrap_or_default(),
            reason: text(item, "reason"),
        })
}
