//! What happened to a step: the permission check, the result of applying it, and the
//! verification after a plan. Plain data, recorded in the journal and read back on resume.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whether the daemon's role may perform a step, as far as AWS will say without doing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Permission {
    Allowed,
    Denied {
        reason: String,
    },
    /// The API has no dry run; the README lists what the role needs.
    Unchecked {
        reason: String,
    },
    /// The endpoint ignored DryRun and performed the call: it is not EC2-compatible, and the
    /// change happened.
    Performed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Planned,
    Applied,
    Skipped,
    Failed,
    /// Applied, then undone because verification failed.
    RolledBack,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Planned => "planned",
            StepStatus::Applied => "applied",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::RolledBack => "rolled_back",
        }
    }
}

/// What applying a step did, with the state before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub status: StepStatus,
    pub detail: String,
    pub before: Value,
    pub after: Value,
    /// Whether AWS state was changed; false when the world already matched the plan. Only
    /// changes count against rate limits and start cooldowns.
    #[serde(default)]
    pub changed: bool,
}

impl StepResult {
    pub(crate) fn applied(detail: impl Into<String>, before: Value, after: Value) -> Self {
        Self {
            status: StepStatus::Applied,
            detail: detail.into(),
            changed: before != after,
            before,
            after,
        }
    }

    /// A failed step changed nothing unless it says so with [`StepResult::with_change`] (a
    /// cycle that scaled down and could not scale back up).
    pub(crate) fn failed(detail: impl Into<String>, before: Value, after: Value) -> Self {
        Self {
            status: StepStatus::Failed,
            detail: detail.into(),
            changed: false,
            before,
            after,
        }
    }

    /// Overrides the before/after comparison, for steps whose end state equals their start (a
    /// cycle restores the scaling it changed) or that failed half-way.
    pub(crate) fn with_change(mut self, changed: bool) -> Self {
        self.changed = changed;
        self
    }
}

/// One thing verification looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub what: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub passed: bool,
    pub checks: Vec<Check>,
}

/// How serious IAM Access Analyzer says a finding is (its `findingType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The policy is invalid: AWS would reject it or it would not work as written.
    Error,
    /// The policy grants more than is usually intended.
    SecurityWarning,
    Warning,
    Suggestion,
}

/// One finding of IAM Access Analyzer on a policy a step would write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFinding {
    pub kind: FindingKind,
    pub issue_code: String,
    pub detail: String,
}

impl std::fmt::Display for PolicyFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.issue_code, self.detail)
    }
}

/// IAM Access Analyzer's ValidatePolicy on the document a step would write: a second opinion
/// beside nodemedic's own key-policy evaluator, which stays the one that plans the patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum PolicyReview {
    Reviewed {
        findings: Vec<PolicyFinding>,
    },
    /// The API could not be asked (not reachable, not allowed, not offered by the endpoint):
    /// the step is judged on nodemedic's own evaluation alone, and the reason is recorded.
    Skipped {
        reason: String,
    },
}

impl PolicyReview {
    /// The findings of one kind.
    pub fn findings(&self, kind: FindingKind) -> Vec<&PolicyFinding> {
        match self {
            PolicyReview::Reviewed { findings } => {
                findings.iter().filter(|f| f.kind == kind).collect()
            }
            PolicyReview::Skipped { .. } => Vec::new(),
        }
    }
}

/// The findings as one line, for a guard's reason.
pub fn describe_findings(findings: &[&PolicyFinding]) -> String {
    findings
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
