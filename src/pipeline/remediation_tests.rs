//! The remediation run below the integration suite: a real pipeline on a temporary SQLite store,
//! the in-memory world of `act::fake` behind the actuator seam, and the evidence of lab 000 as
//! collection would have given it. No AWS call is made (the client pool is never asked).

use std::collections::HashMap;
use std::sync::Arc;

use super::incident::IncidentChoice;
use super::remediation::Remediation;
use super::{Pipeline, PipelineConfig};
use crate::act::fake::FakeWorld;
use crate::audit::{AuditStore, NodegroupKey, Outcome, Record};
use crate::aws::{CallerIdentity, ClientPool};
use crate::core::checks::diagnose;
use crate::core::evidence::Evidence;
use crate::core::guard::{History, Mode};
use crate::core::journal::{Entry, OutcomeEntry};
use crate::core::plan::plan;
use crate::core::step::StepStatus;
use crate::settings::{Overrides, Settings};

struct Bench {
    pipeline: Pipeline,
    store: AuditStore,
    dir: std::path::PathBuf,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bench(mode: Mode) -> Bench {
    let dir = std::env::temp_dir().join(format!("nodemedic-run-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = AuditStore::open(&dir.join("audit.db")).unwrap();
    let settings = Settings::load_with_env(&Overrides::default(), Some(HashMap::new())).unwrap();
    let mut config = PipelineConfig::from_settings(&settings);
    config.policy.mode = mode;
    config.verify.poll_secs = 0.01;
    config.remediation.nodegroup_poll_secs = 0.01;
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-west-2"))
        .build();
    let clients = Arc::new(ClientPool::new(
        sdk,
        CallerIdentity::new("123456789012", "arn:aws:iam::123456789012:root"),
        None,
    ));
    Bench {
        pipeline: Pipeline::new(config, store.clone(), clients),
        store,
        dir,
    }
}

/// Lab 000's world: the node subnet's table has no default route; the nodegroup is ACTIVE and
/// relaunches into an instance that comes InService.
fn lab_000_world() -> FakeWorld {
    let world = FakeWorld::default()
        .with_table("rtb-new", Vec::new())
        .with_nodegroup("ACTIVE", 0, 1, 1);
    *world.in_service.lock().unwrap() = 1;
    world
}

fn key(evidence: &Evidence) -> NodegroupKey {
    NodegroupKey {
        account: evidence.trigger.account.clone(),
        region: evidence.trigger.region.clone(),
        cluster: evidence.nodegroup.cluster.clone(),
        nodegroup: evidence.nodegroup.name.clone(),
    }
}

/// Files the incident as a new event would, runs the remediation, and returns its records.
async fn run(bench: &Bench, world: &FakeWorld) -> Vec<Record> {
    let evidence = Evidence::lab_000();
    let diagnosis = diagnose(&evidence);
    let plan = plan(&diagnosis, &evidence);
    let key = key(&evidence);
    let steps: Vec<(String, String, String)> = plan
        .steps
        .iter()
        .map(|s| (s.fix.code().into(), "planned".into(), s.reason.clone()))
        .collect();
    bench
        .store
        .write_blocking(|tx| {
            tx.open_incident("inc-run", &key, "subnet_no_egress_route", None, "auto", "")?;
            tx.set_plan("inc-run", &plan.id, &steps)
        })
        .unwrap();
    bench
        .pipeline
        .remediate_with(
            Remediation {
                incident: IncidentChoice {
                    id: "inc-run".into(),
                    is_new: true,
                    previous_outcome: None,
                },
                key: &key,
                trigger: &evidence.trigger,
                message_id: None,
                evidence: &evidence,
                diagnosis: &diagnosis,
                plan: &plan,
                history: History::default(),
                approval: None,
            },
            world,
        )
        .await
        .unwrap();
    bench.store.read_blocking(|c| c.records("inc-run")).unwrap()
}

fn entries(records: &[Record]) -> Vec<Entry> {
    records
        .iter()
        .map(|r| Entry::decode(&r.kind, &r.body).unwrap())
        .collect()
}

fn outcome(records: &[Record]) -> (Outcome, Vec<StepStatus>) {
    match entries(records).pop() {
        Some(Entry::Outcome(OutcomeEntry::Concluded { outcome, steps, .. })) => (outcome, steps),
        other => panic!("the run did not conclude: {other:?}"),
    }
}

fn kinds(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.kind.as_str()).collect()
}

#[tokio::test]
async fn auto_mode_routes_cycles_verifies_and_concludes_fixed() {
    let bench = bench(Mode::Auto);
    let world = lab_000_world();
    let records = run(&bench, &world).await;
    assert_eq!(
        outcome(&records),
        (
            Outcome::Fixed,
            vec![StepStatus::Applied, StepStatus::Applied]
        )
    );
    assert_eq!(
        kinds(&records),
        [
            "guard_decision",
            "step_intent",
            "step_result",
            "guard_decision",
            "step_intent",
            "step_result",
            "verification",
            "outcome"
        ]
    );
    let routes = world.routes.lock().unwrap();
    assert!(
        routes["rtb-new"]
            .iter()
            .any(|r| r.destination == "0.0.0.0/0"),
        "the default route was added: {routes:?}"
    );
}

#[tokio::test]
async fn a_failed_route_skips_the_cycle_and_concludes_failed() {
    let bench = bench(Mode::Auto);
    let world = lab_000_world().failing("create_route", "UnauthorizedOperation");
    let records = run(&bench, &world).await;
    assert_eq!(
        outcome(&records),
        (
            Outcome::Failed,
            vec![StepStatus::Failed, StepStatus::Skipped]
        )
    );
    let skipped = entries(&records).into_iter().any(|e| {
        matches!(&e, Entry::GuardDecision(g)
            if g.decision == crate::core::guard::after_a_failure())
    });
    assert!(
        skipped,
        "the cycle is refused after the failure: {:?}",
        kinds(&records)
    );
    assert!(
        !kinds(&records).contains(&"verification"),
        "nothing was applied, so nothing is verified"
    );
}

#[tokio::test]
async fn dry_run_checks_permissions_and_changes_nothing() {
    let bench = bench(Mode::DryRun);
    let world = lab_000_world();
    let records = run(&bench, &world).await;
    assert_eq!(
        outcome(&records),
        (
            Outcome::Planned,
            vec![StepStatus::Planned, StepStatus::Planned]
        )
    );
    assert!(kinds(&records).contains(&"permission_check"));
    assert!(!kinds(&records).contains(&"step_intent"));
    assert!(world.routes.lock().unwrap()["rtb-new"].is_empty());
}
