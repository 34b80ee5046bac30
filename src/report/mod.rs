//! Rendering the audit trail for people (text) and machines (JSON lines).

mod catalog;
mod checklist;
mod settings;
mod timeline;

pub use catalog::catalog_markdown;

pub use settings::settings_text;

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::audit::{IncidentSummary, Record};
use crate::core::journal::{Entry, RecordKind};

/// One JSON object per incident, the stable `audit list --json` contract.
pub fn incident_json(incident: &IncidentSummary) -> Value {
    json!({
        "incident_id": incident.incident_id,
        "account": incident.account,
        "region": incident.region,
        "cluster": incident.cluster,
        "nodegroup": incident.nodegroup,
        "cause": incident.cause,
        "mode": incident.mode,
        "outcome": incident.outcome,
        "summary": incident.summary,
        "plan_id": incident.plan_id,
        "opened_at": incident.opened_at,
        "updated_at": incident.updated_at,
        "events": incident.events,
        "nodegroups": incident.nodegroups,
        "actions": incident.actions.iter().map(|a| json!({"kind": a.kind, "status": a.status, "detail": a.detail})).collect::<Vec<_>>(),
    })
}

pub fn list_text(incidents: &[IncidentSummary]) -> String {
    if incidents.is_empty() {
        return "no incidents recorded\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<17} {:<24} {:<32} {:<34} {:<8} {:<11} ACTIONS",
        "INCIDENT", "OPENED", "CLUSTER/NODEGROUP", "CAUSE", "MODE", "OUTCOME"
    );
    for incident in incidents {
        let actions: Vec<String> = incident
            .actions
            .iter()
            .map(|a| format!("{}:{}", a.kind, a.status))
            .collect();
        let _ = writeln!(
            out,
            "{:<17} {:<24} {:<32} {:<34} {:<8} {:<11} {}",
            incident.incident_id,
            incident.opened_at,
            format!("{}/{}", incident.cluster, incident.nodegroup),
            incident.cause,
            incident.mode,
            incident.outcome.as_str(),
            if actions.is_empty() {
                "-".to_string()
            } else {
                actions.join(" ")
            }
        );
    }
    out
}

pub fn show_json(incident: &IncidentSummary, records: &[Record]) -> Value {
    json!({ "incident": incident_json(incident), "records": records })
}

/// The report an engineer reads at 3 a.m.: what is wrong, the proof, what was planned and done.
pub fn show_text(incident: &IncidentSummary, records: &[Record]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Incident {}  ({})",
        incident.incident_id,
        incident.outcome.as_str().to_uppercase()
    );
    let _ = writeln!(
        out,
        "  nodegroup  {}/{}  (account {}, {})",
        incident.cluster, incident.nodegroup, incident.account, incident.region
    );
    let _ = writeln!(out, "  cause      {}", incident.cause);
    let _ = writeln!(out, "  mode       {}", incident.mode);
    let _ = writeln!(
        out,
        "  opened     {}   updated {}",
        incident.opened_at, incident.updated_at
    );
    let _ = writeln!(out, "  events     {}", incident.events);

    let last = |kind: RecordKind| {
        records
            .iter()
            .rev()
            .find(|r| r.kind == kind.as_str())
            .and_then(|r| Entry::decode(&r.kind, &r.body).ok())
    };
    if let Some(Entry::Diagnosis(diagnosis)) = last(RecordKind::Diagnosis) {
        let _ = writeln!(out, "\nDiagnosis");
        for finding in &diagnosis.findings {
            let _ = writeln!(out, "  [{}] {}", finding.cause.code(), finding.summary);
            let _ = writeln!(out, "{}", indent(&wrap(&finding.explanation, 92), 6));
            for fact in &finding.evidence {
                let _ = writeln!(out, "      - {}: {}", fact.resource, fact.observed);
            }
        }
    }
    if let Some(Entry::Evidence(evidence)) = last(RecordKind::Evidence) {
        let calls = &evidence.calls.by_operation;
        let list: Vec<String> = calls.iter().map(|(op, n)| format!("{op} x{n}")).collect();
        match &evidence.reused {
            Some(reused) => {
                let _ = writeln!(
                    out,
                    "  evidence: read for event {} at {} and reused; {} AWS calls for this event ({})",
                    reused.event_id,
                    reused.collected_at,
                    evidence.calls.total(),
                    list.join(", ")
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  evidence: {} AWS calls ({})",
                    evidence.calls.total(),
                    list.join(", ")
                );
            }
        }
    }
    if let Some(Entry::Plan(plan)) = last(RecordKind::Plan) {
        let _ = writeln!(out, "\nPlan {}", plan.id);
        let steps = &plan.steps;
        if steps.is_empty() {
            let _ = writeln!(out, "  (no steps)");
        }
        for (position, step) in steps.iter().enumerate() {
            let status = incident
                .actions
                .get(position)
                .map(|a| a.status.as_str())
                .unwrap_or("planned");
            let _ = writeln!(out, "  {}. {} [{}]", position + 1, step.fix, status);
            let _ = writeln!(out, "{}", indent(&wrap(&step.reason, 90), 6));
            for call in api_calls(step) {
                let _ = writeln!(out, "      {call}");
            }
        }
        for note in &plan.notes {
            let _ = writeln!(
                out,
                "  note: {}",
                wrap(&note.text, 90).replace('\n', "\n        ")
            );
        }
    }
    let _ = writeln!(out, "\nTimeline");
    for record in records {
        let _ = writeln!(
            out,
            "  {}  {:<17} {}",
            record.at,
            record.kind,
            timeline::describe(record)
        );
        for line in timeline::policy_change(record) {
            let _ = writeln!(out, "        {line}");
        }
    }
    out
}

fn api_calls(step: &crate::core::plan::Step) -> Vec<String> {
    step.action
        .api_calls()
        .into_iter()
        .map(|call| {
            let mut parameters = call.parameters.clone();
            if let Some(policy) = parameters.get_mut("Policy") {
                *policy = json!(format!(
                    "<{} bytes, see the step result>",
                    policy.as_str().map(str::len).unwrap_or(0)
                ));
            }
            format!("{} {}", call.operation, parameters)
        })
        .collect()
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn wrap(text: &str, width: usize) -> String {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + word.len() + 1 > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join("\n")
}

/// `nodemedic plans list`.
pub fn plans_text(plans: &[crate::audit::PlanRow]) -> String {
    if plans.is_empty() {
        return "no plans awaiting approval\n".into();
    }
    let mut out = String::new();
    for plan in plans {
        let _ = writeln!(
            out,
            "{}  {:<17} {}/{}  {}  (incident {}, {})",
            plan.plan_id,
            plan.status.as_str(),
            plan.cluster,
            plan.nodegroup,
            plan.cause,
            plan.incident_id,
            plan.updated_at
        );
        // The plan row keeps the plan as stored; one this build cannot read lists no calls.
        let steps = serde_json::from_value::<crate::core::plan::Plan>(plan.plan.clone())
            .map(|plan| plan.steps)
            .unwrap_or_default();
        for step in &steps {
            for call in api_calls(step) {
                let _ = writeln!(out, "    {} -> {call}", step.fix);
            }
        }
        if let Some(by) = &plan.decided_by {
            let _ = writeln!(
                out,
                "    decided by {by} at {}",
                plan.decided_at.as_deref().unwrap_or("")
            );
        }
    }
    out
}

/// The `nodemedic diagnose` report: per nodegroup, what is wrong, the proof, what to run, and
/// what nodemedic would do.
pub fn diagnose_text(reports: &[crate::diagnose::Report]) -> String {
    let mut out = String::new();
    for report in reports {
        let blocking: Vec<&crate::core::checks::Finding> = report.diagnosis.blocking().collect();
        let _ = writeln!(
            out,
            "{}/{}: {} ({} AWS calls)",
            report.cluster,
            report.nodegroup,
            if report.healthy {
                "HEALTHY".to_string()
            } else {
                format!("BLOCKED by {} cause(s)", blocking.len())
            },
            report.aws_calls.total()
        );
        for finding in &report.diagnosis.findings {
            let label = if finding.blocking { "" } else { "warning " };
            let _ = writeln!(out, "  {label}[{}] {}", finding.cause, finding.summary);
            let _ = writeln!(out, "{}", indent(&wrap(&finding.explanation, 92), 6));
            for fact in &finding.evidence {
                let _ = writeln!(out, "      - {}: {}", fact.resource, fact.observed);
            }
            if let Some(remedy) = &finding.remedy {
                let _ = writeln!(out, "      fix by hand:");
                for line in remedy.lines() {
                    let _ = writeln!(out, "        {line}");
                }
            }
        }
        for step in &report.plan.steps {
            let approval = if step.fix.needs_approval_by_default() {
                "needs approval"
            } else {
                "automatic in auto mode"
            };
            let _ = writeln!(out, "  nodemedic would: {} ({approval})", step.fix);
            for call in step.action.api_calls() {
                let mut parameters = call.parameters.clone();
                if let Some(policy) = parameters.get_mut("Policy") {
                    *policy = json!(format!(
                        "<{} bytes>",
                        policy.as_str().map(str::len).unwrap_or(0)
                    ));
                }
                let _ = writeln!(out, "    {} {}", call.operation, parameters);
            }
        }
        for note in &report.plan.notes {
            if note.fix == Some(crate::core::plan::FixKind::CycleNodegroup) {
                let _ = writeln!(out, "  note: {}", note.text);
            }
        }
        out.push_str(&checklist::checklist_table(&report.diagnosis.checks));
    }
    if !reports.is_empty() {
        out.push_str(&checklist::not_checked_text());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ActionSummary;

    #[test]
    fn docs_catalog_md_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/catalog.md");
        let written = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            written == catalog_markdown(),
            "docs/catalog.md is out of date: run `cargo run -- catalog > docs/catalog.md`"
        );
    }

    fn incident() -> IncidentSummary {
        IncidentSummary {
            incident_id: "inc-1".into(),
            account: "123456789012".into(),
            region: "us-west-2".into(),
            cluster: "eks-workshop".into(),
            nodegroup: "new_nodegroup_1".into(),
            cause: "kms_key_policy_blocks_autoscaling".into(),
            mode: "auto".into(),
            outcome: crate::audit::Outcome::Fixed,
            summary: "s".into(),
            plan_id: Some("plan-1".into()),
            opened_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:01.000Z".into(),
            events: 1,
            nodegroups: vec!["eks-workshop/new_nodegroup_1".into()],
            actions: vec![ActionSummary {
                kind: "patch_kms_key_policy".into(),
                status: "applied".into(),
                detail: String::new(),
            }],
        }
    }

    #[test]
    fn the_json_line_has_the_contracted_fields() {
        let line = incident_json(&incident());
        for field in [
            "incident_id",
            "cluster",
            "nodegroup",
            "cause",
            "mode",
            "actions",
            "outcome",
        ] {
            assert!(line.get(field).is_some(), "{field}");
        }
        assert_eq!(
            line["actions"][0],
            json!({"kind": "patch_kms_key_policy", "status": "applied", "detail": ""})
        );
    }

    #[test]
    fn a_key_policy_result_shows_the_added_statements() {
        let before = crate::core::evidence::fixtures::ROOT_ONLY_POLICY;
        let after = crate::core::evidence::fixtures::granted_policy();
        let result = crate::core::step::StepResult {
            status: crate::core::step::StepStatus::Applied,
            detail: String::new(),
            before: json!({ "policy": before }),
            after: json!({ "policy": after }),
            changed: true,
        };
        let entry =
            crate::core::journal::Entry::StepResult(crate::core::journal::StepResultEntry {
                position: 0,
                fix: crate::core::plan::FixKind::PatchKmsKeyPolicy,
                result,
                resumed: None,
                why: None,
            });
        let lines = timeline::policy_change(&record("step_result", entry.body().unwrap()));
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("+ ") && lines[0].contains("AllowAutoScalingServiceRole"));
    }

    #[test]
    fn the_list_says_when_there_is_nothing() {
        assert_eq!(list_text(&[]), "no incidents recorded\n");
        assert!(list_text(&[incident()]).contains("patch_kms_key_policy:applied"));
    }

    fn record(kind: &str, body: Value) -> Record {
        Record {
            seq: 1,
            at: "2026-01-01T00:00:00.000Z".into(),
            incident_id: Some("inc-1".into()),
            event_id: Some("e-1".into()),
            kind: kind.into(),
            body,
            prev_hash: String::new(),
            hash: String::new(),
            chain: "global".into(),
        }
    }

    #[test]
    fn the_timeline_says_what_each_guard_record_means() {
        use crate::core::evidence::fixtures;
        use crate::core::guard::{Decision, Mode};
        use crate::core::journal::{self, Entry, Verdict};
        use crate::core::plan::FixKind;
        use crate::core::step::{Check, Permission, Verification};
        let trigger = fixtures::trigger(crate::core::trigger::TriggerKind::Launch(
            fixtures::launch(crate::core::trigger::LaunchOutcome::Unsuccessful),
        ));
        let at = "2026-01-01T00:00:00.000Z".to_string();
        let cases = [
            (
                Entry::EventReceived(journal::EventReceived {
                    trigger,
                    message_id: None,
                    receive_count: Some(1),
                    resumed: None,
                    trace_id: None,
                }),
                "launch unsuccessful of eks-ng-abcd (event e-1)",
            ),
            (
                Entry::PermissionCheck(journal::PermissionCheck {
                    position: 0,
                    fix: FixKind::AddNatRoute,
                    permission: Permission::Denied {
                        reason: "ec2:CreateRoute".into(),
                    },
                }),
                "add_nat_route: DENIED to the role: ec2:CreateRoute",
            ),
            (
                Entry::Verification(Verification {
                    passed: false,
                    checks: vec![Check {
                        what: "rtb routes".into(),
                        passed: false,
                        detail: "no such route".into(),
                    }],
                }),
                "FAILED: rtb routes (no such route)",
            ),
            (
                Entry::ApprovalDecision(journal::ApprovalDecision::Decided {
                    plan_id: "plan-1".into(),
                    decision: Verdict::Approved,
                    by: "alice".into(),
                    reason: Some("CHG-1".into()),
                    at: at.clone(),
                }),
                "plan plan-1 approved by alice: CHG-1",
            ),
            (
                Entry::GuardDecision(journal::GuardDecision {
                    position: 0,
                    fix: FixKind::PatchKmsKeyPolicy,
                    decision: Decision::Apply {
                        approved_by: Some("alice".into()),
                    },
                    mode: Mode::Approve,
                    policy_review: None,
                }),
                "patch_kms_key_policy: allowed, approved by alice",
            ),
            (
                Entry::BreakerOpened(journal::BreakerOpened {
                    scope: "vpc:vpc-1".into(),
                    reason: "verification failed".into(),
                    effect: String::new(),
                }),
                "circuit breaker vpc:vpc-1 OPEN: verification failed",
            ),
            (
                Entry::KillSwitch(journal::KillSwitchEntry {
                    on: true,
                    by: "bob".into(),
                    reason: None,
                    at,
                }),
                "kill switch ON by bob",
            ),
        ];
        for (entry, expected) in cases {
            let record = record(entry.kind().as_str(), entry.body().unwrap());
            assert_eq!(timeline::describe(&record), expected);
        }
    }

    #[test]
    fn wrapping_keeps_words_whole() {
        assert_eq!(wrap("aaa bbb ccc", 7), "aaa bbb\nccc");
    }
}
