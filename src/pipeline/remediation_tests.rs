//! The remediation run below the integration suite, on [`super::test_bench`]: the incident is
//! filed as a new event would file it, and the run goes against the in-memory world.

use super::incident::IncidentChoice;
use super::remediation::Remediation;
use super::test_bench::{Bench, lab_000_world};
use crate::audit::{NodegroupKey, Outcome, Record};
use crate::core::checks::diagnose;
use crate::core::evidence::Evidence;
use crate::core::guard::{History, Mode};
use crate::core::journal::{Entry, OutcomeEntry};
use crate::core::plan::plan;
use crate::core::step::StepStatus;

fn key(evidence: &Evidence) -> NodegroupKey {
    NodegroupKey {
        account: evidence.trigger.account.clone(),
        region: evidence.trigger.region.clone(),
        cluster: evidence.nodegroup.cluster.clone(),
        nodegroup: evidence.nodegroup.name.clone(),
    }
}

/// Files the incident as a new event would, runs the remediation, and returns its records.
async fn run(bench: &Bench) -> Vec<Record> {
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
            bench.world(),
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
    let bench = Bench::new(Mode::Auto, lab_000_world(), Evidence::lab_000());
    let records = run(&bench).await;
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
    let routes = bench.world().routes.lock().unwrap();
    assert!(
        routes["rtb-new"]
            .iter()
            .any(|r| r.destination == "0.0.0.0/0"),
        "the default route was added: {routes:?}"
    );
}

#[tokio::test]
async fn a_failed_route_skips_the_cycle_and_concludes_failed() {
    let world = lab_000_world().failing("create_route", "UnauthorizedOperation");
    let bench = Bench::new(Mode::Auto, world, Evidence::lab_000());
    let records = run(&bench).await;
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
    let bench = Bench::new(Mode::DryRun, lab_000_world(), Evidence::lab_000());
    let records = run(&bench).await;
    assert_eq!(
        outcome(&records),
        (
            Outcome::Planned,
            vec![StepStatus::Planned, StepStatus::Planned]
        )
    );
    assert!(kinds(&records).contains(&"permission_check"));
    let intents: Vec<Entry> = entries(&records)
        .into_iter()
        .filter(|e| matches!(e, Entry::StepIntent(_)))
        .collect();
    assert!(
        intents
            .iter()
            .all(|e| matches!(e, Entry::StepIntent(i) if i.dry_run == Some(true))),
        "only the DryRun call is announced: {intents:?}"
    );
    assert_eq!(
        intents.len(),
        1,
        "the cycle has no dry run and sends nothing"
    );
    assert!(bench.world().routes.lock().unwrap()["rtb-new"].is_empty());
}

#[tokio::test]
async fn a_dry_run_the_endpoint_performed_was_announced_and_is_undone() {
    let world = lab_000_world().ignoring_dry_run();
    let bench = Bench::new(Mode::DryRun, world, Evidence::lab_000());
    let records = run(&bench).await;
    let kinds = kinds(&records);
    let intent = kinds.iter().position(|k| *k == "step_intent");
    let check = kinds.iter().position(|k| *k == "permission_check");
    assert!(
        intent.is_some() && intent < check,
        "the DryRun call is announced before it is sent: {kinds:?}"
    );
    let entries = entries(&records);
    assert!(entries.iter().any(|e| matches!(e,
        Entry::StepIntent(i) if i.dry_run == Some(true))));
    assert!(
        entries.iter().any(|e| matches!(e,
            Entry::StepIntent(i) if i.rollback == Some(true) && !i.calls.is_empty())),
        "the undo has an intent of its own"
    );
    assert!(entries.iter().any(|e| matches!(e,
        Entry::Rollback(r) if r.result.status == StepStatus::RolledBack)));
    assert!(
        bench.world().routes.lock().unwrap()["rtb-new"]
            .iter()
            .all(|r| r.destination != "0.0.0.0/0"),
        "dry-run changed nothing in the end"
    );
    assert_eq!(
        outcome(&records),
        (
            Outcome::Planned,
            vec![StepStatus::Planned, StepStatus::Planned]
        ),
        "the steps stay planned"
    );
}
