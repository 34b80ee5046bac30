//! The guard: the only place that decides whether a planned mutation may happen. Pure: mode,
//! step and history in, a decision with its reason out.

use serde::{Deserialize, Serialize};

use crate::plan::Step;

/// How much nodemedic may do on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Diagnose, plan and record everything; mutate nothing.
    #[serde(rename = "dry-run")]
    DryRun,
    /// Apply plans.
    #[serde(rename = "auto")]
    Auto,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::DryRun, Mode::Auto];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Auto => "auto",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|mode| mode.as_str() == text)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the audit trail knows about earlier attempts at the same nodegroup and cause.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// An incident whose fix failed and has not been resolved by a human.
    pub failed_fix: Option<String>,
    /// An earlier incident whose fix was applied, after which the same cause came back.
    pub fix_did_not_hold: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Apply,
    /// The step stays planned: the mode does not apply plans (dry-run).
    Hold {
        reason: String,
    },
    /// The step is refused.
    Skip {
        reason: String,
    },
}

impl Decision {
    pub fn allows(&self) -> bool {
        matches!(self, Decision::Apply)
    }
}

/// Decides one step.
pub fn decide(mode: Mode, step: &Step, history: &History) -> Decision {
    if mode == Mode::DryRun {
        return Decision::Hold {
            reason: format!("dry-run: {} planned, not applied", step.fix),
        };
    }
    if let Some(incident) = &history.failed_fix {
        return Decision::Skip {
            reason: format!(
                "a fix for this nodegroup and cause failed in incident {incident}; nodemedic does not retry a failed \
                 fix blindly (see `nodemedic audit show {incident}`)"
            ),
        };
    }
    if let Some(incident) = &history.fix_did_not_hold {
        return Decision::Skip {
            reason: format!(
                "the same cause came back after incident {incident} was fixed; nodemedic does not repeat a fix that \
                 did not help"
            ),
        };
    }
    if step.fix.needs_approval_by_default() {
        return Decision::Hold {
            reason: format!(
                "{} changes shared infrastructure and waits for approval",
                step.fix
            ),
        };
    }
    Decision::Apply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, FixKind};

    fn step() -> Step {
        Step {
            fix: FixKind::AddNatRoute,
            action: Action::CreateRoute {
                route_table_id: "rtb-1".into(),
                destination_cidr_block: "0.0.0.0/0".into(),
                nat_gateway_id: "nat-1".into(),
            },
            reason: String::new(),
        }
    }

    #[test]
    fn dry_run_never_applies() {
        let decision = decide(Mode::DryRun, &step(), &History::default());
        assert!(!decision.allows());
        assert!(matches!(decision, Decision::Hold { reason } if reason.contains("dry-run")));
    }

    #[test]
    fn auto_applies_when_nothing_failed_before() {
        assert_eq!(
            decide(Mode::Auto, &step(), &History::default()),
            Decision::Apply
        );
    }

    #[test]
    fn a_failed_fix_is_not_retried_blindly() {
        let history = History {
            failed_fix: Some("inc-1".into()),
            ..History::default()
        };
        let decision = decide(Mode::Auto, &step(), &history);
        assert!(
            matches!(decision, Decision::Skip { reason } if reason.contains("inc-1") && reason.contains("retry"))
        );
    }

    #[test]
    fn a_fix_that_did_not_hold_is_not_repeated() {
        let history = History {
            fix_did_not_hold: Some("inc-2".into()),
            ..History::default()
        };
        assert!(!decide(Mode::Auto, &step(), &history).allows());
    }

    #[test]
    fn fixes_of_shared_infrastructure_wait_for_approval_even_in_auto() {
        let mut step = step();
        step.fix = FixKind::EnableVpcDns;
        step.action = Action::ModifyVpcAttribute {
            vpc_id: "vpc-1".into(),
            attribute: "enableDnsSupport".into(),
        };
        assert!(
            matches!(decide(Mode::Auto, &step, &History::default()), Decision::Hold { reason } if reason.contains("approval"))
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
}
