//! Diagnosis: pure rules from [`Evidence`] to findings with stable cause codes. No I/O, no clock.

mod catalog;

pub use catalog::{Cause, CauseDoc};

use serde::{Deserialize, Serialize};

use crate::evidence::{Evidence, KeyLookup, KeyMetadata, NetworkFacts};
use crate::intake::LaunchOutcome;
use crate::plan::key_policy::{self, Access};

/// Interface VPC endpoints (plus the S3 gateway endpoint) a node needs to join a cluster
/// without a route to the internet.
pub const PRIVATE_JOIN_SERVICES: [&str; 5] = ["ec2", "ecr.api", "ecr.dkr", "s3", "sts"];

/// One cause found, with the observations that prove it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub cause: Cause,
    /// One line for lists and notifications.
    pub summary: String,
    /// Why this stops nodes joining, for the report.
    pub explanation: String,
    pub evidence: Vec<Fact>,
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
    fn new(resource: impl Into<String>, observed: impl Into<String>) -> Self {
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
    },
    UnusableKey {
        reference: String,
        state: String,
    },
    Subnet {
        subnet_id: String,
        route_table_id: Option<String>,
        vpc_id: String,
        availability_zone: Option<String>,
    },
    None,
}

/// All findings for one incident, most important first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Diagnosis {
    pub findings: Vec<Finding>,
}

impl Diagnosis {
    pub fn primary(&self) -> Option<&Finding> {
        self.findings.first()
    }

    /// The cause code an incident is filed under; `None` when nothing is wrong.
    pub fn cause(&self) -> Option<Cause> {
        self.primary().map(|finding| finding.cause)
    }

    pub fn is_healthy(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Runs every rule over the evidence.
pub fn diagnose(evidence: &Evidence) -> Diagnosis {
    let mut findings = Vec::new();
    findings.extend(key_findings(evidence));
    if let Some(network) = &evidence.network {
        findings.extend(egress_finding(evidence, network));
    }
    if findings.is_empty() && evidence.trigger.outcome == LaunchOutcome::Unsuccessful {
        findings.push(unknown_finding(evidence));
    }
    findings.sort_by_key(|finding| finding.cause.rank());
    Diagnosis { findings }
}

/// Status texts with which Auto Scaling reports a launch killed by its KMS key.
pub fn mentions_kms_failure(text: &str) -> bool {
    text.contains("InvalidKMSKey") || text.contains("Client.InternalError: Client error on launch")
}

fn launch_failure_text(evidence: &Evidence) -> Option<&str> {
    let trigger = &evidence.trigger;
    trigger
        .status_message
        .as_deref()
        .or(trigger.description.as_deref())
        .or_else(|| {
            evidence
                .activities
                .iter()
                .find_map(|activity| activity.status_message.as_deref())
        })
}

fn kms_failure_seen(evidence: &Evidence) -> bool {
    let trigger = &evidence.trigger;
    [&trigger.status_message, &trigger.description]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .chain(
            evidence
                .activities
                .iter()
                .filter_map(|a| a.status_message.as_deref()),
        )
        .chain(
            evidence
                .nodegroup
                .health_issues
                .iter()
                .map(|issue| issue.message.as_str()),
        )
        .any(mentions_kms_failure)
}

fn key_findings(evidence: &Evidence) -> Vec<Finding> {
    let template = evidence
        .launch_template
        .as_ref()
        .map(|lt| format!("launch template {} version {}", lt.id, lt.version))
        .unwrap_or_else(|| "launch template".into());
    let seen = kms_failure_seen(evidence);
    let failure_fact = || {
        launch_failure_text(evidence)
            .filter(|_| seen)
            .map(|text| Fact::new(format!("Auto Scaling group {}", evidence.group.name), text))
    };
    let mut findings = Vec::new();
    for key in &evidence.keys {
        let uses = Fact::new(
            template.clone(),
            format!("encrypts a volume with KMS key {}", key.reference),
        );
        match &key.lookup {
            KeyLookup::NotFound { reason } => findings.push(Finding {
                cause: Cause::KmsKeyUnusable,
                summary: format!("KMS key {} does not exist", key.reference),
                explanation: format!(
                    "The launch template encrypts its volumes with KMS key {}, which KMS cannot find ({reason}). \
                     No key policy change can help: point the launch template at an existing, enabled key.",
                    key.reference
                ),
                evidence: [Some(uses), Some(Fact::new(&key.reference, format!("DescribeKey: {reason}"))), failure_fact()]
                    .into_iter()
                    .flatten()
                    .collect(),
                subject: Subject::UnusableKey {
                    reference: key.reference.clone(),
                    state: "missing".into(),
                },
            }),
            KeyLookup::Found(metadata) if metadata.state != "Enabled" => findings.push(Finding {
                cause: Cause::KmsKeyUnusable,
                summary: format!("KMS key {} is {}", metadata.arn, metadata.state),
                explanation: format!(
                    "The launch template encrypts its volumes with KMS key {}, whose state is {}. EC2 cannot create \
                     an encrypted volume with it, so every launch fails. No key policy change can help: enable the key \
                     (or cancel its deletion) or use another key.",
                    metadata.arn, metadata.state
                ),
                evidence: [Some(uses), Some(Fact::new(&metadata.arn, format!("KeyState={}", metadata.state))), failure_fact()]
                    .into_iter()
                    .flatten()
                    .collect(),
                subject: Subject::UnusableKey {
                    reference: key.reference.clone(),
                    state: metadata.state.clone(),
                },
            }),
            KeyLookup::Unreadable { reason } if seen => {
                let owner = key.reference.split(':').nth(4).filter(|a| a.len() == 12);
                let cross_account = owner.is_some_and(|a| a != evidence.trigger.account);
                findings.push(Finding {
                    cause: Cause::KmsKeyPolicyBlocksAutoscaling,
                    summary: format!("KMS key {} cannot be described; it probably does not let Auto Scaling use it", key.reference),
                    explanation: format!(
                        "Launches fail with a KMS error and the launch template uses key {}, which nodemedic may not \
                         describe ({reason}). {}",
                        key.reference,
                        match owner {
                            Some(account) if cross_account => format!(
                                "The key belongs to account {account}: its owner must allow account {} in the key policy \
                                 and create a grant for the Auto Scaling service-linked role.",
                                evidence.trigger.account
                            ),
                            _ => "Check that the key exists and that its policy allows AWSServiceRoleForAutoScaling.".into(),
                        }
                    ),
                    evidence: [Some(uses), Some(Fact::new(&key.reference, format!("DescribeKey: {reason}"))), failure_fact()]
                        .into_iter()
                        .flatten()
                        .collect(),
                    subject: Subject::Key {
                        key_arn: key.reference.clone(),
                        policy: None,
                        service_linked_role: evidence.group.service_linked_role_arn.clone().unwrap_or_else(|| {
                            key_policy::default_autoscaling_role("aws", &evidence.trigger.account)
                        }),
                        cross_account,
                        explicit_deny: None,
                    },
                });
            }
            KeyLookup::Unreadable { .. } => {}
            KeyLookup::Found(metadata) if metadata.is_customer_managed() => {
                if let Some(finding) = policy_finding(evidence, metadata, uses, failure_fact(), seen) {
                    findings.push(finding);
                }
            }
            KeyLookup::Found(_) => {}
        }
    }
    findings
}

fn policy_finding(
    evidence: &Evidence,
    key: &KeyMetadata,
    uses: Fact,
    failure: Option<Fact>,
    kms_failure_seen: bool,
) -> Option<Finding> {
    let role = service_linked_role(evidence, key);
    let cross_account = key.account != evidence.trigger.account;
    let subject = |explicit_deny: Option<String>| Subject::Key {
        key_arn: key.arn.clone(),
        policy: key.policy.clone(),
        service_linked_role: role.clone(),
        cross_account,
        explicit_deny,
    };
    let enabled = Fact::new(
        &key.arn,
        format!("KeyState=Enabled, KeyManager={}", key.manager),
    );
    let Some(policy) = &key.policy else {
        // Without the policy only the launch failure itself can point at the key.
        if !kms_failure_seen {
            return None;
        }
        let why = key
            .policy_unreadable
            .clone()
            .unwrap_or_else(|| "not readable".into());
        return Some(Finding {
            cause: Cause::KmsKeyPolicyBlocksAutoscaling,
            summary: format!(
                "KMS key {} probably does not let Auto Scaling use it",
                key.arn
            ),
            explanation: format!(
                "Launches fail with a KMS error and the launch template uses key {}, which is Enabled, but its policy \
                 could not be read ({why}). {}",
                key.arn,
                if cross_account {
                    format!(
                        "The key belongs to account {}: its owner must allow account {} in the key policy, and a grant \
                         must be created for {role}.",
                        key.account, evidence.trigger.account
                    )
                } else {
                    format!("Its policy must allow {role} to use the key.")
                }
            ),
            evidence: [
                Some(uses),
                Some(enabled),
                Some(Fact::new(&key.arn, format!("policy: {why}"))),
                failure,
            ]
            .into_iter()
            .flatten()
            .collect(),
            subject: subject(None),
        });
    };
    let (missing, explicit_deny) = match key_policy::assess(policy, &role) {
        Ok(Access::Granted) => return None,
        Ok(Access::Missing(missing)) => (missing.join(", "), None),
        Ok(Access::Denied { sid, action }) => (
            format!("{action} (denied by statement {sid})"),
            Some(format!("statement {sid} denies {action}")),
        ),
        Err(error) => (format!("unreadable policy: {error}"), None),
    };
    Some(Finding {
        cause: Cause::KmsKeyPolicyBlocksAutoscaling,
        summary: format!(
            "KMS key policy of {} does not let AWSServiceRoleForAutoScaling use the key",
            key.arn
        ),
        explanation: format!(
            "The launch template encrypts its volumes with customer managed key {}. The key is Enabled, but its policy \
             does not allow the Auto Scaling service-linked role {role} to use it (not allowed: {missing}). Auto Scaling \
             launches the instance, EC2 cannot attach the encrypted volume, and the instance is terminated with \
             Client.InvalidKMSKey.InvalidState. The key policy needs the two statements from the EC2 Auto Scaling guide.",
            key.arn
        ),
        evidence: [
            Some(uses),
            Some(enabled),
            Some(Fact::new(
                &key.arn,
                format!("key policy does not allow {role}: {missing}"),
            )),
            failure,
        ]
        .into_iter()
        .flatten()
        .collect(),
        subject: subject(explicit_deny),
    })
}

/// The role Auto Scaling launches with: the group's own setting, else the account default.
pub fn service_linked_role(evidence: &Evidence, key: &KeyMetadata) -> String {
    evidence
        .group
        .service_linked_role_arn
        .clone()
        .unwrap_or_else(|| {
            let partition = key.arn.split(':').nth(1).unwrap_or("aws");
            key_policy::default_autoscaling_role(partition, &evidence.trigger.account)
        })
}

fn egress_finding(evidence: &Evidence, network: &NetworkFacts) -> Option<Finding> {
    let table = network.route_table_for(&network.subnet_id);
    let routes = table.map(|t| t.routes.as_slice()).unwrap_or_default();
    if routes.iter().any(|route| route.is_default_ipv4()) {
        return None;
    }
    let region = &evidence.trigger.region;
    let missing: Vec<&str> = PRIVATE_JOIN_SERVICES
        .iter()
        .copied()
        .filter(|service| {
            let name = format!("com.amazonaws.{region}.{service}");
            !network
                .endpoints
                .iter()
                .any(|e| e.service_name == name && e.state.eq_ignore_ascii_case("available"))
        })
        .collect();
    if missing.is_empty() {
        return None;
    }
    let table_name = table
        .map(|t| t.id.clone())
        .unwrap_or_else(|| "(no route table)".into());
    let route_text = if routes.is_empty() {
        "no routes".to_string()
    } else {
        routes
            .iter()
            .map(|r| format!("{} -> {} ({})", r.destination, r.target, r.state))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let availability_zone = network
        .subnet(&network.subnet_id)
        .map(|s| s.availability_zone.clone());
    let mut facts = vec![
        Fact::new(
            &table_name,
            format!(
                "routes for subnet {}: {route_text}; no 0.0.0.0/0 route",
                network.subnet_id
            ),
        ),
        Fact::new(
            &network.vpc_id,
            format!(
                "missing VPC endpoints for a private join: {}",
                missing.join(", ")
            ),
        ),
    ];
    if let Some(instance) = &evidence.trigger.instance_id {
        facts.insert(
            0,
            Fact::new(
                instance,
                format!("launched into subnet {}", network.subnet_id),
            ),
        );
    }
    Some(Finding {
        cause: Cause::SubnetNoEgressRoute,
        summary: format!(
            "subnet {} has no default route and no VPC endpoints for a private join",
            network.subnet_id
        ),
        explanation: format!(
            "Instances in subnet {} use route table {table_name}, which has no 0.0.0.0/0 route to a NAT or internet \
             gateway, and the VPC lacks the endpoints a node needs without one ({}). The instance runs, but kubelet \
             cannot reach EC2, ECR, S3 or STS to bootstrap, so the node never joins the cluster.",
            network.subnet_id,
            missing.join(", ")
        ),
        evidence: facts,
        subject: Subject::Subnet {
            subnet_id: network.subnet_id.clone(),
            route_table_id: table.map(|t| t.id.clone()),
            vpc_id: network.vpc_id.clone(),
            availability_zone,
        },
    })
}

fn unknown_finding(evidence: &Evidence) -> Finding {
    let message = launch_failure_text(evidence).map(str::to_string);
    Finding {
        cause: Cause::Unknown,
        summary: match &message {
            Some(text) => format!("launch failed for a reason nodemedic does not recognise: {text}"),
            None => "launch failed and no rule matched".into(),
        },
        explanation: "No diagnosis rule matched the evidence. The raw failure text and the evidence are recorded \
                      for a human to read."
            .into(),
        evidence: message
            .iter()
            .map(|text| Fact::new(format!("Auto Scaling group {}", evidence.group.name), text))
            .collect(),
        subject: Subject::None,
    }
}

#[cfg(test)]
mod tests;
