//! The store's contract, checked on both backends: SQLite (a file) and DynamoDB (tables in the
//! emulator, created as `nodemedic store init` creates them). Every scenario runs on each.

use std::time::Duration;

use nodemedic::audit::control::PlanStatus;
use nodemedic::audit::{AuditStore, ChainBreak, NodegroupKey, Outcome, RecordKind, SubjectScope};
use nodemedic::lab::Emulator;
use serde_json::json;

/// A fresh store of each backend: a SQLite file, and DynamoDB tables of their own.
async fn stores(emulator: &Emulator) -> Vec<(&'static str, AuditStore)> {
    let dir = std::env::temp_dir().join(format!("nodemedic-store-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sqlite = AuditStore::open(&dir.join("audit.db")).expect("sqlite");
    let client = aws_sdk_dynamodb::Client::new(&emulator.sdk_config());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (state, audit) = (format!("state-{suffix}"), format!("audit-{suffix}"));
    nodemedic::audit::dynamo::create_tables(&client, &state, &audit)
        .await
        .expect("tables");
    let dynamo = AuditStore::open_dynamo(client, &state, &audit, Duration::from_secs(86_400))
        .expect("dynamo");
    vec![("sqlite", sqlite), ("dynamodb", dynamo)]
}

fn key(nodegroup: &str) -> NodegroupKey {
    NodegroupKey {
        account: "123456789012".into(),
        region: "us-west-2".into(),
        cluster: "eks-workshop".into(),
        nodegroup: nodegroup.into(),
    }
}

async fn records_chain_and_verify(name: &str, store: &AuditStore) {
    store
        .write(|tx| {
            tx.open_incident("inc-1", &key("ng-1"), "unknown", None, "dry-run", "s")?;
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
            tx.append(
                None,
                Some("e2"),
                RecordKind::EventIgnored,
                &json!({"why": "not ours"}),
            )?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        store.read(|r| r.verify_chain()).await.unwrap(),
        Ok(3),
        "{name}"
    );
    let records = store.read(|r| r.records("inc-1")).await.unwrap();
    assert_eq!(records.len(), 2, "{name}");
    assert_eq!(records[1].prev_hash, records[0].hash, "{name}");
    let loose = store.read(|r| r.loose_records(10)).await.unwrap();
    assert_eq!(loose.len(), 1, "{name}");
    assert_eq!(loose[0].body["why"], "not ours", "{name}");
    let exported = store.read(|r| r.all_records(0)).await.unwrap();
    assert_eq!(exported.len(), 3, "{name}");
}

async fn a_failed_write_leaves_nothing_behind(name: &str, store: &AuditStore) {
    let result = store
        .write(|tx| {
            tx.append(None, Some("e1"), RecordKind::EventIgnored, &json!({}))?;
            tx.mark_event("e1", None, "ignored", None)?;
            Err::<(), _>(nodemedic::audit::AuditError::NoSuchIncident(
                "forced".into(),
            ))
        })
        .await;
    assert!(result.is_err(), "{name}");
    assert_eq!(
        store.read(|r| r.event_seen("e1")).await.unwrap(),
        None,
        "{name}"
    );
    assert_eq!(
        store.read(|r| r.verify_chain()).await.unwrap(),
        Ok(0),
        "{name}"
    );
}

async fn the_index_lists_incidents_with_their_steps_and_events(name: &str, store: &AuditStore) {
    store
        .write(|tx| {
            tx.open_incident(
                "inc-1",
                &key("ng-1"),
                "subnet_no_egress_route",
                Some("route-table:rtb-1"),
                "auto",
                "no route",
            )?;
            tx.mark_event("e1", Some("m1"), "incident", Some("inc-1"))?;
            tx.set_plan(
                "inc-1",
                "plan-1",
                &[
                    ("add_nat_route".into(), "planned".into(), String::new()),
                    ("cycle_nodegroup".into(), "planned".into(), String::new()),
                ],
            )?;
            tx.set_step("inc-1", 0, "applied", "route added")
        })
        .await
        .unwrap();
    store
        .write(|tx| {
            tx.mark_event("e1", Some("m2"), "duplicate", Some("inc-1"))?;
            tx.set_outcome("inc-1", "auto", Outcome::Failed)
        })
        .await
        .unwrap();
    let listed = store.read(|r| r.list(10)).await.unwrap();
    assert_eq!(listed.len(), 1, "{name}");
    let incident = &listed[0];
    assert_eq!(
        incident.events, 1,
        "{name}: the first disposition of an event wins"
    );
    assert_eq!(
        incident.outcome,
        nodemedic::audit::Outcome::Failed,
        "{name}"
    );
    assert_eq!(incident.plan_id.as_deref(), Some("plan-1"), "{name}");
    assert_eq!(incident.actions[0].status, "applied", "{name}");
    assert_eq!(incident.actions[1].status, "planned", "{name}");
    assert_eq!(incident.nodegroups, vec!["eks-workshop/ng-1"], "{name}");
    let seen = store.read(|r| r.event_seen("e1")).await.unwrap().unwrap();
    assert_eq!(seen.disposition, "incident", "{name}");
    let found = store
        .read(|r| r.incidents_for(&key("ng-1"), "subnet_no_egress_route"))
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{name}");
    let by_subject = store
        .read(|r| {
            r.incidents_for_subject(
                SubjectScope::near(&key("ng-1"), "route-table:rtb-1"),
                "subnet_no_egress_route",
            )
        })
        .await
        .unwrap();
    assert_eq!(by_subject.len(), 1, "{name}");
    let fixed = store
        .read(|r| r.last_fix_applied(&key("ng-1")))
        .await
        .unwrap();
    assert_eq!(fixed.map(|(id, _)| id), Some("inc-1".to_string()), "{name}");
    let on_subject = store
        .read(|r| r.last_fix_on_subject(SubjectScope::near(&key("ng-1"), "route-table:rtb-1")))
        .await
        .unwrap();
    assert_eq!(
        on_subject.map(|(id, _)| id),
        Some("inc-1".to_string()),
        "{name}"
    );
    assert_eq!(
        store
            .read(|r| r.incident_subject("inc-1"))
            .await
            .unwrap()
            .as_deref(),
        Some("route-table:rtb-1"),
        "{name}"
    );
}

async fn plans_wait_are_decided_and_come_back(name: &str, store: &AuditStore) {
    store
        .write(|tx| {
            tx.open_incident(
                "inc-1",
                &key("ng-1"),
                "subnet_no_egress_route",
                None,
                "auto",
                "s",
            )
        })
        .await
        .unwrap();
    let register = |id: &'static str| {
        let store = store.clone();
        async move {
            store
                .write(move |tx| tx.register_plan("inc-1", id, &json!({ "id": id }), &json!({})))
                .await
                .unwrap()
        }
    };
    let status = |id: &'static str| {
        let store = store.clone();
        async move { store.read(move |r| r.plan(id)).await.unwrap().unwrap() }
    };
    let decide = |id: &'static str, to: PlanStatus| {
        let store = store.clone();
        async move {
            store
                .write(move |tx| tx.set_plan_status(id, to, Some("alice"), Some("ok")))
                .await
                .unwrap()
        }
    };
    assert!(register("plan-a").await, "{name}: a new plan is announced");
    assert!(!register("plan-a").await, "{name}: waiting already");
    assert!(register("plan-b").await, "{name}");
    assert_eq!(
        status("plan-a").await.status,
        PlanStatus::Superseded,
        "{name}"
    );
    decide("plan-b", PlanStatus::Approved).await;
    let approved = store
        .read(|r| r.plans(Some(PlanStatus::Approved)))
        .await
        .unwrap();
    assert_eq!(approved.len(), 1, "{name}");
    assert_eq!(approved[0].decided_by.as_deref(), Some("alice"), "{name}");
    assert_eq!(approved[0].cluster, "eks-workshop", "{name}");
    assert!(
        !register("plan-b").await,
        "{name}: an approval is not reset"
    );
    assert_eq!(
        status("plan-b").await.status,
        PlanStatus::Approved,
        "{name}"
    );
    decide("plan-b", PlanStatus::Expired).await;
    assert!(
        register("plan-b").await,
        "{name}: an expired plan waits again"
    );
    assert_eq!(status("plan-b").await.decided_by, None, "{name}");
    decide("plan-b", PlanStatus::Rejected).await;
    assert!(!register("plan-b").await, "{name}: a rejection stands");
    assert_eq!(
        store.read(|r| r.plans(None)).await.unwrap().len(),
        2,
        "{name}"
    );
}

async fn controls_mutations_and_breakers(name: &str, store: &AuditStore) {
    assert_eq!(
        store.read(|r| r.kill_switch()).await.unwrap(),
        None,
        "{name}"
    );
    store
        .write(|tx| tx.set_kill_switch(true, Some("bob"), Some("storm")))
        .await
        .unwrap();
    let on = store.read(|r| r.kill_switch()).await.unwrap().unwrap();
    assert_eq!(on.reason.as_deref(), Some("storm"), "{name}");
    store
        .write(|tx| tx.set_kill_switch(false, None, None))
        .await
        .unwrap();
    assert_eq!(
        store.read(|r| r.kill_switch()).await.unwrap(),
        None,
        "{name}"
    );

    let reserve = |limit: u32| {
        let store = store.clone();
        async move {
            store
                .write(move |tx| {
                    tx.reserve_mutation("1", "rtb-1", "add_nat_route", "inc-1", "0000", limit)
                })
                .await
                .unwrap()
        }
    };
    let first = reserve(2).await.expect("under the limit");
    assert!(reserve(2).await.is_some(), "{name}");
    assert_eq!(reserve(2).await, None, "{name}: the limit holds");
    store
        .write(move |tx| tx.release_mutation(first))
        .await
        .unwrap();
    assert_eq!(
        store
            .read(|r| r.mutations_since("1", "0000"))
            .await
            .unwrap(),
        1,
        "{name}: a released reservation does not count"
    );
    assert!(
        store
            .read(|r| r.last_mutation("rtb-1", "add_nat_route"))
            .await
            .unwrap()
            .is_some(),
        "{name}"
    );
    assert!(
        store
            .read(|r| r.last_mutation("rtb-1", "cycle_nodegroup"))
            .await
            .unwrap()
            .is_none(),
        "{name}"
    );

    let scopes = vec!["vpc:vpc-1".to_string(), "global".to_string()];
    let fail = || {
        let (store, scopes) = (store.clone(), scopes.clone());
        async move {
            store
                .write(move |tx| {
                    tx.record_breaker_failure(
                        &scopes,
                        "inc-1",
                        "verification failed",
                        &|scope: &str| if scope == "global" { 6 } else { 2 },
                        "0000",
                    )
                })
                .await
                .unwrap()
        }
    };
    assert!(fail().await.is_empty(), "{name}");
    assert_eq!(fail().await, vec!["vpc:vpc-1"], "{name}");
    let open_scopes = scopes.clone();
    assert_eq!(
        store
            .read(move |r| r.open_breakers(&open_scopes))
            .await
            .unwrap(),
        vec!["vpc:vpc-1"],
        "{name}"
    );
    assert!(
        store
            .write(|tx| tx.reset_breaker("vpc:vpc-1", "alice"))
            .await
            .unwrap(),
        "{name}"
    );
    assert!(
        fail().await.is_empty(),
        "{name}: a reset forgives earlier failures"
    );
    assert_eq!(
        store.read(|r| r.breakers()).await.unwrap()[0].state,
        "closed",
        "{name}"
    );
}

async fn leases_are_exclusive_and_expire(name: &str, store: &AuditStore) {
    let take = |holder: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .write(move |tx| tx.acquire_lease("nodegroup:a", holder, now, now + 1000))
                .await
                .unwrap()
        }
    };
    assert!(take("replica-1", 0).await, "{name}");
    assert!(
        !take("replica-2", 10).await,
        "{name}: held by the other replica"
    );
    assert!(take("replica-1", 20).await, "{name}: renewed by its holder");
    assert!(take("replica-2", 1020).await, "{name}: expired, taken over");
    store
        .write(|tx| tx.release_lease("nodegroup:a", "replica-1"))
        .await
        .unwrap();
    assert_eq!(
        store
            .read(|r| r.lease("nodegroup:a"))
            .await
            .unwrap()
            .map(|l| l.holder),
        Some("replica-2".to_string()),
        "{name}: only the holder releases"
    );
}

/// Many writers appending to one chain at once: every record lands, in one unbroken chain.
async fn concurrent_writers_keep_one_chain(name: &str, store: &AuditStore) {
    store
        .write(|tx| tx.open_incident("inc-c", &key("ng-c"), "unknown", None, "auto", "s"))
        .await
        .unwrap();
    let mut writers = Vec::new();
    for writer in 0..4 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..5 {
                store
                    .write(move |tx| {
                        tx.append(
                            Some("inc-c"),
                            None,
                            RecordKind::Evidence,
                            &json!({ "writer": writer, "n": n }),
                        )
                    })
                    .await
                    .expect("append");
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(
        store.read(|r| r.records("inc-c")).await.unwrap().len(),
        20,
        "{name}"
    );
    assert_eq!(
        store.read(|r| r.verify_chain()).await.unwrap(),
        Ok(20),
        "{name}"
    );
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $scenario() {
                let emulator = Emulator::start(0.5).await.expect("emulator");
                for (name, store) in stores(&emulator).await {
                    super::$scenario(name, &store).await;
                }
            }
        )*
    };
}

mod on_both {
    on_both_backends!(
        records_chain_and_verify,
        a_failed_write_leaves_nothing_behind,
        the_index_lists_incidents_with_their_steps_and_events,
        plans_wait_are_decided_and_come_back,
        controls_mutations_and_breakers,
        leases_are_exclusive_and_expire,
        concurrent_writers_keep_one_chain,
    );

    use super::stores;
    use nodemedic::lab::Emulator;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampering_with_dynamodb_records_is_detected() {
    let emulator = Emulator::start(0.5).await.expect("emulator");
    let (_, store) = stores(&emulator).await.remove(1);
    store
        .write(|tx| {
            tx.open_incident("inc-t", &key("ng-t"), "unknown", None, "auto", "s")?;
            tx.append(Some("inc-t"), None, RecordKind::Evidence, &json!({"x": 1}))?;
            tx.append(Some("inc-t"), None, RecordKind::Outcome, &json!({"x": 2}))
        })
        .await
        .unwrap();
    let location = store.location();
    let audit_table = location
        .rsplit(',')
        .next()
        .expect("dynamodb:state,audit")
        .to_string();
    let client = aws_sdk_dynamodb::Client::new(&emulator.sdk_config());
    let chain_key = |seq: i64| {
        std::collections::HashMap::from([
            (
                "chain".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S("inc-t".into()),
            ),
            (
                "seq".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::N(seq.to_string()),
            ),
        ])
    };
    client
        .update_item()
        .table_name(&audit_table)
        .set_key(Some(chain_key(1)))
        .update_expression("SET body = :b")
        .expression_attribute_values(
            ":b",
            aws_sdk_dynamodb::types::AttributeValue::S("{\"x\":9}".into()),
        )
        .send()
        .await
        .expect("tamper");
    assert_eq!(
        store.read(|r| r.verify_chain()).await.unwrap(),
        Err(ChainBreak {
            chain: "inc-t".into(),
            seq: 1,
            why: "hash does not match the record's content".into()
        })
    );
    client
        .update_item()
        .table_name(&audit_table)
        .set_key(Some(chain_key(1)))
        .update_expression("SET body = :b")
        .expression_attribute_values(
            ":b",
            aws_sdk_dynamodb::types::AttributeValue::S("{\"x\":1}".into()),
        )
        .send()
        .await
        .expect("restore");
    assert_eq!(store.read(|r| r.verify_chain()).await.unwrap(), Ok(2));
    client
        .delete_item()
        .table_name(&audit_table)
        .set_key(Some(chain_key(2)))
        .send()
        .await
        .expect("delete the newest");
    let verified = store.read(|r| r.verify_chain()).await.unwrap();
    assert!(
        matches!(&verified, Err(broken) if broken.why.contains("records were removed")),
        "{verified:?}"
    );
}

/// Another replica turns the kill switch on after a transaction read it off and before that
/// transaction commits a step's intent: the commit conflicts, the transaction runs again and
/// sees the switch on. (SQLite's write lock keeps the flip out of the transaction altogether.)
#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_a_kill_switch_flipped_before_the_commit_is_seen_by_it() {
    let emulator = Emulator::start(0.5).await.expect("emulator");
    let (_, store) = stores(&emulator)
        .await
        .into_iter()
        .find(|(name, _)| *name == "dynamodb")
        .expect("dynamodb store");
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let flipper = store.clone();
    let seen = store
        .write(|tx| {
            let seen = tx.kill_switch_at_commit()?;
            if attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                let flipper = flipper.clone();
                // A thread of its own, outside any runtime, as another replica would be.
                std::thread::spawn(move || {
                    flipper
                        .write_blocking(|tx| {
                            tx.set_kill_switch(true, Some("bob"), Some("change freeze"))
                        })
                        .expect("flip");
                })
                .join()
                .expect("flipper");
            }
            tx.append(None, None, RecordKind::Evidence, &json!({"intent": 1}))?;
            Ok(seen.map(|switch| switch.set_by))
        })
        .await
        .unwrap();
    assert_eq!(
        seen,
        Some(Some("bob".to_string())),
        "the commit ran again under the switch"
    );
    assert!(attempts.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_a_deleted_head_is_a_broken_chain_and_its_records_still_export() {
    let emulator = Emulator::start(0.5).await.expect("emulator");
    let (_, store) = stores(&emulator).await.remove(1);
    store
        .write(|tx| {
            tx.open_incident("inc-h", &key("ng-h"), "unknown", None, "auto", "s")?;
            tx.append(Some("inc-h"), None, RecordKind::Evidence, &json!({"x": 1}))
                .map(drop)
        })
        .await
        .unwrap();
    assert_eq!(store.read(|r| r.verify_chain()).await.unwrap(), Ok(1));
    let location = store.location();
    let state_table = location
        .trim_start_matches("dynamodb:")
        .split(',')
        .next()
        .expect("dynamodb:state,audit")
        .to_string();
    aws_sdk_dynamodb::Client::new(&emulator.sdk_config())
        .delete_item()
        .table_name(&state_table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("CHAIN#inc-h".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("HEAD".into()),
        )
        .send()
        .await
        .expect("delete the head");
    let verified = store.read(|r| r.verify_chain()).await.unwrap();
    assert!(
        matches!(&verified, Err(broken) if broken.chain == "inc-h" && broken.why.contains("no head")),
        "{verified:?}"
    );
    let exported = store.read(|r| r.all_records(0)).await.unwrap();
    assert!(
        exported.iter().any(|r| r.chain == "inc-h"),
        "the incident is still exported"
    );
}
