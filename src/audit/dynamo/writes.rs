//! Writes: what one transaction records and changes, buffered on the transaction.

use super::*;

impl Writes for DynamoTx<'_> {
    fn reads(&self) -> &dyn Reads {
        self.backend
    }

    fn append(
        &self,
        incident_id: Option<&str>,
        event_id: Option<&str>,
        kind: RecordKind,
        body: &Value,
    ) -> Result<i64, AuditError> {
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

    fn mark_event(
        &self,
        event_id: &str,
        message_id: Option<&str>,
        disposition: &str,
        incident_id: Option<&str>,
    ) -> Result<(), AuditError> {
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

    fn open_incident(
        &self,
        incident_id: &str,
        key_: &NodegroupKey,
        cause: &str,
        subject: Option<&str>,
        mode: &str,
        summary: &str,
    ) -> Result<(), AuditError> {
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
        self.join_nodegroup(incident_id, &key_.cluster, &key_.nodegroup)
    }

    fn join_nodegroup(
        &self,
        incident_id: &str,
        cluster: &str,
        nodegroup: &str,
    ) -> Result<(), AuditError> {
        self.put(
            key(
                &format!("INC#{incident_id}"),
                &format!("NG#{cluster}/{nodegroup}"),
            ),
            None,
        );
        Ok(())
    }

    fn set_outcome(
        &self,
        incident_id: &str,
        mode: &str,
        outcome: Outcome,
    ) -> Result<(), AuditError> {
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

    fn set_plan(
        &self,
        incident_id: &str,
        plan_id: &str,
        steps: &[(String, String, String)],
    ) -> Result<(), AuditError> {
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

    fn set_step(
        &self,
        incident_id: &str,
        position: usize,
        status: &str,
        detail: &str,
    ) -> Result<(), AuditError> {
        let pk = format!("INC#{incident_id}");
        let sk = format!("STEP#{position:04}");
        // As in SQL, a step that does not exist is not created.
        if self.current(&pk, &sk)?.is_none() {
            return Ok(());
        }
        self.update(
            &pk,
            &sk,
            vec![
                ("status", s(status)),
                ("detail", s(detail)),
                ("updated_at", s(now())),
            ],
            None,
        );
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
        let pk = format!("PLAN#{plan_id}");
        let before = self.current(&pk, "PLAN")?;
        let waiting = PlanStatus::AwaitingApproval.as_str();
        for other in self.backend.listed(&format!("PLANS#{waiting}"), None)? {
            if text(&other, "incident_id").as_deref() == Some(incident_id)
                && text(&other, "plan_id").as_deref() != Some(plan_id)
                && let Some(other_id) = text(&other, "plan_id")
            {
                self.update(
                    &format!("PLAN#{other_id}"),
                    "PLAN",
                    status_fields(PlanStatus::Superseded, &at),
                    None,
                );
            }
        }
        let meta = self
            .current(&format!("INC#{incident_id}"), "META")?
            .unwrap_or_default();
        let mut item = key(&pk, "PLAN");
        item.insert("plan_id".into(), s(plan_id));
        item.insert("incident_id".into(), s(incident_id));
        item.insert("plan".into(), s(serde_json::to_string(plan)?));
        item.insert("trigger".into(), s(serde_json::to_string(trigger)?));
        for field in ["cluster", "nodegroup", "cause"] {
            item.insert(field.into(), s(text(&meta, field).unwrap_or_default()));
        }
        for (name, value) in status_fields(PlanStatus::AwaitingApproval, &at) {
            item.insert(name.into(), value);
        }
        match before.as_ref().and_then(|b| text(b, "status")) {
            None => {
                item.insert("created_at".into(), s(at));
                self.put(item, Some(Condition::absent()));
                Ok(true)
            }
            Some(status) if PlanStatus::settled(&status) => {
                // The latest event of the same incident is what an approval re-collects for.
                if status == waiting
                    && before
                        .as_ref()
                        .and_then(|b| text(b, "incident_id"))
                        .as_deref()
                        == Some(incident_id)
                {
                    self.update(
                        &pk,
                        "PLAN",
                        vec![
                            ("updated_at", s(at)),
                            ("trigger", s(serde_json::to_string(trigger)?)),
                        ],
                        None,
                    );
                }
                Ok(false)
            }
            Some(_) => {
                let created = before
                    .as_ref()
                    .and_then(|b| text(b, "created_at"))
                    .unwrap_or_else(|| at.clone());
                item.insert("created_at".into(), s(created));
                self.put(item, None);
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

    fn set_kill_switch(
        &self,
        on: bool,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), AuditError> {
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

    fn reserve_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
        since: &str,
        limit: u32,
    ) -> Result<Option<i64>, AuditError> {
        // Reservations of one account are serialised on its rate item, so that replicas
        // counting at once cannot all pass the limit.
        let rate_pk = format!("RATE#{account}");
        let version = self
            .backend
            .get_state(&rate_pk, "RATE")?
            .and_then(|item| number(&item, "version"));
        if self.backend.mutations_since(account, since)? >= limit {
            return Ok(None);
        }
        let mut rate = key(&rate_pk, "RATE");
        rate.insert("version".into(), n(version.unwrap_or(0) + 1));
        let condition = match version {
            Some(v) => Condition::new("#v = :v")
                .name("#v", "version")
                .value(":v", n(v)),
            None => Condition::absent(),
        };
        self.put(rate, Some(condition));
        let keys = self.mutation_items(account, resource, fix, incident_id);
        let id = self
            .backend
            .next_reservation
            .fetch_add(1, Ordering::Relaxed);
        if let Ok(mut reservations) = self.backend.reservations.lock() {
            reservations.insert(id, keys);
        }
        Ok(Some(id))
    }

    fn release_mutation(&self, seq: i64) -> Result<(), AuditError> {
        let keys = self
            .backend
            .reservations
            .lock()
            .ok()
            .and_then(|r| r.get(&seq).cloned())
            .unwrap_or_default();
        for item_key in keys {
            let pk = text(&item_key, "pk").unwrap_or_default();
            let sk = text(&item_key, "sk").unwrap_or_default();
            self.delete(&pk, &sk, None);
        }
        self.released.borrow_mut().push(seq);
        Ok(())
    }

    fn record_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
    ) -> Result<(), AuditError> {
        self.mutation_items(account, resource, fix, incident_id);
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
            let failure_sk = format!("{at}#{}", uuid::Uuid::new_v4().simple());
            let mut failure = key(&format!("BRKF#{scope}"), &failure_sk);
            failure.insert("incident_id".into(), s(incident_id));
            failure.insert("reason".into(), s(reason));
            failure.insert(
                "expires_at".into(),
                n(time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 86_400),
            );
            self.put(failure, None);
            let breaker = self.current(&format!("BRK#{scope}"), "BRK")?;
            if breaker
                .as_ref()
                .is_some_and(|b| text(b, "state").as_deref() == Some("open"))
            {
                continue;
            }
            let forgiven = breaker
                .as_ref()
                .and_then(|b| text(b, "forgiven_through"))
                .unwrap_or_default();
            let earlier = self
                .backend
                .query(
                    &self.backend.state,
                    None,
                    "#pk = :pk AND #sk >= :start",
                    &[("#pk", "pk"), ("#sk", "sk")],
                    &[
                        (":pk", s(format!("BRKF#{scope}"))),
                        (":start", s(window_start)),
                    ],
                    true,
                    None,
                )?
                .iter()
                .filter(|f| text(f, "sk").is_some_and(|sk| sk > forgiven))
                .count() as u32;
            // The failure just buffered is not in the table yet.
            let failures = earlier + 1;
            if failures >= threshold_for(scope) {
                let mut item = key(&format!("BRK#{scope}"), "BRK");
                item.insert("scope".into(), s(scope.clone()));
                item.insert("state".into(), s("open"));
                item.insert("opened_at".into(), s(at.clone()));
                item.insert(
                    "reason".into(),
                    s(format!(
                        "{failures} failures since {window_start}: {reason}"
                    )),
                );
                item.insert("forgiven_through".into(), s(forgiven));
                item.insert("gsi3pk".into(), s("BREAKERS"));
                item.insert("gsi3sk".into(), s(at.clone()));
                self.put(item, None);
                opened.push(scope.clone());
            }
        }
        Ok(opened)
    }

    fn reset_breaker(&self, scope: &str, by: &str) -> Result<bool, AuditError> {
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

    fn acquire_lease(
        &self,
        lease_key: &str,
        holder: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<bool, AuditError> {
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

    fn release_lease(&self, lease_key: &str, holder: &str) -> Result<(), AuditError> {
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
