//! The rules that depend on a step's place in its run, or on what happened between the guard's
//! read and the write of the intent. They used to be decided inline by the pipeline; here each
//! is a named rule with its table test, and the pipeline only asks.

use crate::core::time::Timestamp;

use super::{Approval, Decision, History, Policy, Site, decide};
use crate::core::plan::{FixKind, Step};
use crate::core::step::StepStatus;

/// What the run did before the step being decided.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunSoFar<'a> {
    /// A step of this plan failed: the plan's premise is broken.
    pub earlier_failure: bool,
    /// The statuses of the steps before this one, in order.
    pub statuses: &'a [StepStatus],
    /// A step before this one waits for an approval.
    pub awaiting_approval: bool,
}

/// Decides one step of a run: [`decide`], then the rules of the step's place in the run.
pub fn decide_in_run(
    policy: &Policy,
    step: &Step,
    site: &Site<'_>,
    history: &History,
    now: Timestamp,
    run: RunSoFar<'_>,
) -> Decision {
    if run.earlier_failure {
        return after_a_failure();
    }
    relaunch_after_fixes(
        step.fix,
        decide(policy, step, site, history, now),
        run.statuses,
        run.awaiting_approval,
    )
}

/// No step runs after a failed one.
pub fn after_a_failure() -> Decision {
    Decision::skip("an earlier step of this plan failed")
}

/// Relaunching before the fixes are in would only make another failing instance: a cycle that
/// the guard allows waits for every step before it to be applied, and is refused with them when
/// the guard refused one.
pub fn relaunch_after_fixes(
    fix: FixKind,
    decided: Decision,
    before: &[StepStatus],
    awaiting_approval: bool,
) -> Decision {
    let too_early = fix == FixKind::CycleNodegroup
        && decided.allows()
        && before.iter().any(|s| *s != StepStatus::Applied);
    if !too_early {
        decided
    } else if before.contains(&StepStatus::Skipped) {
        Decision::skip("cycle_nodegroup relaunches for fixes the guard refused")
    } else {
        Decision::Hold {
            reason: "cycle_nodegroup waits until the fixes before it are applied".into(),
            awaiting_approval,
        }
    }
}

/// The hourly mutation limit was reached between the guard's read and the intent record (the
/// reservation is made in the intent's transaction): the step is held, not sent.
pub fn rate_limit_reached(limit: u32, account: &str) -> Decision {
    Decision::hold(format!(
        "{limit} mutations in account {account} in the last hour; the limit is {limit}"
    ))
}

/// The kill switch, found on as the step's intent was about to commit (it was turned on after
/// the step was decided): the step is held as [`decide`](super::decide) would have held it.
pub fn kill_switch_turned_on(switch: &str) -> Decision {
    Decision::hold(format!("the kill switch is on ({switch})"))
}

/// A human's approval of this exact plan is how a failed fix, or one that did not hold, gets
/// another try: with an approval, neither counts against the step.
pub fn with_approval(mut history: History, approval: Option<&Approval>) -> History {
    if approval.is_some() {
        history.failed_fix = None;
        history.fix_did_not_hold = None;
    }
    history.approval = approval.cloned();
    history
}

/// A rollback is a mutation too: while the kill switch is on nothing is undone, and a human
/// decides. `Err` carries the detail the rollback record keeps.
pub fn may_roll_back(kill_switch: Option<&str>) -> Result<(), String> {
    match kill_switch {
        None => Ok(()),
        Some(reason) => Err(format!(
            "not rolled back: the kill switch is on ({reason}); a human decides"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Decision {
        Decision::Apply { approved_by: None }
    }

    #[test]
    fn a_cycle_waits_for_the_fixes_before_it() {
        use StepStatus::*;
        let held = |awaiting| Decision::Hold {
            reason: "cycle_nodegroup waits until the fixes before it are applied".into(),
            awaiting_approval: awaiting,
        };
        let refused = Decision::skip("cycle_nodegroup relaunches for fixes the guard refused");
        let cases: [(FixKind, Decision, &[StepStatus], bool, Decision); 7] = [
            (FixKind::CycleNodegroup, allowed(), &[], false, allowed()),
            (
                FixKind::CycleNodegroup,
                allowed(),
                &[Applied],
                false,
                allowed(),
            ),
            (
                FixKind::CycleNodegroup,
                allowed(),
                &[Planned],
                false,
                held(false),
            ),
            (
                FixKind::CycleNodegroup,
                allowed(),
                &[Planned],
                true,
                held(true),
            ),
            (
                FixKind::CycleNodegroup,
                allowed(),
                &[Applied, Skipped],
                false,
                refused.clone(),
            ),
            // Only a cycle waits; a refused or held cycle stays as the guard said.
            (
                FixKind::AddNatRoute,
                allowed(),
                &[Planned],
                false,
                allowed(),
            ),
            (
                FixKind::CycleNodegroup,
                Decision::hold("dry-run"),
                &[Skipped],
                false,
                Decision::hold("dry-run"),
            ),
        ];
        for (fix, decided, before, awaiting, expected) in cases {
            assert_eq!(
                relaunch_after_fixes(fix, decided.clone(), before, awaiting),
                expected,
                "{fix} after {before:?}, guard said {decided:?}"
            );
        }
    }

    #[test]
    fn nothing_runs_after_a_failure() {
        assert_eq!(
            after_a_failure(),
            Decision::Skip {
                reason: "an earlier step of this plan failed".into()
            }
        );
    }

    #[test]
    fn the_rate_limit_message_names_the_limit_and_the_account() {
        assert_eq!(
            rate_limit_reached(3, "123456789012"),
            Decision::Hold {
                reason: "3 mutations in account 123456789012 in the last hour; the limit is 3"
                    .into(),
                awaiting_approval: false,
            }
        );
    }

    #[test]
    fn only_an_approval_lifts_a_failed_or_returning_fix() {
        let history = History {
            failed_fix: Some("inc-1".into()),
            fix_did_not_hold: Some("inc-0".into()),
            ..History::default()
        };
        let kept = with_approval(history.clone(), None);
        assert_eq!(kept.failed_fix.as_deref(), Some("inc-1"));
        assert_eq!(kept.fix_did_not_hold.as_deref(), Some("inc-0"));
        let approval = Approval {
            plan_id: "plan-1".into(),
            by: "alice".into(),
            reason: None,
            at: Timestamp::from(time::OffsetDateTime::UNIX_EPOCH),
        };
        let lifted = with_approval(history, Some(&approval));
        assert_eq!(lifted.failed_fix, None);
        assert_eq!(lifted.fix_did_not_hold, None);
        assert_eq!(lifted.approval, Some(approval));
    }

    #[test]
    fn the_kill_switch_stops_a_rollback() {
        assert_eq!(may_roll_back(None), Ok(()));
        assert_eq!(
            may_roll_back(Some("storm")),
            Err("not rolled back: the kill switch is on (storm); a human decides".into())
        );
    }
}
