//! Golden tests: each entry serialises to the bytes the code wrote before the journal was typed.
//! The right-hand `json!` literals are those writers, copied as they were (same keys, same order),
//! so a record written by an older binary hashes and decodes the same.

use serde_json::{Value, json};

use super::*;
use crate::core::checks::diagnose;
use crate::core::evidence::fixtures::{self, launch};
use crate::core::plan::plan;
use crate::core::trigger::{LaunchOutcome, TriggerKind};

const AT: &str = "2026-11-30T20:00:00.000Z";

fn trigger() -> Trigger {
    fixtures::trigger(TriggerKind::Launch(launch(LaunchOutcome::Unsuccessful)))
}

fn result() -> StepResult {
    StepResult {
        status: StepStatus::Applied,
        detail: "route 0.0.0.0/0 → nat-a added to rtb-node".into(),
        before: json!({"routes": []}),
        after: json!({"routes": ["0.0.0.0/0"]}),
        changed: true,
    }
}

fn calls() -> Vec<ApiCall> {
    vec![ApiCall {
        operation: "ec2:CreateRoute".into(),
        parameters: json!({"RouteTableId": "rtb-node", "NatGatewayId": "nat-a"}),
    }]
}

/// The entry writes exactly `today`, and reads back as itself.
fn golden(entry: Entry, today: Value) {
    let body = entry.body().unwrap();
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        serde_json::to_string(&today).unwrap(),
        "{} body changed",
        entry.kind().as_str()
    );
    let decoded = Entry::decode(entry.kind().as_str(), &today).unwrap();
    assert_eq!(decoded, entry);
}

#[test]
fn events_keep_their_bodies() {
    let trigger = trigger();
    let message_id = Some("m-1".to_string());
    golden(
        Entry::MessageRejected(MessageRejected {
            message_id: message_id.clone(),
            receive_count: 2,
            reason: "body is not JSON".into(),
            body_excerpt: "nope".into(),
        }),
        json!({
            "message_id": message_id,
            "receive_count": 2,
            "reason": "body is not JSON",
            "body_excerpt": "nope",
        }),
    );
    let detail = json!({"event_id": "e-1", "reason": "not ours"});
    golden(
        Entry::EventIgnored(EventIgnored {
            event: detail.clone(),
            reason: "not ours".into(),
            message_id: message_id.clone(),
        }),
        json!({ "event": detail, "reason": "not ours", "message_id": message_id }),
    );
    golden(
        Entry::AccountRefused(AccountRefused {
            event_id: "e-1".into(),
            account: "999999999999".into(),
            region: trigger.region.clone(),
            reason: "not served".into(),
            trigger: trigger.clone(),
            message_id: None,
        }),
        json!({
            "event_id": "e-1",
            "account": "999999999999",
            "region": trigger.region,
            "reason": "not served",
            "trigger": trigger,
            "message_id": Option::<String>::None,
        }),
    );
    golden(
        Entry::EventDuplicate(EventDuplicate {
            message_id: message_id.clone(),
            first_disposition: "incident".into(),
        }),
        json!({ "message_id": message_id, "first_disposition": "incident" }),
    );
    golden(
        Entry::CollectionFailed(CollectionFailed {
            error: "throttled".into(),
            trigger: trigger.clone(),
        }),
        json!({ "error": "throttled", "trigger": trigger }),
    );
}

#[test]
fn received_healthy_and_superseded_events_keep_each_shape() {
    let trigger = trigger();
    let message_id = Some("m-1".to_string());
    let trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".to_string());
    golden(
        Entry::EventReceived(EventReceived {
            trigger: trigger.clone(),
            message_id: message_id.clone(),
            receive_count: Some(1),
            resumed: None,
            trace_id: trace_id.clone(),
        }),
        json!({ "trigger": trigger, "message_id": message_id, "receive_count": 1, "trace_id": trace_id }),
    );
    golden(
        Entry::EventReceived(EventReceived {
            trigger: trigger.clone(),
            message_id: None,
            receive_count: None,
            resumed: Some(true),
            trace_id: None,
        }),
        json!({
            "trigger": trigger,
            "message_id": Option::<String>::None,
            "resumed": true,
            "trace_id": Option::<String>::None,
        }),
    );
    // record_healthy added the trigger last, to either shape.
    let mut body = json!({ "subnet": "subnet-node", "route_table": "rtb-node", "cached": true, "message_id": message_id });
    body["trigger"] = json!(trigger);
    golden(
        Entry::EventHealthy(EventHealthy::Cached {
            subnet: "subnet-node".into(),
            route_table: "rtb-node".into(),
            cached: true,
            message_id: message_id.clone(),
            trigger: trigger.clone(),
        }),
        body,
    );
    let evidence = Evidence::healthy();
    let diagnosis = diagnose(&evidence);
    let warnings: Vec<Finding> = diagnosis.warnings().cloned().collect();
    let mut body = json!({
        "calls": evidence.calls,
        "message_id": message_id,
        "cached": false,
        "warnings": diagnosis.warnings().collect::<Vec<_>>(),
    });
    body["trigger"] = json!(trigger);
    golden(
        Entry::EventHealthy(EventHealthy::Checked {
            calls: evidence.calls.clone(),
            message_id: message_id.clone(),
            cached: false,
            warnings: warnings.clone(),
            trigger: trigger.clone(),
        }),
        body,
    );
    golden(
        Entry::EventSuperseded(EventSuperseded {
            event_time: AT.into(),
            fix_applied_at: AT.into(),
            message_id: message_id.clone(),
            nodegroup: None,
            subject: None,
        }),
        json!({ "event_time": AT, "fix_applied_at": AT, "message_id": message_id }),
    );
    golden(
        Entry::EventSuperseded(EventSuperseded {
            event_time: AT.into(),
            fix_applied_at: AT.into(),
            message_id: message_id.clone(),
            nodegroup: Some("eks-workshop/ng".into()),
            subject: Some("key:arn".into()),
        }),
        json!({ "event_time": AT, "fix_applied_at": AT, "message_id": message_id,
            "nodegroup": format!("{}/{}", "eks-workshop", "ng"), "subject": "key:arn" }),
    );
}

#[test]
fn evidence_diagnosis_and_plan_are_their_own_json() {
    let evidence = Evidence::lab_002();
    let diagnosis = diagnose(&evidence);
    let plan = plan(&diagnosis, &evidence);
    golden(Entry::Evidence(Box::new(evidence.clone())), json!(evidence));
    golden(
        Entry::Diagnosis(Box::new(diagnosis.clone())),
        json!(diagnosis),
    );
    golden(Entry::Plan(Box::new(plan.clone())), json!(plan));
}

#[test]
fn steps_keep_their_bodies() {
    let fix = FixKind::AddNatRoute;
    let position = 0_usize;
    let decision = Decision::Hold {
        reason: "dry-run".into(),
        awaiting_approval: false,
    };
    let mode = Mode::DryRun;
    golden(
        Entry::GuardDecision(GuardDecision {
            position,
            fix,
            decision: decision.clone(),
            mode,
            policy_review: None,
        }),
        json!({ "position": position, "fix": fix, "decision": decision, "mode": mode }),
    );
    let permission = Permission::Denied {
        reason: "UnauthorizedOperation".into(),
    };
    golden(
        Entry::PermissionCheck(PermissionCheck {
            position,
            fix,
            permission: permission.clone(),
        }),
        json!({ "position": position, "fix": fix, "permission": permission }),
    );
    golden(
        Entry::StepIntent(StepIntent {
            position,
            fix,
            rollback: None,
            dry_run: None,
            calls: calls(),
            at: AT.into(),
        }),
        json!({ "position": position, "fix": fix, "calls": calls(), "at": AT }),
    );
    golden(
        Entry::StepIntent(StepIntent {
            position,
            fix,
            rollback: Some(true),
            dry_run: None,
            calls: calls(),
            at: AT.into(),
        }),
        json!({ "position": position, "fix": fix, "rollback": true, "calls": calls(), "at": AT }),
    );
    golden(
        Entry::StepResult(StepResultEntry {
            position,
            fix,
            result: result(),
            resumed: None,
            why: None,
        }),
        json!({ "position": position, "fix": fix, "result": result() }),
    );
    let why = "an earlier run applied it";
    golden(
        Entry::StepResult(StepResultEntry {
            position,
            fix,
            result: result(),
            resumed: Some(true),
            why: Some(why.into()),
        }),
        json!({ "position": position, "fix": fix, "result": result(), "resumed": true, "why": why }),
    );
    let verification = Verification {
        passed: false,
        checks: vec![crate::core::step::Check {
            what: "route".into(),
            passed: false,
            detail: "no route".into(),
        }],
    };
    golden(
        Entry::Verification(verification.clone()),
        json!(verification),
    );
    let undone = StepResult {
        status: StepStatus::RolledBack,
        ..result()
    };
    golden(
        Entry::Rollback(Rollback {
            position,
            fix,
            result: undone.clone(),
        }),
        json!({ "position": position, "fix": fix, "result": undone }),
    );
}

#[test]
fn decisions_and_controls_keep_their_bodies() {
    let plan_id = "plan-1".to_string();
    golden(
        Entry::ApprovalDecision(ApprovalDecision::Decided {
            plan_id: plan_id.clone(),
            decision: Verdict::Approved,
            by: "alice".into(),
            reason: None,
            at: AT.into(),
        }),
        json!({ "plan_id": plan_id, "decision": "approved", "by": "alice",
            "reason": Option::<String>::None, "at": AT }),
    );
    golden(
        Entry::ApprovalDecision(ApprovalDecision::ApprovalExpired {
            plan_id: plan_id.clone(),
            decision: Verdict::Expired,
            approved_by: Some("alice".into()),
            approved_at: Some(AT.into()),
            ttl_secs: 3600,
        }),
        json!({ "plan_id": plan_id, "decision": "expired", "approved_by": Some("alice"),
            "approved_at": Some(AT), "ttl_secs": 3600_u64 }),
    );
    golden(
        Entry::ApprovalDecision(ApprovalDecision::Unanswered {
            plan_id: plan_id.clone(),
            decision: Verdict::Expired,
            reason: format!("not approved or rejected within {} s", 86400),
            waiting_since: AT.into(),
            at: AT.into(),
        }),
        json!({ "plan_id": plan_id, "decision": "expired",
            "reason": format!("not approved or rejected within {} s", 86400),
            "waiting_since": AT, "at": AT }),
    );
    golden(
        Entry::PlanStale(PlanStale {
            plan_id: plan_id.clone(),
            new_plan_id: Some("plan-2".into()),
            why: "the route table changed".into(),
            approved_by: Some("alice".into()),
            at: AT.into(),
        }),
        json!({ "plan_id": plan_id, "new_plan_id": Some("plan-2"), "why": "the route table changed",
            "approved_by": Some("alice"), "at": AT }),
    );
    let effect = "nodemedic only observes in this scope until the breaker is reset";
    golden(
        Entry::BreakerOpened(BreakerOpened {
            scope: "vpc:vpc-1".into(),
            reason: "2 failures".into(),
            effect: effect.into(),
        }),
        json!({ "scope": "vpc:vpc-1", "reason": "2 failures", "effect": effect }),
    );
    golden(
        Entry::BreakerReset(BreakerReset {
            scope: "vpc:vpc-1".into(),
            by: "bob".into(),
            at: AT.into(),
        }),
        json!({ "scope": "vpc:vpc-1", "by": "bob", "at": AT }),
    );
    golden(
        Entry::KillSwitch(KillSwitchEntry {
            on: true,
            by: "bob".into(),
            reason: Some("storm".into()),
            at: AT.into(),
        }),
        json!({ "on": true, "by": "bob", "reason": Some("storm"), "at": AT }),
    );
}

#[test]
fn outcomes_keep_both_shapes() {
    let evidence = Evidence::lab_000();
    let diagnosis = diagnose(&evidence);
    let plan = plan(&diagnosis, &evidence);
    let steps = [StepStatus::Applied, StepStatus::Planned];
    golden(
        Entry::Outcome(OutcomeEntry::Concluded {
            outcome: Outcome::Fixed,
            mode: Mode::Auto,
            cause: "subnet_no_egress_route".into(),
            plan_id: plan.id.clone(),
            steps: steps.to_vec(),
            awaiting_approval: false,
            rolled_back: false,
            notes: plan.notes.clone(),
            aws_calls: evidence.calls.clone(),
        }),
        json!({
            "outcome": Outcome::Fixed.as_str(),
            "mode": Mode::Auto.as_str().to_string(),
            "cause": "subnet_no_egress_route",
            "plan_id": plan.id,
            "steps": steps.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "awaiting_approval": false,
            "rolled_back": false,
            "notes": plan.notes,
            "aws_calls": evidence.calls,
        }),
    );
    golden(
        Entry::Outcome(OutcomeEntry::Resolved {
            outcome: Outcome::Resolved,
            reason: "the cause went away before the approved plan ran".into(),
        }),
        json!({ "outcome": "resolved", "reason": "the cause went away before the approved plan ran" }),
    );
}

#[test]
fn an_approval_decision_says_who_decided_and_who_approved() {
    let decided = ApprovalDecision::Decided {
        plan_id: "p".into(),
        decision: Verdict::Rejected,
        by: "bob".into(),
        reason: Some("not now".into()),
        at: AT.into(),
    };
    let expired = ApprovalDecision::ApprovalExpired {
        plan_id: "p".into(),
        decision: Verdict::Expired,
        approved_by: Some("alice".into()),
        approved_at: None,
        ttl_secs: 60,
    };
    let unanswered = ApprovalDecision::Unanswered {
        plan_id: "p".into(),
        decision: Verdict::Expired,
        reason: "not approved or rejected within 60 s".into(),
        waiting_since: AT.into(),
        at: AT.into(),
    };
    let cases = [
        (
            &decided,
            Verdict::Rejected,
            Some("bob"),
            Some("bob"),
            Some("not now"),
        ),
        (&expired, Verdict::Expired, None, Some("alice"), None),
        (
            &unanswered,
            Verdict::Expired,
            None,
            None,
            Some("not approved or rejected within 60 s"),
        ),
    ];
    for (decision, verdict, decided_by, approver, reason) in cases {
        assert_eq!(decision.plan_id(), "p");
        assert_eq!(decision.verdict(), verdict);
        assert_eq!(decision.decided_by(), decided_by, "{decision:?}");
        assert_eq!(decision.approver(), approver, "{decision:?}");
        assert_eq!(decision.reason(), reason, "{decision:?}");
    }
}

#[test]
fn every_kind_decodes_or_names_its_problem() {
    assert!(matches!(
        Entry::decode("no_such_kind", &json!({})),
        Err(JournalError::UnknownKind(_))
    ));
    let error = Entry::decode("step_intent", &json!({ "position": 0 })).unwrap_err();
    assert!(error.to_string().contains("step_intent"), "{error}");
}
