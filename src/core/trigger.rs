//! Triggers: why nodemedic is looking at a nodegroup, the input of every incident. The intake
//! parses them from queue messages; everything downstream reads only these types.

use time::OffsetDateTime;

/// What a launch event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchOutcome {
    /// "EC2 Instance Launch Unsuccessful": the Auto Scaling group could not start an instance.
    Unsuccessful,
    /// "EC2 Instance Launch Successful": an instance runs; it may still fail to join.
    Successful,
}

impl LaunchOutcome {
    /// As records and pages name it (its serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchOutcome::Unsuccessful => "unsuccessful",
            LaunchOutcome::Successful => "successful",
        }
    }
}

/// Why nodemedic is looking at a nodegroup: the input of every incident.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trigger {
    pub event_id: String,
    pub account: String,
    pub region: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub kind: TriggerKind,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TriggerKind {
    /// An Auto Scaling launch event from EventBridge.
    Launch(LaunchEvent),
    /// nodemedic's health watcher saw a nodegroup DEGRADED or with health issues.
    Health(HealthEvent),
    /// A launched instance's join deadline passed: check whether it joined.
    JoinCheck(JoinCheck),
    /// A CloudTrail record of CreateNodegroup or UpdateNodegroupConfig: check before anything fails.
    Preflight(NodegroupApiCall),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LaunchEvent {
    pub outcome: LaunchOutcome,
    pub asg_name: String,
    pub instance_id: Option<String>,
    pub subnet_id: Option<String>,
    pub availability_zone: Option<String>,
    pub status_code: Option<String>,
    pub status_message: Option<String>,
    pub description: Option<String>,
    pub cause: Option<String>,
    pub activity_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthEvent {
    pub cluster: String,
    pub nodegroup: String,
    pub status: String,
    pub issues: Vec<HealthEventIssue>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthEventIssue {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "resourceIds")]
    pub resource_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinCheck {
    pub cluster: String,
    pub nodegroup: String,
    pub asg_name: String,
    pub instance_id: String,
    pub subnet_id: Option<String>,
    /// When the instance was launched (the launch event's time).
    #[serde(with = "time::serde::rfc3339")]
    pub launched_at: OffsetDateTime,
    /// When the check is due; a check that arrives early is delayed again.
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodegroupApiCall {
    pub cluster: String,
    pub nodegroup: String,
    /// CreateNodegroup or UpdateNodegroupConfig.
    pub event_name: String,
}

impl Trigger {
    pub fn launch(&self) -> Option<&LaunchEvent> {
        match &self.kind {
            TriggerKind::Launch(launch) => Some(launch),
            _ => None,
        }
    }

    /// The nodegroup the trigger names directly; launch events name only their group.
    pub fn nodegroup(&self) -> Option<(&str, &str)> {
        match &self.kind {
            TriggerKind::Launch(_) => None,
            TriggerKind::Health(h) => Some((&h.cluster, &h.nodegroup)),
            TriggerKind::JoinCheck(j) => Some((&j.cluster, &j.nodegroup)),
            TriggerKind::Preflight(p) => Some((&p.cluster, &p.nodegroup)),
        }
    }

    /// An event nodemedic published itself (a health finding, a join check): it must carry
    /// nodemedic's signature.
    pub fn is_own_event(&self) -> bool {
        matches!(
            self.kind,
            TriggerKind::Health(_) | TriggerKind::JoinCheck(_)
        )
    }

    /// A short name of what happened, for records and logs.
    pub fn describe(&self) -> String {
        match &self.kind {
            TriggerKind::Launch(l) => format!("launch {} for {}", l.outcome.as_str(), l.asg_name),
            TriggerKind::Health(h) => {
                format!("nodegroup {}/{} is {}", h.cluster, h.nodegroup, h.status)
            }
            TriggerKind::JoinCheck(j) => format!(
                "join deadline of {} in {}/{}",
                j.instance_id, j.cluster, j.nodegroup
            ),
            TriggerKind::Preflight(p) => {
                format!("{} of {}/{}", p.event_name, p.cluster, p.nodegroup)
            }
        }
    }
}
