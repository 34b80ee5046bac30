//! One audit record on an incident's timeline, read from the typed journal. A record the journal
//! cannot read is shown as its JSON.

use maud::{Markup, html};

use super::links::auto_scaling_group_url;
use super::view::{json_view, plan_steps, policy_diff};
use crate::audit::Record;
use crate::core::checks::{CheckResult, CheckStatus};
use crate::core::guard::Decision;
use crate::core::journal::{Entry, OutcomeEntry};
use crate::core::step::Permission;
use crate::core::trigger::TriggerKind;

pub(super) fn record_view(record: &Record, region: &str) -> Markup {
    let body = &record.body;
    let entry = Entry::decode(&record.kind, body).ok();
    html! {
        li class={"record " (record.kind)} data-kind=(record.kind) {
            div.when { time datetime=(record.at) { (record.at) } " " span.kind { (record.kind.replace('_', " ")) } }
            @match entry {
                Some(Entry::EventReceived(received)) => {
                    @let (kind, outcome, group, message) = trigger_parts(&received.trigger.kind);
                    p {
                        (kind) " " (outcome) " · event " code { (received.trigger.event_id) }
                        @if let Some(group) = group {
                            " · group " a href=(auto_scaling_group_url(region, group)) target="_blank" rel="noopener noreferrer" { (group) }
                        }
                    }
                    @if let Some(message) = message { blockquote { (message) } }
                    @if let Some(trace) = &received.trace_id { p.trace { "trace " code { (trace) } } }
                }
                Some(Entry::Evidence(evidence)) => {
                    details {
                        @if let Some(reused) = &evidence.reused {
                            summary { "Evidence of event " code { (reused.event_id) } " (read " (reused.collected_at) "), reused" }
                        } @else {
                            summary { "Evidence collected (" (evidence.calls.by_operation.len()) " kinds of AWS call)" }
                        }
                        (json_view(body, region))
                    }
                }
                Some(Entry::Diagnosis(diagnosis)) => {
                    @for finding in &diagnosis.findings {
                        div.finding {
                            p { code.cause { (finding.cause.code()) }
                                @if finding.blocking { " " span.bad { "blocking" } } @else { " " span { "warning" } } }
                            p.summary { strong { (finding.summary) } }
                            p.why { (finding.explanation) }
                            @let console: Vec<&crate::core::checks::Fact> = finding.evidence.iter().filter(|f| f.resource.starts_with("console of ")).collect();
                            @if !console.is_empty() {
                                // Console output is untrusted: cleaned and bounded when collected, escaped here.
                                details.console open { summary { "What the node printed (console output, quoted)" }
                                    pre.console { @for line in &console { (line.resource) ": " (line.observed) "\n" } } }
                            }
                            details { summary { "Proof" } (json_view(&serde_json::to_value(&finding.evidence).unwrap_or_default(), region)) }
                            @if let Some(remedy) = &finding.remedy {
                                details { summary { "Remedy" } pre { (remedy) } }
                            }
                        }
                    }
                    @if !diagnosis.checks.is_empty() {
                        (checklist_view(&diagnosis.checks))
                    }
                }
                Some(Entry::Plan(plan)) => {
                    p { "Plan " code { (plan.id) } }
                    (plan_steps(body, region))
                }
                Some(Entry::GuardDecision(guard)) => {
                    @let (decision, reason) = decision_parts(&guard.decision);
                    p { strong { (guard.fix) } ": "
                        span class={"decision " (decision)} { (decision) }
                        @if let Some(reason) = reason { " (" (reason) ")" } }
                }
                Some(Entry::PermissionCheck(check)) => {
                    @let (result, reason) = permission_parts(&check.permission);
                    p { strong { (check.fix) } ": " (result)
                        @if let Some(reason) = reason { " (" (reason) ")" } }
                }
                Some(Entry::StepIntent(intent)) => {
                    p { "About to call, for " strong { (intent.fix) } ":" }
                    (json_view(&body["calls"], region))
                }
                Some(Entry::StepResult(done)) => {
                    @let result = &done.result;
                    p { strong { (done.fix) } ": "
                        span class={"step " (result.status.as_str())} { (result.status.as_str()) }
                        " — " (result.detail) }
                    @if let (Some(before), Some(after)) = (result.before["policy"].as_str(), result.after["policy"].as_str()) {
                        (policy_diff(before, after))
                    } @else {
                        details { summary { "Before and after" } (json_view(&serde_json::json!({"before": result.before, "after": result.after}), region)) }
                    }
                }
                Some(Entry::Verification(verification)) => {
                    p { "Verification " @if verification.passed { span.good { "passed" } } @else { span.bad { "failed" } } }
                    ul { @for check in &verification.checks {
                        li { @if check.passed { "✔ " } @else { "✘ " } (check.what) ": " (check.detail) }
                    } }
                }
                Some(Entry::ApprovalDecision(decision)) => {
                    p { "Plan " code { (decision.plan_id()) } " "
                        strong.decision { (decision.verdict().as_str()) }
                        @if let Some(by) = decision.decided_by() { " by " strong.approver { (by) } }
                        @if let Some(reason) = decision.reason() { ": " (reason) } }
                }
                Some(Entry::Outcome(outcome)) => {
                    @let (outcome, mode, notes) = outcome_parts(&outcome);
                    p { "Outcome " span class={"outcome " (outcome)} { (outcome) }
                        " (mode " (mode) ")" }
                    @if !notes.is_empty() {
                        ul { @for note in notes { li { (note) } } }
                    }
                }
                _ => {
                    (json_view(body, region))
                }
            }
        }
    }
}

/// The join checklist: one row per check with its result, what it saw and how to fix it.
fn checklist_view(checks: &[CheckResult]) -> Markup {
    let failing = checks
        .iter()
        .filter(|c| matches!(c.result, CheckStatus::Fail | CheckStatus::Warn))
        .count();
    html! {
        details.checklist open[failing > 0] {
            summary { "Checklist: " (checks.len()) " checks, " (failing) " failing or warning" }
            table.checks {
                thead { tr { th { "check" } th { "result" } th { "evidence" } th { "fix" } } }
                tbody {
                    @for check in checks {
                        tr class={"check " (check.result.as_str())} data-check=(check.check.id()) {
                            td { code { (check.check.id()) } }
                            td.result { (check.result.as_str()) }
                            td {
                                @if let Some(skip) = &check.skipped { (skip.to_string()) }
                                @for fact in &check.evidence { div { (fact.resource) ": " (fact.observed) } }
                            }
                            td { @if let Some(remedy) = &check.remedy { pre { (remedy) } } }
                        }
                    }
                }
            }
        }
    }
}

/// The trigger's kind, a launch's outcome, its Auto Scaling group and status message.
fn trigger_parts(kind: &TriggerKind) -> (&'static str, &'static str, Option<&str>, Option<&str>) {
    match kind {
        TriggerKind::Launch(launch) => (
            "launch",
            launch.outcome.as_str(),
            Some(launch.asg_name.as_str()),
            launch.status_message.as_deref(),
        ),
        TriggerKind::Health(_) => ("health", "", None, None),
        TriggerKind::JoinCheck(_) => ("join_check", "", None, None),
        TriggerKind::Preflight(_) => ("preflight", "", None, None),
    }
}

fn decision_parts(decision: &Decision) -> (&'static str, Option<&str>) {
    match decision {
        Decision::Apply { .. } => ("apply", None),
        Decision::Hold { reason, .. } => ("hold", Some(reason)),
        Decision::Skip { reason } => ("skip", Some(reason)),
    }
}

fn permission_parts(permission: &Permission) -> (&'static str, Option<&str>) {
    match permission {
        Permission::Allowed => ("allowed", None),
        Permission::Performed => ("performed", None),
        Permission::Denied { reason } => ("denied", Some(reason)),
        Permission::Unchecked { reason } => ("unchecked", Some(reason)),
    }
}

/// The outcome, the mode it ran in (none for a cause that went away) and the plan's notes.
fn outcome_parts(outcome: &OutcomeEntry) -> (&'static str, &'static str, Vec<String>) {
    match outcome {
        OutcomeEntry::Concluded {
            outcome,
            mode,
            notes,
            ..
        } => (
            outcome.as_str(),
            mode.as_str(),
            notes
                .iter()
                .map(|note| {
                    serde_json::to_value(note)
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                })
                .collect(),
        ),
        OutcomeEntry::Resolved { outcome, .. } => (outcome.as_str(), "", Vec::new()),
    }
}
