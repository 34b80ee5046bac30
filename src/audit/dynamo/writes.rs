//! Writes: what one transaction records and changes, buffered on the transaction.

use super::*;

impl Writes for DynamoTx<'_> {
    fn reads(&self) -> &dyn Reads {
        self.backend
    }

    fn append(&self, record: NewRecord) -> StoreResult<i64> {
        let NewRecord {
            incident_id,
            event_id,
            kind,
            body,
        } = record;
        let at = now();
        let chain = match incident_id {
            Some(id) => id.to_string(),
            None => loose_chain(event_id, at.get(..10).unwrap_or("")),
        };
        let mut body_text = serde_json::to_string(body)?;
        if body_text.len() > MAX_BODY {
            body_text = serde_json::to_string(&serde_json::json!({
                "truncated": true,
                "original_bytes": body_text.len(),
                "excerpt": body_text.chars().take(MAX_BODY / 2).collect::<String>(),
            }))?;
        }
        let mut head = self.head(&chain)?;
        let seq = head.seq + 1;
        let hash = chain_hash(
            &head.hash,
            &at,
            incident_id,
            event_id,
            kind.as_str(),
            &body_text,
        );
        let mut item: Item = HashMap::from([
            ("chain".to_string(), s(chain.clone())),
            ("seq".to_string(), n(seq)),
            ("at".to_string(), s(at)),
            ("kind".to_string(), s(kind.as_str())),
            ("body".to_string(), s(body_text)),
            ("prev_hash".to_string(), s(head.hash.clone())),
            ("hash".to_string(), s(hash.clone())),
        ]);
        if let Some(id) = incident_id {
            item.insert("incident_id".into(), s(id));
        }
        if let Some(id) = event_id {
            item.insert("event_id".into(), s(id));
        }
        let record_key = HashMap::from([
            ("chain".to_string(), s(chain.clone())),
            ("seq".to_string(), n(seq)),
        ]);
        self.push(
            self.backend.audit.clone(),
            record_key,
            Op::Put(item),
            Some(Condition::new("attribute_not_exists(#c)").name("#c", "chain")),
        );
        head.seq = seq;
        head.hash = hash;
        self.heads.borrow_mut().insert(chain, head);
        Ok(seq)
    }

    fn mark_event(&self, mark: EventMark) -> StoreResult<()> {
        let EventMark {
            event_id,
            message_id,
            disposition,
            incident_id,
        } = mark;
        let pk = format!("EVT#{event_id}");
        if self.current(&pk, "EVT")?.is_some() {
            return Ok(());
        }
        let expires = time::OffsetDateTime::now_utc().unix_timestamp()
            + self.backend.event_ttl.as_secs() as i64;
        let mut item = key(&pk, "EVT");
        item.insert("disposition".into(), s(disposition));
        item.insert("received_at".into(), s(now()));
        item.insert("expires_at".into(), n(expires));
        if let Some(id) = message_id {
            item.insert("message_id".into(), s(id));
        }
        if let Some(id) = incident_id {
            item.insert("incident_id".into(), s(id));
            self.push(
                self.state_table(),
                key(&format!("INC#{id}"), "META"),
                Op::Update {
                    set: Vec::new(),
                    add: vec![("events".into(), 1)],
                },
                None,
            );
        }
        // The first disposition wins, across replicas too.
        self.put(item, Some(Condition::absent()));
        Ok(())
    }

    fn open_incident(&self, incident: NewIncident) -> StoreResult<()> {
        let NewIncident {
            incident_id,
            key: key_,
            cause,
            subject,
            mode,
            summary,
        } = incident;
        let at = now();
        let mut item = key(&format!("INC#{incident_id}"), "META");
        for (name, value) in [
            ("incident_id", incident_id),
            ("account", &key_.account),
            ("region", &key_.region),
            ("cluster", &key_.cluster),
            ("nodegroup", &key_.nodegroup),
            ("cause", cause),
            ("mode", mode),
            ("outcome", Outcome::InProgress.as_str()),
            ("summary", summary),
            ("opened_at", &at),
            ("updated_at", &at),
        ] {
            item.insert(name.into(), s(value));
        }
        item.insert("events".into(), n(0));
        item.insert("gsi1pk".into(), s(nodegroup_index(key_)));
        item.insert("gsi1sk".into(), s(at.clone()));
        item.insert("gsi3pk".into(), s("INCIDENTS"));
        item.insert("gsi3sk".into(), s(format!("{at}#{incident_id}")));
        if let Some(subject) = subject {
            item.insert("subject".into(), s(subject));
            item.insert(
                "gsi2pk".into(),
                s(subject_index(&key_.account, &key_.region, subject)),
            );
            item.insert("gsi2sk".into(), s(at.clone()));
        }
        self.put(item, Some(Condition::absent()));
        self.join_nodegroup(Member {
            incident_id,
            cluster: &key_.cluster,
            nodegroup: &key_.nodegroup,
        })
    }

    fn join_nodegroup(&self, member: Member) -> StoreResult<()> {
        self.put(
            key(
                &format!("INC#{}", member.incident_id),
                &format!("NG#{}/{}", member.cluster, member.nodegroup),
            ),
            None,
        );
        Ok(())
    }

    fn set_outcome(&self, incident_id: &str, mode: &str, outcome: Outcome) -> StoreResult<()> {
        let pk = format!("INC#{incident_id}");
        let Some(meta) = self.current(&pk, "META")? else {
            return Err(AuditError::NoSuchIncident(incident_id.into()));
        };
        let at = now();
        let mut set = vec![
            ("mode", s(mode)),
            ("outcome", s(outcome.as_str())),
            ("updated_at", s(at.clone())),
            ("gsi1sk", s(at.clone())),
        ];
        if meta.contains_key("gsi2pk") {
            set.push(("gsi2sk", s(at)));
        }
        self.update(&pk, "META", set, None);
        Ok(())
    }

    fn set_plan(&self, plan: IncidentPlan) -> StoreResult<()> {
        let IncidentPlan {
            incident_id,
            plan_id,
            steps,
        } = plan;
        let pk = format!("INC#{incident_id}");
        let at = now();
        self.update(
            &pk,
            "META",
            vec![("plan_id", s(plan_id)), ("updated_at", s(at.clone()))],
            None,
        );
        for existing in self.backend.partition(&pk, Some("STEP#"))? {
            if let Some(sk) = text(&existing, "sk") {
                self.delete(&pk, &sk, None);
            }
        }
        for (position, (kind, status, detail)) in steps.iter().enumerate() {
            let mut item = key(&pk, &format!("STEP#{position:04}"));
            item.insert("kind".into(), s(kind.clone()));
            item.insert("status".into(), s(status.clone()));
            item.insert("detail".into(), s(detail.clone()));
            item.insert("updated_at".into(), s(at.clone()));
            self.put(item, None);
        }
        Ok(())
    }

    fn set_step(&self, change: StepChange) -> StoreResult<()> {
        let pk = format!("INC#{}", change.incident_id);
        let sk = format!("STEP#{:04}", change.position);
        // As in SQL, a step that does not exist is not created.
        if self.current(&pk, &sk)?.is_none() {
            return Ok(());
        }
        self.update(
            &pk,
            &sk,
            vec![
                ("status", s(change.status)),
                ("detail", s(change.detail)),
                ("updated_at", s(now())),
            ],
            None,
        );
        Ok(())
    }

    fn stored_plan(&self, plan_id: &str) -> StoreResult<Option<StoredPlan>> {
        Ok(self
            .current(&format!("PLAN#{plan_id}"), "PLAN")?
            .map(|item| StoredPlan {
                status: text(&item, "status").unwrap_or_default(),
                incident_id: text(&item, "incident_id").unwrap_or_default(),
            }))
    }

    fn supersede_waiting_plans(&self, incident_id: &str, keep_plan_id: &str) -> StoreResult<()> {
        let at = now();
        let waiting = PlanStatus::AwaitingApproval.as_str();
        for other in self.backend.listed(&format!("PLANS#{waiting}"), None)? {
            if text(&other, "incident_id").as_deref() == Some(incident_id)
                && let Some(other_id) = text(&other, "plan_id")
                && other_id != keep_plan_id
            {
                self.update(
                    &format!("PLAN#{other_id}"),
                    "PLAN",
                    status_fields(PlanStatus::Superseded, &at),
                    None,
                );
            }
        }
        Ok(())
    }

    fn save_plan(&self, plan: PlanWrite, how: PlanSave) -> StoreResult<()> {
        let at = now();
        let pk = format!("PLAN#{}", plan.plan_id);
        let trigger = s(serde_json::to_string(plan.trigger)?);
        if how == PlanSave::RefreshTrigger {
            self.update(
                &pk,
                "PLAN",
                vec![("updated_at", s(at)), ("trigger", trigger)],
                None,
            );
            return Ok(());
        }
        let meta = self
            .current(&format!("INC#{}", plan.incident_id), "META")?
            .unwrap_or_default();
        let mut item = key(&pk, "PLAN");
        item.insert("plan_id".into(), s(plan.plan_id));
        item.insert("incident_id".into(), s(plan.incident_id));
        item.insert("plan".into(), s(serde_json::to_string(plan.plan)?));
        item.insert("trigger".into(), trigger);
        for field in ["cluster", "nodegroup", "cause"] {
            item.insert(field.into(), s(text(&meta, field).unwrap_or_default()));
        }
        for (name, value) in status_fields(PlanStatus::AwaitingApproval, &at) {
            item.insert(name.into(), value);
        }
        if how == PlanSave::Insert {
            item.insert("created_at".into(), s(at));
            self.put(item, Some(Condition::absent()));
        } else {
            // Reopened: a new item without the decision, created when it first was.
            let created = self
                .current(&pk, "PLAN")?
                .and_then(|before| text(&before, "created_at"))
                .unwrap_or(at);
            item.insert("created_at".into(), s(created));
            self.put(item, None);
        }
        Ok(())
    }

    fn set_plan_status(&self, change: PlanStatusChange) -> StoreResult<()> {
        let PlanStatusChange {
            plan_id,
            status,
            by,
            reason,
        } = change;
        let pk = format!("PLAN#{plan_id}");
        if self.current(&pk, "PLAN")?.is_none() {
            return Ok(());
        }
        let at = now();
        let mut set = status_fields(status, &at);
        if status.is_decision() {
            set.push(("decided_at", s(at)));
            set.push((
                "decided_by",
                by.map(s).unwrap_or(AttributeValue::Null(true)),
            ));
            set.push((
                "decision_reason",
                reason.map(s).unwrap_or(AttributeValue::Null(true)),
            ));
        }
        self.update(&pk, "PLAN", set, None);
        Ok(())
    }

    fn set_kill_switch(&self, on: bool, by: Option<&str>, reason: Option<&str>) -> StoreResult<()> {
        let mut item = key(KILL_SWITCH, "CTRL");
        item.insert("value".into(), s(if on { "on" } else { "off" }));
        item.insert("at".into(), s(now()));
        if let Some(by) = by {
            item.insert("set_by".into(), s(by));
        }
        if let Some(reason) = reason {
            item.insert("reason".into(), s(reason));
        }
        self.put(item, None);
        Ok(())
    }

    fn set_control(&self, name: &str, value: &str, by: &str) -> StoreResult<()> {
        let mut item = key(&format!("CTRL#{name}"), "CTRL");
        item.insert("value".into(), s(value));
        item.insert("set_by".into(), s(by));
        item.insert("at".into(), s(now()));
        self.put(item, None);
        Ok(())
    }

    fn ensure_control(&self, name: &str, value: &str) -> StoreResult<String> {
        let pk = format!("CTRL#{name}");
        if let Some(existing) = self
            .current(&pk, "CTRL")?
            .and_then(|item| text(&item, "value"))
        {
            return Ok(existing);
        }
        let mut item = key(&pk, "CTRL");
        item.insert("value".into(), s(value));
        item.insert("at".into(), s(now()));
        // Another writer may set it first: the commit then conflicts and this runs again.
        self.push(
            self.state_table(),
            key(&pk, "CTRL"),
            Op::Put(item),
            Some(Condition::absent()),
        );
        Ok(value.to_string())
    }

    fn kill_switch_at_commit(&self) -> StoreResult<Option<KillSwitch>> {
        let found = self.backend.get_state(KILL_SWITCH, "CTRL")?;
        // Every flip writes a new `at`: the commit holds only if the item is as read.
        let unchanged = match found.as_ref().and_then(|item| text(item, "at")) {
            Some(at) => Condition::new("#at = :at")
                .name("#at", "at")
                .value(":at", s(at)),
            None => Condition::absent(),
        };
        self.push(
            self.state_table(),
            key(KILL_SWITCH, "CTRL"),
            Op::Check,
            Some(unchanged),
        );
        Ok(super::reads::kill_switch_of(found.as_ref()))
    }

    fn lock_rate(&self, account: &str) -> StoreResult<()> {
        // A conditional bump of the account's rate item: of two replicas counting at once, the
        // second to commit conflicts and counts again.
        let rate_pk = format!("RATE#{account}");
        let version = self
            .backend
            .get_state(&rate_pk, "RATE")?
            .and_then(|item| number(&item, "version"));
        let mut rate = key(&rate_pk, "RATE");
        rate.insert("version".into(), n(version.unwrap_or(0) + 1));
        let condition = match version {
            Some(v) => Condition::new("#v = :v")
                .name("#v", "version")
                .value(":v", n(v)),
            None => Condition::absent(),
        };
        self.put(rate, Some(condition));
        Ok(())
    }

    fn record_mutation(&self, row: MutationRow) -> StoreResult<i64> {
        let keys = self.mutation_items(row);
        Ok(self.backend.reservations.reserve(keys))
    }

    fn release_mutation(&self, reservation: i64) -> StoreResult<()> {
        for item_key in self.backend.reservations.keys(reservation) {
            let pk = text(&item_key, "pk").unwrap_or_default();
            let sk = text(&item_key, "sk").unwrap_or_default();
            self.delete(&pk, &sk, None);
        }
        self.released.borrow_mut().push(reservation);
        Ok(())
    }

    fn add_breaker_failure(&self, failure: BreakerFailure) -> StoreResult<()> {
        let failure_sk = format!("{}#{}", failure.at, uuid::Uuid::new_v4().simple());
        let mut item = key(&format!("BRKF#{}", failure.scope), &failure_sk);
        item.insert("incident_id".into(), s(failure.incident_id));
        item.insert("reason".into(), s(failure.reason));
        item.insert(
            "expires_at".into(),
            n(time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 86_400),
        );
        self.put(item, None);
        Ok(())
    }

    fn breaker_open(&self, scope: &str) -> StoreResult<bool> {
        Ok(self
            .current(&format!("BRK#{scope}"), "BRK")?
            .is_some_and(|b| text(&b, "state").as_deref() == Some("open")))
    }

    fn breaker_failures_since(&self, scope: &str, window_start: &str) -> StoreResult<u32> {
        let pk = format!("BRKF#{scope}");
        let forgiven = self
            .current(&format!("BRK#{scope}"), "BRK")?
            .and_then(|b| text(&b, "forgiven_through"))
            .unwrap_or_default();
        let stored = self.backend.query(
            &self.backend.state,
            None,
            "#pk = :pk AND #sk >= :start",
            &[("#pk", "pk"), ("#sk", "sk")],
            &[(":pk", s(pk.as_str())), (":start", s(window_start))],
            true,
            None,
        )?;
        let counted = |sk: &str| sk >= window_start && sk > forgiven.as_str();
        let in_table = stored
            .iter()
            .filter_map(|f| text(f, "sk"))
            .filter(|sk| counted(sk))
            .count();
        // Failures this transaction buffered are not in the table yet.
        let buffered = self.buffered_keys(&pk).filter(|sk| counted(sk)).count();
        Ok(u32::try_from(in_table + buffered).unwrap_or(u32::MAX))
    }

    fn open_breaker(&self, scope: &str, at: &str, reason: &str) -> StoreResult<()> {
        let forgiven = self
            .current(&format!("BRK#{scope}"), "BRK")?
            .and_then(|b| text(&b, "forgiven_through"))
            .unwrap_or_default();
        let mut item = key(&format!("BRK#{scope}"), "BRK");
        item.insert("scope".into(), s(scope));
        item.insert("state".into(), s("open"));
        item.insert("opened_at".into(), s(at));
        item.insert("reason".into(), s(reason));
        item.insert("forgiven_through".into(), s(forgiven));
        item.insert("gsi3pk".into(), s("BREAKERS"));
        item.insert("gsi3sk".into(), s(at));
        self.put(item, None);
        Ok(())
    }

    fn reset_breaker(&self, scope: &str, by: &str) -> StoreResult<bool> {
        let pk = format!("BRK#{scope}");
        let Some(breaker) = self.current(&pk, "BRK")? else {
            return Ok(false);
        };
        if text(&breaker, "state").as_deref() != Some("open") {
            return Ok(false);
        }
        let last_failure = self
            .backend
            .query(
                &self.backend.state,
                None,
                "#pk = :pk",
                &[("#pk", "pk")],
                &[(":pk", s(format!("BRKF#{scope}")))],
                false,
                Some(1),
            )?
            .first()
            .and_then(|f| text(f, "sk"))
            .unwrap_or_default();
        self.update(
            &pk,
            "BRK",
            vec![
                ("state", s("closed")),
                ("closed_at", s(now())),
                ("closed_by", s(by)),
                ("forgiven_through", s(last_failure)),
            ],
            None,
        );
        Ok(true)
    }

    fn acquire_lease(&self, claim: LeaseClaim) -> StoreResult<bool> {
        let LeaseClaim {
            key: lease_key,
            holder,
            now_ms,
            expires_at_ms,
        } = claim;
        let pk = format!("LEASE#{lease_key}");
        let found = self.backend.get_state(&pk, "LEASE")?;
        let condition = match &found {
            None => Condition::absent(),
            Some(item) => {
                let current_holder = text(item, "holder").unwrap_or_default();
                let expires = number(item, "expires_at_ms").unwrap_or(0);
                if current_holder != holder && expires > now_ms {
                    return Ok(false);
                }
                // Still as read: nobody else took it in between.
                Condition::new("#h = :h AND #e = :e")
                    .name("#h", "holder")
                    .name("#e", "expires_at_ms")
                    .value(":h", s(current_holder))
                    .value(":e", n(expires))
            }
        };
        let mut item = key(&pk, "LEASE");
        item.insert("holder".into(), s(holder));
        item.insert("expires_at_ms".into(), n(expires_at_ms));
        item.insert("expires_at".into(), n(expires_at_ms / 1000 + 3600));
        self.put(item, Some(condition));
        Ok(true)
    }

    fn release_lease(&self, lease_key: &str, holder: &str) -> StoreResult<()> {
        let pk = format!("LEASE#{lease_key}");
        if self
            .backend
            .get_state(&pk, "LEASE")?
            .is_some_and(|item| text(&item, "holder").as_deref() == Some(holder))
        {
            self.delete(
                &pk,
                "LEASE",
                Some(
                    Condition::new("#h = :h")
                        .name("#h", "holder")
                        .value(":h", s(holder)),
                ),
            );
        }
        Ok(())
    }
}
