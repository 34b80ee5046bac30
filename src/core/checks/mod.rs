//! Diagnosis: pure rules from [`Evidence`] to findings with stable cause codes. No I/O, no clock.
//! One module per area of the join checklist; [`diagnose`] runs them all over the evidence given.

mod boot_log;
mod bootstrap;
mod catalog;
mod checklist;
mod cluster;
mod cluster_role;
mod endpoints;
mod firewall;
mod health;
pub mod identity;
mod imds;
mod instance_profile;
pub mod ip;
mod kms;
mod kubernetes;
mod launch;
mod network;
mod root_volume;
mod trust;
mod versions;

pub use catalog::{Cause, CauseDoc};
pub use checklist::{
    CheckId, CheckResult, CheckStatus, NOT_CHECKED, NotChecked, Skip, Unseen, checklist,
};
pub use health::health_issue_cause;
pub use launch::{LaunchFailure, classify_launch_failure};

use serde::{Deserialize, Serialize};

use crate::core::evidence::Evidence;
use crate::core::trigger::{LaunchOutcome, TriggerKind};

/// Interface VPC endpoints (plus the S3 gateway endpoint) a node needs to join a cluster
/// without a route to the internet.
pub const PRIVATE_JOIN_SERVICES: [&str; 5] = ["ec2", "ecr.api", "ecr.dkr", "s3", "sts"];

/// One cause found, with the observations that prove it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub cause: Cause,
    /// Blocking findings stop nodes joining; the others are warnings worth a look.
    pub blocking: bool,
    /// One line for lists and notifications.
    pub summary: String,
    /// Why this stops nodes joining, for the report.
    pub explanation: String,
    pub evidence: Vec<Fact>,
    /// What a human can run to fix it, with the resource ids filled in.
    pub remedy: Option<String>,
    /// The resource at fault, typed for the planner.
    pub subject: Subject,
}

/// One observation: a resource and what was seen on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub resource: String,
    pub observed: String,
}

impl Fact {
    pub fn new(resource: impl Into<String>, observed: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            observed: observed.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    Key {
        key_arn: String,
        policy: Option<String>,
        service_linked_role: String,
        cross_account: bool,
        explicit_deny: Option<String>,
        /// Why the evaluation is not certain enough to patch the key without a human: a KMS
        /// failure not seen yet, or conditions and grants nodemedic cannot decide.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        doubt: Option<String>,
    },
    UnusableKey {
        reference: String,
        state: String,
    },
    /// A subnet without egress: the planner adds a default route.
    Subnet {
        subnet_id: String,
        route_table_id: Option<String>,
        vpc_id: String,
        availability_zone: Option<String>,
    },
    /// A default route that leads nowhere: the planner replaces its target.
    DefaultRoute {
        subnet_id: String,
        route_table_id: String,
        current_target: String,
        availability_zone: Option<String>,
    },
    Vpc {
        vpc_id: String,
        dns_support_off: bool,
        dns_hostnames_off: bool,
    },
    PublicSubnet {
        subnet_id: String,
    },
    NodeRole {
        role_name: String,
        missing_policy_arns: Vec<String>,
    },
    /// An instance profile that holds no role: the node role goes in.
    InstanceProfile {
        profile_name: String,
        role_name: String,
    },
    /// Interface endpoints a private join needs, answering no name (private DNS off).
    Endpoints {
        vpc_id: String,
        endpoint_ids: Vec<String>,
    },
    /// The cluster's role, which trusts EKS but lacks a policy it needs.
    ClusterRole {
        role_name: String,
        missing_policy_arns: Vec<String>,
    },
    AccessEntry {
        cluster: String,
        principal_arn: String,
    },
    /// Any other resource: reported, not fixed automatically.
    Resource {
        id: String,
    },
    None,
}

/// All findings for one incident, most important first, and the checklist they came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Diagnosis {
    pub findings: Vec<Finding>,
    /// Every check's result, in checklist order (absent from records written before checks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
}

impl Diagnosis {
    /// The first blocking finding.
    pub fn primary(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.blocking)
    }

    /// The cause code an incident is filed under; `None` when nothing blocks nodes joining.
    pub fn cause(&self) -> Option<Cause> {
        self.primary().map(|finding| finding.cause)
    }

    pub fn is_healthy(&self) -> bool {
        self.primary().is_none()
    }

    pub fn blocking(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.blocking)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.blocking)
    }
}

/// Runs every rule over the evidence.
pub fn diagnose(evidence: &Evidence) -> Diagnosis {
    let mut findings = cluster::findings(evidence);
    findings.extend(versions::findings(evidence));
    findings.extend(cluster::stuck_instance(evidence));
    findings.extend(cluster_role::findings(evidence));
    findings.extend(kms::findings(evidence));
    findings.extend(launch::findings(evidence));
    findings.extend(root_volume::findings(evidence));
    findings.extend(bootstrap::findings(evidence));
    findings.extend(imds::findings(evidence));
    if let Some(network) = &evidence.network {
        findings.extend(network::findings(evidence, network));
        findings.extend(firewall::findings(evidence, network));
    }
    if let Some(identity) = &evidence.identity {
        findings.extend(identity::findings(evidence, identity));
        findings.extend(trust::findings(evidence, identity));
        findings.extend(instance_profile::findings(evidence, identity));
    }
    findings.extend(kubernetes::findings(evidence));
    let explained: Vec<Cause> = findings
        .iter()
        .filter(|f| f.blocking)
        .map(|f| f.cause)
        .collect();
    findings.extend(health::findings(evidence, &explained));
    dedupe(&mut findings);
    boot_log::corroborate(evidence, &mut findings);
    if !findings.iter().any(|f| f.blocking)
        && let Some(finding) =
            unexplained_failure(evidence).or_else(|| cluster::failed_nodegroup(evidence))
    {
        findings.push(finding);
    }
    findings.sort_by_key(|finding| (!finding.blocking, finding.cause.rank()));
    let mut diagnosis = Diagnosis {
        findings,
        checks: Vec::new(),
    };
    diagnosis.checks = checklist(evidence, &diagnosis);
    diagnosis
}

/// One finding per cause and subject: rules and health issues can report the same thing.
fn dedupe(findings: &mut Vec<Finding>) {
    let mut seen: Vec<(Cause, Subject)> = Vec::new();
    findings.retain(|finding| {
        let key = (finding.cause, finding.subject.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
}

/// A failure no rule explains still deserves an incident: a failed launch keeps its raw text;
/// instances EKS says did not join, with nothing else wrong, are a `node_creation_failure`.
fn unexplained_failure(evidence: &Evidence) -> Option<Finding> {
    let creation_failures: Vec<&crate::core::evidence::HealthIssue> = evidence
        .nodegroup
        .health_issues
        .iter()
        .filter(|issue| issue.code == "NodeCreationFailure")
        .collect();
    let instance = match &evidence.trigger.kind {
        TriggerKind::Launch(l) if l.outcome == LaunchOutcome::Unsuccessful => {
            return Some(unknown(
                evidence,
                launch::failure_text(evidence).map(str::to_string),
            ));
        }
        TriggerKind::Launch(_) => return None,
        // A join check concerns one instance: EKS must name it (or name no instance at all).
        TriggerKind::JoinCheck(check) => {
            let named = creation_failures.iter().any(|issue| {
                issue.resource_ids.is_empty() || issue.resource_ids.contains(&check.instance_id)
            });
            if !named {
                return None;
            }
            check.instance_id.clone()
        }
        TriggerKind::Health(_) | TriggerKind::Preflight(_) => {
            let first = creation_failures.first()?;
            first
                .resource_ids
                .first()
                .cloned()
                .unwrap_or_else(|| evidence.nodegroup.name.clone())
        }
    };
    Some(Finding {
        cause: Cause::NodeCreationFailure,
        blocking: true,
        summary: format!("instance {instance} did not join the cluster, and no AWS-side cause was found"),
        explanation: "EKS reports that instances failed to join, and every network, identity and launch check \
                      passed. What is left lives inside the cluster or on the instance: the aws-auth ConfigMap or \
                      access entry of the node role, and the kubelet's own logs."
            .into(),
        evidence: creation_failures
            .iter()
            .map(|issue| {
                Fact::new(
                    format!("nodegroup {}", evidence.nodegroup.name),
                    format!("{}: {} ({})", issue.code, issue.message, issue.resource_ids.join(", ")),
                )
            })
            .collect(),
        remedy: Some(format!(
            "kubectl -n kube-system get configmap aws-auth -o yaml; aws eks list-access-entries --cluster-name {}; \
             on the instance: journalctl -u kubelet",
            evidence.nodegroup.cluster
        )),
        subject: Subject::Resource { id: instance },
    })
}

fn unknown(evidence: &Evidence, message: Option<String>) -> Finding {
    Finding {
        cause: Cause::Unknown,
        blocking: true,
        summary: match &message {
            Some(text) => format!("launch failed for a reason nodemedic does not recognise: {text}"),
            None => format!("nodegroup {} is failing and no rule matched", evidence.nodegroup.name),
        },
        explanation: "No diagnosis rule matched the evidence. The raw failure text and the evidence are recorded \
                      for a human to read."
            .into(),
        evidence: message
            .iter()
            .map(|text| Fact::new(format!("nodegroup {}", evidence.nodegroup.name), text))
            .collect(),
        remedy: None,
        subject: Subject::None,
    }
}

#[cfg(test)]
mod tests;
