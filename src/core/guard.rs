//! The guard: the only place that decides whether a planned mutation may happen. Pure: the
//! policy, the step, what it touches and what the audit trail knows in, a decision with its
//! reason out. `act` never decides.

use std::collections::BTreeMap;

use crate::core::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::core::plan::{FixKind, Step};
use crate::core::step::{FindingKind, PolicyReview, describe_findings};

/// How much nodemedic may do on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Diagnose and record only; no plans.
    #[serde(rename = "observe")]
    Observe,
    /// Also plan, and check whether the daemon's role would be allowed to apply; mutate nothing.
    #[serde(rename = "dry-run")]
    DryRun,
    /// Plans wait for a human to approve them.
    #[serde(rename = "approve")]
    Approve,
    /// Apply plans, as the fix policy allows.
    #[serde(rename = "auto")]
    Auto,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Observe, Mode::DryRun, Mode::Approve, Mode::Auto];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::DryRun => "dry-run",
            Mode::Approve => "approve",
            Mode::Auto => "auto",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|mode| mode.as_str() == text)
    }

    /// Whether plans are made at all.
    pub fn plans(self) -> bool {
        self != Mode::Observe
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the policy says about one fix kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixPolicy {
    /// Applied in auto mode without a human.
    Auto,
    /// Applied only with an approval.
    Approve,
    /// Never applied; the plan still shows it.
    Never,
}

impl FixPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FixPolicy::Auto => "auto",
            FixPolicy::Approve => "approve",
            FixPolicy::Never => "never",
        }
    }
}

/// Allow and deny lists. An empty allow list allows everything; a deny always wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeRules {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// Cluster names.
    pub clusters: Vec<String>,
    /// `cluster/nodegroup` or a nodegroup name.
    pub nodegroups: Vec<String>,
    /// `key=value` or `key`: a resource touched (or the nodegroup) must carry one.
    pub tags: Vec<String>,
    pub deny_accounts: Vec<String>,
    pub deny_regions: Vec<String>,
    pub deny_clusters: Vec<String>,
    pub deny_nodegroups: Vec<String>,
    pub deny_tags: Vec<String>,
    /// A tag that makes the resource carrying it untouchable, whatever its value.
    pub ignore_tag: String,
}

/// A period in which nothing changes (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    #[serde(with = "crate::core::time::rfc3339")]
    pub from: Timestamp,
    #[serde(with = "crate::core::time::rfc3339")]
    pub until: Timestamp,
    pub reason: String,
}

/// The guard's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub fixes: BTreeMap<FixKind, FixPolicy>,
    pub scope: ScopeRules,
    pub freezes: Vec<Freeze>,
    /// No second application of the same fix kind to the same resource within this long.
    pub cooldown_secs: u64,
    /// At most this many mutations per account per hour.
    pub max_mutations_per_hour: u32,
}

impl Policy {
    /// The policy for a fix kind: the configured one, else the default (the lab fixes apply on
    /// their own; fixes of shared infrastructure wait for approval).
    pub fn fix_policy(&self, fix: FixKind) -> FixPolicy {
        self.fixes
            .get(&fix)
            .copied()
            .unwrap_or(if fix.needs_approval_by_default() {
                FixPolicy::Approve
            } else {
                FixPolicy::Auto
            })
    }

    pub fn with_mode(mode: Mode) -> Policy {
        Policy {
            mode,
            fixes: BTreeMap::new(),
            scope: ScopeRules {
                ignore_tag: "nodemedic.io/ignore".into(),
                ..ScopeRules::default()
            },
            freezes: Vec::new(),
            cooldown_secs: 3600,
            max_mutations_per_hour: 20,
        }
    }
}

/// A resource a step changes, with its tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touched {
    pub id: String,
    pub tags: BTreeMap<String, String>,
    /// Why the tags could not be read. With tag rules configured such a resource is not
    /// touched: an ignore tag nodemedic cannot see must still protect it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags_unreadable: Option<String>,
}

/// A human's approval of the exact plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub plan_id: String,
    pub by: String,
    pub reason: Option<String>,
    #[serde(with = "crate::core::time::rfc3339")]
    pub at: Timestamp,
}

/// What the audit trail and the shared controls know, for one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// An incident whose fix failed and has not been resolved by a human.
    pub failed_fix: Option<String>,
    /// An earlier incident whose fix was applied, after which the same cause came back.
    pub fix_did_not_hold: Option<String>,
    /// Why the kill switch is on, when it is.
    pub kill_switch: Option<String>,
    /// Open circuit breakers covering this step (scope names).
    pub open_breakers: Vec<String>,
    /// When this fix kind last changed this resource.
    pub last_same_fix: Option<Timestamp>,
    /// Mutations in the account in the last hour.
    pub mutations_last_hour: u32,
    /// The approval of this exact plan, when there is one.
    pub approval: Option<Approval>,
    /// IAM Access Analyzer's review of the policy document the step would write, for steps that
    /// write one.
    pub policy_review: Option<PolicyReview>,
}

/// Where a step applies: the nodegroup and every resource the step changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub cluster: &'a str,
    pub nodegroup: &'a str,
    pub nodegroup_tags: &'a BTreeMap<String, String>,
    pub touched: &'a [Touched],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Apply {
        #[serde(skip_serializing_if = "Option::is_none")]
        approved_by: Option<String>,
    },
    /// The step stays planned: dry-run, a freeze, the kill switch, a rate limit, or an approval
    /// still to come (`awaiting_approval`).
    Hold {
        reason: String,
        awaiting_approval: bool,
    },
    /// The step is refused.
    Skip { reason: String },
}

impl Decision {
    pub fn allows(&self) -> bool {
        matches!(self, Decision::Apply { .. })
    }

    pub fn awaits_approval(&self) -> bool {
        matches!(
            self,
            Decision::Hold {
                awaiting_approval: true,
                ..
            }
        )
    }

    fn hold(reason: impl Into<String>) -> Decision {
        Decision::Hold {
            reason: reason.into(),
            awaiting_approval: false,
        }
    }

    fn skip(reason: impl Into<String>) -> Decision {
        Decision::Skip {
            reason: reason.into(),
        }
    }
}

/// Decides one step. The order matters: what forbids outright comes before what postpones, and
/// what only a human may allow comes last.
pub fn decide(
    policy: &Policy,
    step: &Step,
    target: &Site<'_>,
    history: &History,
    now: Timestamp,
) -> Decision {
    if let Some(reason) = out_of_scope(&policy.scope, target) {
        return Decision::skip(format!("out of scope: {reason}"));
    }
    let fix_policy = policy.fix_policy(step.fix);
    if fix_policy == FixPolicy::Never {
        return Decision::skip(format!("the fix policy says never for {}", step.fix));
    }
    if let Some(breaker) = history.open_breakers.first() {
        return Decision::skip(format!(
            "circuit breaker {breaker} is open: nodemedic only observes in that scope until it is reset"
        ));
    }
    // A document Access Analyzer calls invalid is never written, approved or not: nodemedic's own
    // evaluator and AWS disagree, and that is for a human to untangle by hand.
    let review = history.policy_review.as_ref();
    let errors = review
        .map(|r| r.findings(FindingKind::Error))
        .unwrap_or_default();
    if !errors.is_empty() {
        return Decision::skip(format!(
            "IAM Access Analyzer finds the policy {} would write invalid: {}; it is not written",
            step.fix,
            describe_findings(&errors)
        ));
    }
    let warnings = review
        .map(|r| r.findings(FindingKind::SecurityWarning))
        .unwrap_or_default();
    // A human's approval of this exact plan is deliberate; the cooldown only stops automation
    // from flapping. A fix that failed or did not hold waits for such an approval anyway.
    let needs_a_human = history.failed_fix.is_some() || history.fix_did_not_hold.is_some();
    if let (Some(at), None, false) = (history.last_same_fix, &history.approval, needs_a_human) {
        let elapsed = now.since(at).as_secs();
        if at <= now && elapsed < policy.cooldown_secs {
            return Decision::skip(format!(
                "{} changed the same resource {elapsed}s ago; the cooldown is {}s",
                step.fix, policy.cooldown_secs
            ));
        }
    }
    match policy.mode {
        Mode::Observe => return Decision::hold("observe: no plan is applied"),
        Mode::DryRun => {
            return Decision::hold(format!("dry-run: {} planned, not applied", step.fix));
        }
        Mode::Approve | Mode::Auto => {}
    }
    if let Some(switch) = &history.kill_switch {
        return kill_switch_turned_on(switch);
    }
    if let Some(freeze) = policy
        .freezes
        .iter()
        .find(|f| f.from <= now && now < f.until)
    {
        return Decision::hold(format!(
            "change freeze until {}: {}",
            freeze.until.at(),
            freeze.reason
        ));
    }
    if history.mutations_last_hour >= policy.max_mutations_per_hour {
        return Decision::hold(format!(
            "{} mutations in account {} in the last hour; the limit is {}",
            history.mutations_last_hour, target.account, policy.max_mutations_per_hour
        ));
    }
    let needs_approval = if let Some(incident) = &history.failed_fix {
        Some(format!(
            "a fix for this nodegroup and cause failed in incident {incident}; nodemedic does not retry a \
             failed fix blindly: approve this plan to try again (see `nodemedic audit show {incident}`)"
        ))
    } else if let Some(incident) = &history.fix_did_not_hold {
        Some(format!(
            "the same cause came back after incident {incident} was fixed; nodemedic does not repeat a fix \
             that did not help on its own: approve this plan to try again"
        ))
    } else if !warnings.is_empty() {
        Some(format!(
            "IAM Access Analyzer warns about the policy {} would write: {}; approve this plan to write it",
            step.fix,
            describe_findings(&warnings)
        ))
    } else if let Some(why) = &step.needs_review {
        Some(format!("{} waits for approval: {why}", step.fix))
    } else if policy.mode == Mode::Approve {
        Some(format!("approve mode: {} waits for approval", step.fix))
    } else if fix_policy == FixPolicy::Approve {
        Some(format!("{} waits for approval (fix policy)", step.fix))
    } else {
        None
    };
    match (needs_approval, &history.approval) {
        (None, _) => Decision::Apply { approved_by: None },
        (Some(_), Some(approval)) => Decision::Apply {
            approved_by: Some(approval.by.clone()),
        },
        (Some(reason), None) => Decision::Hold {
            reason,
            awaiting_approval: true,
        },
    }
}

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|item| item == value)
}

fn tag_matches(rule: &str, tags: &BTreeMap<String, String>) -> bool {
    match rule.split_once('=') {
        Some((key, value)) => tags.get(key).is_some_and(|v| v == value),
        None => tags.contains_key(rule),
    }
}

/// Why the target is outside the allowed scope, if it is.
pub fn out_of_scope(rules: &ScopeRules, target: &Site<'_>) -> Option<String> {
    let qualified = format!("{}/{}", target.cluster, target.nodegroup);
    let nodegroup_listed =
        |list: &[String]| listed(list, &qualified) || listed(list, target.nodegroup);
    if listed(&rules.deny_accounts, target.account) {
        return Some(format!("account {} is denied", target.account));
    }
    if listed(&rules.deny_regions, target.region) {
        return Some(format!("region {} is denied", target.region));
    }
    if listed(&rules.deny_clusters, target.cluster) {
        return Some(format!("cluster {} is denied", target.cluster));
    }
    if nodegroup_listed(&rules.deny_nodegroups) {
        return Some(format!("nodegroup {qualified} is denied"));
    }
    if !rules.accounts.is_empty() && !listed(&rules.accounts, target.account) {
        return Some(format!(
            "account {} is not in the allow list",
            target.account
        ));
    }
    if !rules.regions.is_empty() && !listed(&rules.regions, target.region) {
        return Some(format!("region {} is not in the allow list", target.region));
    }
    if !rules.clusters.is_empty() && !listed(&rules.clusters, target.cluster) {
        return Some(format!(
            "cluster {} is not in the allow list",
            target.cluster
        ));
    }
    if !rules.nodegroups.is_empty() && !nodegroup_listed(&rules.nodegroups) {
        return Some(format!("nodegroup {qualified} is not in the allow list"));
    }
    let tag_rules =
        !rules.ignore_tag.is_empty() || !rules.deny_tags.is_empty() || !rules.tags.is_empty();
    if tag_rules
        && let Some((resource, why)) = target
            .touched
            .iter()
            .find_map(|t| t.tags_unreadable.as_ref().map(|why| (&t.id, why)))
    {
        return Some(format!(
            "the tags of {resource} could not be read ({why}); with tag rules configured it is not touched"
        ));
    }
    let tagged = std::iter::once(("nodegroup", target.nodegroup_tags))
        .chain(target.touched.iter().map(|t| (t.id.as_str(), &t.tags)));
    for (resource, tags) in tagged.clone() {
        if !rules.ignore_tag.is_empty() && tags.contains_key(&rules.ignore_tag) {
            return Some(format!("{resource} carries the {} tag", rules.ignore_tag));
        }
        if let Some(rule) = rules.deny_tags.iter().find(|rule| tag_matches(rule, tags)) {
            return Some(format!("{resource} carries the denied tag {rule}"));
        }
    }
    if !rules.tags.is_empty()
        && !tagged
            .clone()
            .any(|(_, tags)| rules.tags.iter().any(|rule| tag_matches(rule, tags)))
    {
        return Some(format!(
            "neither the nodegroup nor what the step changes carries one of the tags {}",
            rules.tags.join(", ")
        ));
    }
    None
}

mod run_rules;
#[cfg(test)]
mod tests;

pub use run_rules::{
    RunSoFar, after_a_failure, decide_in_run, kill_switch_turned_on, may_roll_back,
    rate_limit_reached, relaunch_after_fixes, with_approval,
};
