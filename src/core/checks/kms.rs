//! KMS rules: the launch template's keys must exist, be enabled, and let the Auto Scaling
//! service-linked role use them.

use super::launch::{failure_text, group_name};
use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{Evidence, KeyLookup, KeyMetadata};
use crate::core::key_policy::{self, Access, Caller};

/// Status texts with which Auto Scaling reports a launch killed by its KMS key.
pub fn mentions_kms_failure(text: &str) -> bool {
    text.contains("InvalidKMSKey") || text.contains("Client.InternalError: Client error on launch")
}

fn kms_failure_seen(evidence: &Evidence) -> bool {
    let launch = evidence.trigger.launch();
    launch
        .into_iter()
        .flat_map(|l| [&l.status_message, &l.description])
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

pub fn findings(evidence: &Evidence) -> Vec<Finding> {
    let template = evidence
        .launch_template_facts()
        .map(|lt| format!("launch template {} version {}", lt.id, lt.version))
        .unwrap_or_else(|| "launch template".into());
    let seen = kms_failure_seen(evidence);
    let failure_fact = || {
        failure_text(evidence)
            .filter(|_| seen)
            .map(|text| Fact::new(format!("Auto Scaling group {}", group_name(evidence)), text))
    };
    let mut findings = Vec::new();
    for key in &evidence.keys {
        let uses = Fact::new(
            template.clone(),
            format!("encrypts a volume with KMS key {}", key.reference),
        );
        match &key.lookup {
            KeyLookup::NotFound { reason } => findings.push(Finding {
                blocking: true,
                remedy: Some(format!(
                    "Create a launch template version whose block device mappings use an existing, enabled key \
                     instead of {}, and update the nodegroup to it.",
                    key.reference
                )),
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
                blocking: true,
                remedy: Some(match metadata.state.as_str() {
                    "PendingDeletion" => format!(
                        "aws kms cancel-key-deletion --key-id {arn} && aws kms enable-key --key-id {arn}",
                        arn = metadata.arn
                    ),
                    "Disabled" => format!("aws kms enable-key --key-id {}", metadata.arn),
                    _ => format!("Wait for key {} to become Enabled, or use another key.", metadata.arn),
                }),
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
                blocking: true,
                remedy: None,
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
                        service_linked_role: evidence.group.as_ref().and_then(|g| g.service_linked_role_arn.clone()).unwrap_or_else(|| {
                            key_policy::default_autoscaling_role("aws", &evidence.trigger.account)
                        }),
                        cross_account,
                        explicit_deny: None,
                        doubt: None,
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
    let subject = |explicit_deny: Option<String>, doubt: Option<String>| Subject::Key {
        key_arn: key.arn.clone(),
        policy: key.policy.clone(),
        service_linked_role: role.clone(),
        cross_account,
        explicit_deny,
        doubt,
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
            blocking: true,
            remedy: None,
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
            subject: subject(None, None),
        });
    };
    let caller = Caller::for_key(&role, &key.arn);
    let access = match (
        key_policy::assess(policy, caller, &key.grants),
        &key.grants_unreadable,
    ) {
        // A grant nodemedic could not read may be the one that lets the role in.
        (Ok(Access::Missing(missing)), Some(why)) => Ok(Access::Undecided {
            missing,
            reasons: vec![format!("the key's grants could not be read ({why})")],
        }),
        (access, _) => access,
    };
    let not_seen = || {
        (!kms_failure_seen).then(|| {
            "no launch has failed with a KMS error yet, so the policy's effect is inferred, not observed".to_string()
        })
    };
    let (missing, explicit_deny, doubt) = match access {
        Ok(Access::Granted) => return None,
        Ok(Access::Missing(missing)) => (missing.join(", "), None, not_seen()),
        Ok(Access::Denied { sid, action }) => (
            format!("{action} (denied by statement {sid})"),
            Some(format!("statement {sid} denies {action}")),
            None,
        ),
        Ok(Access::Undecided { reasons, .. }) if !kms_failure_seen => {
            let subject = subject(None, Some(reasons.join("; ")));
            return Some(undecided_finding(
                key, &role, uses, enabled, &reasons, subject,
            ));
        }
        Ok(Access::Undecided { missing, reasons }) => (
            if missing.is_empty() {
                "nothing certain".to_string()
            } else {
                missing.join(", ")
            },
            None,
            Some(format!(
                "the policy may already let the role in or keep it out: {}",
                reasons.join("; ")
            )),
        ),
        Err(error) => (format!("unreadable policy: {error}"), None, None),
    };
    Some(Finding {
        blocking: true,
        remedy: None,
        cause: Cause::KmsKeyPolicyBlocksAutoscaling,
        summary: format!(
            "KMS key policy of {} does not let AWSServiceRoleForAutoScaling use the key",
            key.arn
        ),
        explanation: format!(
            "The launch template encrypts its volumes with customer managed key {}. The key is Enabled, but its policy \
             does not allow the Auto Scaling service-linked role {role} to use it (not allowed: {missing}). Auto Scaling \
             launches the instance, EC2 cannot attach the encrypted volume, and the instance is terminated with \
             Client.InvalidKMSKey.InvalidState. The key policy needs the two statements from the EC2 Auto Scaling guide.{}",
            key.arn,
            doubt
                .as_ref()
                .map(|why| format!(" A human must confirm before it changes: {why}."))
                .unwrap_or_default()
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
        subject: subject(explicit_deny, doubt),
    })
}

/// A policy that may let the role in through conditions or grants nodemedic cannot decide, with
/// no KMS launch failure seen: "granted or unknown", reported but never a blocking cause.
fn undecided_finding(
    key: &KeyMetadata,
    role: &str,
    uses: Fact,
    enabled: Fact,
    reasons: &[String],
    subject: Subject,
) -> Finding {
    Finding {
        blocking: false,
        remedy: None,
        cause: Cause::KmsKeyPolicyBlocksAutoscaling,
        summary: format!(
            "KMS key {} may or may not let AWSServiceRoleForAutoScaling use it",
            key.arn
        ),
        explanation: format!(
            "The launch template encrypts its volumes with customer managed key {}. Whether its policy lets {role} use \
             the key depends on what nodemedic cannot evaluate ({}). No launch has failed with a KMS error, so the key \
             is taken as granted and left unchanged.",
            key.arn,
            reasons.join("; ")
        ),
        evidence: [uses, enabled]
            .into_iter()
            .chain(reasons.iter().map(|reason| Fact::new(&key.arn, reason)))
            .collect(),
        subject,
    }
}

/// The role Auto Scaling launches with: the group's own setting, else the account default.
pub fn service_linked_role(evidence: &Evidence, key: &KeyMetadata) -> String {
    evidence
        .group
        .as_ref()
        .and_then(|g| g.service_linked_role_arn.clone())
        .unwrap_or_else(|| {
            let partition = key.arn.split(':').nth(1).unwrap_or("aws");
            key_policy::default_autoscaling_role(partition, &evidence.trigger.account)
        })
}
