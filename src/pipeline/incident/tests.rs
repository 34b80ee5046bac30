use super::*;
use crate::core::plan::{Action, FixKind, Step};

fn plan_with(steps: usize) -> Plan {
    let mut plan = Plan::empty();
    plan.steps = (0..steps)
        .map(|_| Step {
            fix: FixKind::AddNatRoute,
            action: Action::CreateRoute {
                route_table_id: "rtb".into(),
                destination_cidr_block: "0.0.0.0/0".into(),
                nat_gateway_id: "nat".into(),
            },
            reason: String::new(),
            needs_review: None,
        })
        .collect();
    plan
}

fn run(statuses: &[StepStatus], rolled_back: bool) -> Run {
    Run {
        statuses: statuses.to_vec(),
        rolled_back,
        ..Run::default()
    }
}

#[test]
fn outcomes_follow_what_the_run_did() {
    use StepStatus::*;
    assert_eq!(
        outcome_of(&run(&[Applied, Applied], false), &plan_with(2), None),
        Outcome::Fixed
    );
    assert_eq!(
        outcome_of(&run(&[Applied, Failed], false), &plan_with(2), None),
        Outcome::Failed
    );
    assert_eq!(
        outcome_of(&run(&[RolledBack, Applied], true), &plan_with(2), None),
        Outcome::Failed
    );
    assert_eq!(
        outcome_of(&run(&[Planned, Planned], false), &plan_with(2), None),
        Outcome::Planned
    );
    assert_eq!(
        outcome_of(&run(&[Skipped], false), &plan_with(1), None),
        Outcome::Planned
    );
    assert_eq!(
        outcome_of(&run(&[], false), &plan_with(0), None),
        Outcome::NoFix
    );
    assert_eq!(
        outcome_of(
            &run(&[Skipped], false),
            &plan_with(1),
            Some(Outcome::Failed)
        ),
        Outcome::Failed,
        "a failure is not hidden by a later run the guard held back"
    );
    assert_eq!(
        outcome_of(
            &run(&[Applied], false),
            &plan_with(1),
            Some(Outcome::Failed)
        ),
        Outcome::Fixed
    );
}

#[test]
fn a_launch_depends_on_its_keys_route_tables_and_vpc() {
    let evidence = Evidence::lab_002();
    let subjects = related_subjects(&evidence);
    assert!(
        subjects.contains(&format!("key:{}", crate::core::evidence::fixtures::KEY_ARN)),
        "{subjects:?}"
    );
    // The storm subject of the key finding is among them.
    let diagnosis = crate::core::checks::diagnose(&evidence);
    let subject = diagnosis
        .primary()
        .and_then(|f| storm_subject(&f.subject))
        .unwrap();
    assert!(subjects.contains(&subject), "{subject} in {subjects:?}");

    let evidence = Evidence::lab_000();
    let subjects = related_subjects(&evidence);
    assert!(
        subjects.iter().any(|s| s.starts_with("route-table:")),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| s.starts_with("vpc:")),
        "{subjects:?}"
    );
    let mut sorted = subjects.clone();
    sorted.sort();
    assert_eq!(
        subjects, sorted,
        "sorted, so locks are always taken in one order"
    );
    let diagnosis = crate::core::checks::diagnose(&evidence);
    let subject = diagnosis
        .primary()
        .and_then(|f| storm_subject(&f.subject))
        .unwrap();
    assert!(subjects.contains(&subject), "{subject} in {subjects:?}");
}

fn summary(id: &str, outcome: Outcome, updated_at: &str) -> IncidentSummary {
    IncidentSummary {
        incident_id: id.into(),
        account: "1".into(),
        region: "r".into(),
        cluster: "c".into(),
        nodegroup: "n".into(),
        cause: "subnet_no_egress_route".into(),
        mode: "auto".into(),
        outcome,
        summary: String::new(),
        plan_id: None,
        opened_at: updated_at.into(),
        updated_at: updated_at.into(),
        events: 1,
        actions: Vec::new(),
        nodegroups: Vec::new(),
    }
}

#[test]
fn a_failure_needs_a_human_however_long_ago_until_a_fix_succeeds() {
    let window = "2026-11-21T11:00:00.000Z";
    let failed_long_ago = summary("inc-old", Outcome::Failed, "2026-01-01T00:00:00.000Z");
    let planned_now = summary("inc-new", Outcome::Planned, "2026-11-21T11:30:00.000Z");
    let history = base_history(
        &[planned_now.clone(), failed_long_ago.clone()],
        "inc-new",
        window,
    );
    assert_eq!(history.failed_fix.as_deref(), Some("inc-old"));
    let fixed_since = summary("inc-fixed", Outcome::Fixed, "2026-06-01T00:00:00.000Z");
    let history = base_history(
        &[planned_now.clone(), fixed_since, failed_long_ago],
        "inc-new",
        window,
    );
    assert_eq!(history.failed_fix, None, "a later success settles it");
    assert_eq!(
        history.fix_did_not_hold, None,
        "that success is outside the window"
    );
    let fixed_recently = summary("inc-fixed", Outcome::Fixed, "2026-11-21T11:10:00.000Z");
    let history = base_history(&[planned_now, fixed_recently], "inc-new", window);
    assert_eq!(history.fix_did_not_hold.as_deref(), Some("inc-fixed"));
}

#[test]
fn an_approval_is_used_up_only_by_what_the_run_did() {
    use StepStatus::*;
    assert_eq!(
        approved_plan_status(&run(&[Applied, Applied], false)),
        Some(PlanStatus::Applied)
    );
    assert_eq!(
        approved_plan_status(&run(&[Applied, Failed], false)),
        Some(PlanStatus::Failed)
    );
    assert_eq!(
        approved_plan_status(&run(&[RolledBack, Applied], true)),
        Some(PlanStatus::Failed)
    );
    assert_eq!(
        approved_plan_status(&run(&[Skipped, Skipped], false)),
        Some(PlanStatus::Refused)
    );
    assert_eq!(
        approved_plan_status(&run(&[Planned, Planned], false)),
        None,
        "held by the kill switch: the approval waits for the next pass"
    );
}

#[test]
fn shared_resources_name_a_storm_subject_and_others_do_not() {
    assert_eq!(
        storm_subject(&Subject::Key {
            key_arn: "arn:k".into(),
            policy: None,
            service_linked_role: "r".into(),
            cross_account: false,
            explicit_deny: None,
            doubt: None
        }),
        Some("key:arn:k".into())
    );
    assert_eq!(storm_subject(&Subject::Resource { id: "x".into() }), None);
    assert_eq!(storm_subject(&Subject::None), None);
}
