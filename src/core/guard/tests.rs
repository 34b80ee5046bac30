use std::collections::BTreeMap;

use time::macros::datetime;

use super::*;
use crate::core::plan::{Action, FixKind, Step};
use crate::core::step::PolicyFinding;

fn now() -> Timestamp {
    datetime!(2026-11-21 12:00 UTC).into()
}

fn step(fix: FixKind) -> Step {
    Step {
        fix,
        action: Action::CreateRoute {
            route_table_id: "rtb-1".into(),
            destination_cidr_block: "0.0.0.0/0".into(),
            nat_gateway_id: "nat-1".into(),
        },
        reason: String::new(),
        needs_review: None,
    }
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Case {
    policy: Policy,
    fix: FixKind,
    nodegroup_tags: BTreeMap<String, String>,
    touched: Vec<Touched>,
    history: History,
    needs_review: Option<String>,
}

impl Case {
    fn new(mode: Mode) -> Case {
        Case {
            policy: Policy::with_mode(mode),
            fix: FixKind::AddNatRoute,
            nodegroup_tags: BTreeMap::new(),
            touched: vec![Touched {
                id: "rtb-1".into(),
                tags: BTreeMap::new(),
                tags_unreadable: None,
            }],
            history: History::default(),
            needs_review: None,
        }
    }

    fn decide(&self) -> Decision {
        let target = Site {
            account: "111111111111",
            region: "us-west-2",
            cluster: "prod",
            nodegroup: "web",
            nodegroup_tags: &self.nodegroup_tags,
            touched: &self.touched,
        };
        let step = Step {
            needs_review: self.needs_review.clone(),
            ..step(self.fix)
        };
        decide(&self.policy, &step, &target, &self.history, now())
    }
}

fn approval() -> Approval {
    Approval {
        plan_id: "plan-1".into(),
        by: "alice".into(),
        reason: None,
        at: now(),
    }
}

fn reason(decision: &Decision) -> String {
    match decision {
        Decision::Hold { reason, .. } | Decision::Skip { reason } => reason.clone(),
        Decision::Apply { .. } => String::new(),
    }
}

#[test]
fn auto_applies_the_lab_fixes_and_holds_the_others_for_approval() {
    assert_eq!(
        Case::new(Mode::Auto).decide(),
        Decision::Apply { approved_by: None }
    );
    let mut case = Case::new(Mode::Auto);
    case.fix = FixKind::EnableVpcDns;
    assert!(case.decide().awaits_approval());
}

#[test]
fn a_step_in_doubt_waits_for_a_human_even_in_auto_mode() {
    let mut case = Case::new(Mode::Auto);
    case.needs_review = Some("no launch has failed with a KMS error yet".into());
    let decision = case.decide();
    assert!(decision.awaits_approval(), "{decision:?}");
    assert!(reason(&decision).contains("no launch has failed"));
    case.history.approval = Some(approval());
    assert_eq!(
        case.decide(),
        Decision::Apply {
            approved_by: Some("alice".into())
        }
    );
    // Dry-run still only plans.
    case.policy.mode = Mode::DryRun;
    assert!(!case.decide().allows());
}

#[test]
fn dry_run_and_observe_never_apply() {
    assert!(reason(&Case::new(Mode::DryRun).decide()).contains("dry-run"));
    assert!(!Case::new(Mode::Observe).decide().allows());
}

#[test]
fn approve_mode_waits_for_an_approval_and_applies_with_it() {
    let mut case = Case::new(Mode::Approve);
    assert!(case.decide().awaits_approval());
    case.history.approval = Some(approval());
    assert_eq!(
        case.decide(),
        Decision::Apply {
            approved_by: Some("alice".into())
        }
    );
}

#[test]
fn the_fix_policy_can_require_approval_or_forbid() {
    let mut case = Case::new(Mode::Auto);
    case.policy
        .fixes
        .insert(FixKind::AddNatRoute, FixPolicy::Approve);
    assert!(case.decide().awaits_approval());
    case.policy
        .fixes
        .insert(FixKind::AddNatRoute, FixPolicy::Never);
    assert!(matches!(case.decide(), Decision::Skip { .. }));
    let mut case = Case::new(Mode::Auto);
    case.fix = FixKind::EnableVpcDns;
    case.policy
        .fixes
        .insert(FixKind::EnableVpcDns, FixPolicy::Auto);
    assert!(case.decide().allows());
}

/// A change to the scope rules, and whether the step is still in scope after it.
type ScopeCase = (Box<dyn Fn(&mut ScopeRules)>, bool);

#[test]
fn scope_allow_and_deny_lists() {
    let checks: Vec<ScopeCase> = vec![
        (Box::new(|s| s.deny_clusters = vec!["prod".into()]), false),
        (
            Box::new(|s| s.deny_nodegroups = vec!["prod/web".into()]),
            false,
        ),
        (Box::new(|s| s.deny_nodegroups = vec!["web".into()]), false),
        (
            Box::new(|s| s.deny_accounts = vec!["111111111111".into()]),
            false,
        ),
        (
            Box::new(|s| s.deny_regions = vec!["us-west-2".into()]),
            false,
        ),
        (Box::new(|s| s.clusters = vec!["staging".into()]), false),
        (Box::new(|s| s.clusters = vec!["prod".into()]), true),
        (
            Box::new(|s| s.accounts = vec!["222222222222".into()]),
            false,
        ),
        (Box::new(|s| s.regions = vec!["us-west-2".into()]), true),
        (Box::new(|s| s.nodegroups = vec!["prod/api".into()]), false),
        (
            Box::new(|s| {
                s.clusters = vec!["prod".into()];
                s.deny_nodegroups = vec!["web".into()];
            }),
            false,
        ),
    ];
    for (n, (change, allowed)) in checks.into_iter().enumerate() {
        let mut case = Case::new(Mode::Auto);
        change(&mut case.policy.scope);
        assert_eq!(
            case.decide().allows(),
            allowed,
            "case {n}: {:?}",
            case.decide()
        );
    }
}

#[test]
fn the_ignore_tag_and_denied_tags_make_a_resource_untouchable() {
    let mut case = Case::new(Mode::Auto);
    case.touched[0].tags = tags(&[("nodemedic.io/ignore", "")]);
    assert!(reason(&case.decide()).contains("rtb-1 carries the nodemedic.io/ignore tag"));
    let mut case = Case::new(Mode::Auto);
    case.nodegroup_tags = tags(&[("nodemedic.io/ignore", "true")]);
    assert!(!case.decide().allows());
    let mut case = Case::new(Mode::Auto);
    case.policy.scope.deny_tags = vec!["env=prod".into()];
    case.touched[0].tags = tags(&[("env", "prod")]);
    assert!(!case.decide().allows());
    case.touched[0].tags = tags(&[("env", "dev")]);
    assert!(case.decide().allows());
}

#[test]
fn an_allow_tag_must_be_on_the_nodegroup_or_what_changes() {
    let mut case = Case::new(Mode::Auto);
    case.policy.scope.tags = vec!["nodemedic.io/managed=true".into()];
    assert!(!case.decide().allows());
    case.nodegroup_tags = tags(&[("nodemedic.io/managed", "true")]);
    assert!(case.decide().allows());
}

#[test]
fn the_kill_switch_holds_every_mutation() {
    let mut case = Case::new(Mode::Auto);
    case.history.kill_switch = Some("incident review".into());
    assert!(reason(&case.decide()).contains("kill switch"));
    case.history.approval = Some(approval());
    assert!(!case.decide().allows(), "not even an approved plan");
}

#[test]
fn a_change_freeze_holds_and_ends() {
    let mut case = Case::new(Mode::Auto);
    case.policy.freezes = vec![Freeze {
        from: datetime!(2026-11-20 00:00 UTC).into(),
        until: datetime!(2026-11-22 00:00 UTC).into(),
        reason: "peak season".into(),
    }];
    assert!(reason(&case.decide()).contains("peak season"));
    case.policy.freezes[0].until = datetime!(2026-11-21 11:00 UTC).into();
    assert!(case.decide().allows());
}

#[test]
fn an_open_breaker_turns_the_scope_into_observe() {
    let mut case = Case::new(Mode::Auto);
    case.history.open_breakers = vec!["vpc:vpc-1".into()];
    assert!(matches!(case.decide(), Decision::Skip { reason } if reason.contains("vpc:vpc-1")));
}

#[test]
fn cooldown_and_rate_limit() {
    let mut case = Case::new(Mode::Auto);
    case.history.last_same_fix = Some(datetime!(2026-11-21 11:30 UTC).into());
    assert!(reason(&case.decide()).contains("cooldown"));
    case.history.last_same_fix = Some(datetime!(2026-11-21 10:30 UTC).into());
    assert!(case.decide().allows());
    case.history.mutations_last_hour = 20;
    assert!(reason(&case.decide()).contains("limit is 20"));
}

#[test]
fn failures_and_fixes_that_did_not_hold_wait_for_a_human() {
    for history in [
        History {
            failed_fix: Some("inc-1".into()),
            ..History::default()
        },
        History {
            fix_did_not_hold: Some("inc-2".into()),
            ..History::default()
        },
    ] {
        let mut case = Case::new(Mode::Auto);
        case.history = history;
        let decision = case.decide();
        assert!(decision.awaits_approval(), "{decision:?}");
        assert!(reason(&decision).contains("approve this plan"));
        case.history.approval = Some(approval());
        assert_eq!(
            case.decide(),
            Decision::Apply {
                approved_by: Some("alice".into())
            }
        );
    }
    let mut case = Case::new(Mode::DryRun);
    case.history.failed_fix = Some("inc-1".into());
    assert!(
        !case.decide().awaits_approval(),
        "dry-run never asks for an approval it would not act on"
    );
}

#[test]
fn an_approval_is_not_held_back_by_the_cooldown() {
    let mut case = Case::new(Mode::Auto);
    case.history.last_same_fix = Some(datetime!(2026-11-21 11:59 UTC).into());
    assert!(reason(&case.decide()).contains("cooldown"));
    case.history.approval = Some(approval());
    assert!(case.decide().allows());
    case.history.approval = None;
    case.history.failed_fix = Some("inc-1".into());
    assert!(
        case.decide().awaits_approval(),
        "a failed fix asks for the approval that would lift the cooldown"
    );
}

#[test]
fn modes_round_trip_through_their_names() {
    for mode in Mode::ALL {
        assert_eq!(Mode::parse(mode.as_str()), Some(mode));
        assert_eq!(
            serde_json::to_value(mode).unwrap(),
            serde_json::json!(mode.as_str())
        );
    }
    assert_eq!(Mode::parse("Auto"), None);
}

#[test]
fn a_resource_whose_tags_cannot_be_read_is_not_touched_while_tag_rules_exist() {
    let mut case = Case::new(Mode::Auto);
    case.touched[0].tags_unreadable = Some("AccessDeniedException".into());
    let decision = case.decide();
    assert!(
        matches!(&decision, Decision::Skip { reason } if reason.contains("could not be read")),
        "{decision:?}"
    );
    case.policy.scope.ignore_tag = String::new();
    assert!(
        case.decide().allows(),
        "without any tag rule, tags do not matter"
    );
}

fn reviewed(kinds: &[FindingKind]) -> PolicyReview {
    PolicyReview::Reviewed {
        findings: kinds
            .iter()
            .map(|kind| PolicyFinding {
                kind: *kind,
                issue_code: format!("{kind:?}_CODE").to_uppercase(),
                detail: "from Access Analyzer".into(),
            })
            .collect(),
    }
}

#[test]
fn a_policy_access_analyzer_calls_invalid_is_never_written() {
    for mode in [Mode::DryRun, Mode::Approve, Mode::Auto] {
        let mut case = Case::new(mode);
        case.fix = FixKind::PatchKmsKeyPolicy;
        case.history.policy_review = Some(reviewed(&[FindingKind::Warning, FindingKind::Error]));
        case.history.approval = Some(approval());
        let decision = case.decide();
        assert!(matches!(decision, Decision::Skip { .. }), "{decision:?}");
        assert!(reason(&decision).contains("ERROR_CODE"), "{decision:?}");
        assert!(!reason(&decision).contains("WARNING_CODE"), "{decision:?}");
    }
}

#[test]
fn a_security_warning_waits_for_a_human_and_an_approval_lifts_it() {
    let mut case = Case::new(Mode::Auto);
    case.fix = FixKind::PatchKmsKeyPolicy;
    case.history.policy_review = Some(reviewed(&[FindingKind::SecurityWarning]));
    let decision = case.decide();
    assert!(decision.awaits_approval(), "{decision:?}");
    assert!(reason(&decision).contains("SECURITYWARNING_CODE"));
    case.history.approval = Some(approval());
    assert_eq!(
        case.decide(),
        Decision::Apply {
            approved_by: Some("alice".into())
        }
    );
}

#[test]
fn warnings_suggestions_and_a_skipped_review_leave_the_decision_to_the_rest() {
    for review in [
        reviewed(&[FindingKind::Warning, FindingKind::Suggestion]),
        reviewed(&[]),
        PolicyReview::Skipped {
            reason: "AccessDeniedException".into(),
        },
    ] {
        let mut case = Case::new(Mode::Auto);
        case.fix = FixKind::PatchKmsKeyPolicy;
        case.history.policy_review = Some(review);
        assert_eq!(case.decide(), Decision::Apply { approved_by: None });
    }
}
