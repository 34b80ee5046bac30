//! One line per audit record for `audit show`, read from the typed journal.

use serde_json::Value;

use crate::audit::Record;
use crate::core::journal::{ApprovalDecision, Entry, EventReceived, OutcomeEntry};
use crate::core::key_policy;
use crate::core::step::{Permission, PolicyReview, StepResult, Verification};
use crate::core::trigger::TriggerKind;

/// What a record says, in a line; empty for a record the journal cannot read.
pub(super) fn describe(record: &Record) -> String {
    let event = record.event_id.as_deref().unwrap_or("?");
    let Ok(entry) = Entry::decode(&record.kind, &record.body) else {
        return String::new();
    };
    match entry {
        Entry::EventReceived(received) => format!("{} (event {event})", received_what(&received)),
        Entry::PermissionCheck(check) => match check.permission {
            Permission::Allowed => format!("{}: the role may apply it", check.fix),
            Permission::Performed => format!(
                "{}: PERFORMED: the endpoint ignored DryRun and made the call",
                check.fix
            ),
            Permission::Denied { reason } => {
                format!("{}: DENIED to the role: {reason}", check.fix)
            }
            Permission::Unchecked { reason } => {
                format!("{}: not checkable ({reason})", check.fix)
            }
        },
        Entry::Verification(verification) => verified(&verification),
        Entry::Rollback(undone) => step_line(undone.fix.code(), &undone.result),
        Entry::ApprovalDecision(decision) => approval(&decision),
        Entry::PlanStale(stale) => {
            format!("approved plan {} not applied: {}", stale.plan_id, stale.why)
        }
        Entry::BreakerOpened(opened) => {
            format!("circuit breaker {} OPEN: {}", opened.scope, opened.reason)
        }
        Entry::BreakerReset(reset) => {
            format!("circuit breaker {} reset by {}", reset.scope, reset.by)
        }
        Entry::KillSwitch(switch) => format!(
            "kill switch {} by {}",
            if switch.on { "ON" } else { "off" },
            switch.by
        ),
        Entry::EventDuplicate(_) => format!("duplicate delivery of {event}"),
        Entry::EventSuperseded(superseded) => format!(
            "event from {} predates the fix at {}",
            superseded.event_time, superseded.fix_applied_at
        ),
        Entry::Evidence(evidence) => match &evidence.reused {
            Some(reused) => format!(
                "evidence of {} (read {}) reused, {} AWS calls",
                reused.event_id,
                reused.collected_at,
                evidence.calls.total()
            ),
            None => format!("{} AWS calls", evidence.calls.total()),
        },
        Entry::Diagnosis(diagnosis) => diagnosis
            .findings
            .iter()
            .map(|f| f.cause.code())
            .collect::<Vec<_>>()
            .join(", "),
        Entry::Plan(plan) => format!("{} ({} steps)", plan.id, plan.steps.len()),
        Entry::GuardDecision(guard) => {
            let review = review_note(guard.policy_review.as_ref());
            let line = match guard.decision {
                crate::core::guard::Decision::Apply {
                    approved_by: Some(by),
                } => format!("{}: allowed, approved by {by}", guard.fix),
                crate::core::guard::Decision::Apply { approved_by: None } => {
                    format!("{}: allowed", guard.fix)
                }
                crate::core::guard::Decision::Hold { reason, .. } => {
                    format!("{}: held: {reason}", guard.fix)
                }
                crate::core::guard::Decision::Skip { reason } => {
                    format!("{}: refused: {reason}", guard.fix)
                }
            };
            format!("{line}{review}")
        }
        Entry::StepIntent(intent) => format!(
            "{}: about to call {}",
            intent.fix,
            intent
                .calls
                .iter()
                .map(|c| c.operation.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Entry::StepResult(done) => step_line(done.fix.code(), &done.result),
        // A resolved outcome has no mode of its own.
        Entry::Outcome(OutcomeEntry::Concluded { outcome, mode, .. }) => {
            format!("{} (mode {})", outcome.as_str(), mode.as_str())
        }
        Entry::Outcome(OutcomeEntry::Resolved { outcome, .. }) => {
            format!("{} (mode )", outcome.as_str())
        }
        Entry::MessageRejected(_)
        | Entry::EventIgnored(_)
        | Entry::EventHealthy(_)
        | Entry::CollectionFailed(_)
        | Entry::AccountRefused(_) => String::new(),
    }
}

/// The statements a key-policy step added, for the lines under its result.
pub(super) fn policy_change(record: &Record) -> Vec<String> {
    let Ok(Entry::StepResult(done)) = Entry::decode(&record.kind, &record.body) else {
        return Vec::new();
    };
    let (Some(before), Some(after)) = (
        done.result.before["policy"].as_str(),
        done.result.after["policy"].as_str(),
    ) else {
        return Vec::new();
    };
    key_policy::added_statements(before, after)
        .into_iter()
        .map(|statement| format!("+ {}", Value::Object(statement)))
        .collect()
}

fn received_what(received: &EventReceived) -> String {
    match &received.trigger.kind {
        TriggerKind::Launch(launch) => {
            format!("launch {} of {}", launch.outcome.as_str(), launch.asg_name)
        }
        TriggerKind::Health(health) => format!("nodegroup health: {}", health.status),
        TriggerKind::JoinCheck(check) => format!("join deadline of {}", check.instance_id),
        TriggerKind::Preflight(call) => format!("preflight after {}", call.event_name),
    }
}

fn verified(verification: &Verification) -> String {
    if verification.passed {
        return "passed: the cause is gone".to_string();
    }
    let failing: Vec<String> = verification
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} ({})", c.what, c.detail))
        .collect();
    format!("FAILED: {}", failing.join("; "))
}

fn step_line(fix: &str, result: &StepResult) -> String {
    format!("{fix}: {}: {}", result.status.as_str(), result.detail)
}

fn approval(decision: &ApprovalDecision) -> String {
    format!(
        "plan {} {}{}{}",
        decision.plan_id(),
        decision.verdict().as_str(),
        decision
            .approver()
            .map(|by| format!(" by {by}"))
            .unwrap_or_default(),
        decision
            .reason()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    )
}

/// What IAM Access Analyzer said of the policy a step would write, as a suffix.
fn review_note(review: Option<&PolicyReview>) -> String {
    match review {
        None => String::new(),
        Some(PolicyReview::Skipped { reason }) => format!(" (second opinion skipped: {reason})"),
        Some(PolicyReview::Reviewed { findings }) if findings.is_empty() => {
            " (IAM Access Analyzer: no findings)".into()
        }
        Some(PolicyReview::Reviewed { findings }) => format!(
            " (IAM Access Analyzer: {})",
            findings
                .iter()
                .map(|f| f.issue_code.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
