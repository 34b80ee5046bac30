//! Launch rules: what the Auto Scaling failure text says, and whether the launch template, its
//! AMI, its security groups and its user data can make a node at all.

use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{Evidence, ImageLookup, TemplateLookup};
use crate::core::trigger::{LaunchOutcome, TriggerKind};

/// The classes of Auto Scaling launch-failure text (EC2 Auto Scaling guide, "Troubleshoot
/// instance launch failure").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchFailure {
    /// The evidence rules on the launch template's KMS keys decide.
    Kms,
    SubnetOutOfAddresses,
    QuotaExceeded,
    SpotPriceTooLow,
    InstanceTypeUnavailable,
    InsufficientCapacity,
    SecurityGroupMissing,
    KeyPairMissing,
    LifecycleHookAbandoned,
    LaunchTemplateInvalid,
    Ec2InternalError,
}

impl LaunchFailure {
    /// The cause the text alone establishes; `None` when other evidence must decide.
    pub fn cause(self) -> Option<Cause> {
        Some(match self {
            LaunchFailure::Kms => return None,
            LaunchFailure::SubnetOutOfAddresses => Cause::SubnetOutOfAddresses,
            LaunchFailure::QuotaExceeded => Cause::InstanceQuotaExceeded,
            LaunchFailure::SpotPriceTooLow => Cause::SpotPriceTooLow,
            LaunchFailure::InstanceTypeUnavailable => Cause::InstanceTypeUnavailable,
            LaunchFailure::InsufficientCapacity => Cause::InsufficientCapacity,
            LaunchFailure::SecurityGroupMissing => Cause::LaunchTemplateSecurityGroupMissing,
            LaunchFailure::KeyPairMissing => Cause::LaunchTemplateKeyPairMissing,
            LaunchFailure::LifecycleHookAbandoned => Cause::LifecycleHookAbandoned,
            LaunchFailure::LaunchTemplateInvalid => Cause::LaunchTemplateInvalid,
            LaunchFailure::Ec2InternalError => Cause::Ec2InternalError,
        })
    }
}

/// Classifies a failure text by stable substrings, most specific first.
pub fn classify_launch_failure(text: &str) -> Option<LaunchFailure> {
    let lower = text.to_ascii_lowercase();
    let has = |needle: &str| lower.contains(&needle.to_ascii_lowercase());
    let rules: [(bool, LaunchFailure); 11] = [
        (
            has("InvalidKMSKey") || has("Client error on launch"),
            LaunchFailure::Kms,
        ),
        (
            has("not enough free addresses") || has("InsufficientFreeAddresses"),
            LaunchFailure::SubnetOutOfAddresses,
        ),
        (
            (has("vcpu") && has("limit"))
                || has("instance limit")
                || has("are already running")
                || has("max spot instance count")
                || has("fleet requests")
                || has("InstanceLimitExceeded")
                || has("VcpuLimitExceeded"),
            LaunchFailure::QuotaExceeded,
        ),
        (
            has("spot request price") || has("minimum required spot"),
            LaunchFailure::SpotPriceTooLow,
        ),
        (
            has("not supported in your requested availability zone")
                || has("InvalidFleetConfiguration")
                || has("availability zone is no longer supported")
                || has("requested configuration is currently not supported")
                || (has("instance type") && has("does not exist")),
            LaunchFailure::InstanceTypeUnavailable,
        ),
        (
            has("InsufficientInstanceCapacity")
                || (has("sufficient") && has("capacity"))
                || has("no spot capacity")
                || has("UnfulfillableCapacity"),
            LaunchFailure::InsufficientCapacity,
        ),
        (
            (has("security group") && has("does not exist")) || has("InvalidGroup.NotFound"),
            LaunchFailure::SecurityGroupMissing,
        ),
        (
            has("key pair") && has("does not exist"),
            LaunchFailure::KeyPairMissing,
        ),
        (
            has("lifecycle action") && has("abandon"),
            LaunchFailure::LifecycleHookAbandoned,
        ),
        (
            has("invalid device name")
                || has("virtualname")
                || has("ebs block device mappings not supported")
                || has("placement groups may not be used")
                || has("InvalidParameter")
                || has("does not fall within the subnet"),
            LaunchFailure::LaunchTemplateInvalid,
        ),
        (has("Server.InternalError"), LaunchFailure::Ec2InternalError),
    ];
    rules
        .into_iter()
        .find(|(matched, _)| *matched)
        .map(|(_, class)| class)
}

/// The launch failure text of a failed launch: the event's, else the latest activity's.
pub fn failure_text(evidence: &Evidence) -> Option<&str> {
    let from_event = evidence.trigger.launch().and_then(|launch| {
        launch.status_message.as_deref().or(launch
            .description
            .as_deref()
            .filter(|_| launch.outcome == LaunchOutcome::Unsuccessful))
    });
    from_event
        .or_else(|| {
            evidence
                .activities
                .iter()
                .find_map(|a| a.status_message.as_deref())
        })
        .or_else(|| {
            evidence
                .nodegroup
                .health_issues
                .iter()
                .find(|issue| issue.code == "AsgInstanceLaunchFailures")
                .map(|issue| issue.message.as_str())
        })
}

pub fn group_name(evidence: &Evidence) -> String {
    evidence
        .group
        .as_ref()
        .map(|g| g.name.clone())
        .or_else(|| evidence.nodegroup.group_names.first().cloned())
        .or_else(|| evidence.trigger.launch().map(|l| l.asg_name.clone()))
        .unwrap_or_else(|| format!("of nodegroup {}", evidence.nodegroup.name))
}

pub fn findings(evidence: &Evidence) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let TriggerKind::Launch(launch) = &evidence.trigger.kind
        && launch.outcome == LaunchOutcome::Unsuccessful
        && let Some(text) = failure_text(evidence)
        && let Some(cause) = classify_launch_failure(text).and_then(LaunchFailure::cause)
    {
        let subject = match cause {
            Cause::SubnetOutOfAddresses => launch.subnet_id.clone(),
            _ => None,
        }
        .map(|id| Subject::Resource { id })
        .unwrap_or_else(|| Subject::Resource {
            id: group_name(evidence),
        });
        findings.push(message_finding(evidence, cause, text, subject));
    }
    findings.extend(template_findings(evidence));
    findings
}

/// A finding established by the failure text itself.
pub fn message_finding(evidence: &Evidence, cause: Cause, text: &str, subject: Subject) -> Finding {
    let doc = cause.doc();
    Finding {
        cause,
        blocking: cause != Cause::Ec2InternalError,
        summary: format!("{}: {}", doc.title, text),
        explanation: format!("{}. {}", doc.title, doc.evidence),
        evidence: vec![Fact::new(
            format!("Auto Scaling group {}", group_name(evidence)),
            text,
        )],
        remedy: Some(remedy(evidence, cause)),
        subject,
    }
}

fn remedy(evidence: &Evidence, cause: Cause) -> String {
    let nodegroup = &evidence.nodegroup;
    match cause {
        Cause::InsufficientCapacity => format!(
            "aws eks create-nodegroup ... --instance-types <several types> (instance types cannot be changed in place; \
             current: {}), or add subnets in other zones",
            nodegroup.instance_types.join(",")
        ),
        Cause::InstanceQuotaExceeded => "aws service-quotas list-service-quotas --service-code ec2 --query \
             \"Quotas[?contains(QuotaName,'On-Demand')]\" then aws service-quotas request-service-quota-increase \
             --service-code ec2 --quota-code <code> --desired-value <n>"
            .into(),
        Cause::SubnetOutOfAddresses => format!(
            "aws ec2 describe-subnets --subnet-ids {} --query 'Subnets[].AvailableIpAddressCount'; add subnets or a \
             secondary VPC CIDR",
            nodegroup.subnets.join(" ")
        ),
        _ => cause.doc().remedy.to_string(),
    }
}

fn template_findings(evidence: &Evidence) -> Vec<Finding> {
    let mut findings = Vec::new();
    match &evidence.launch_template {
        Some(TemplateLookup::NotFound { reference, reason }) => findings.push(Finding {
            cause: Cause::LaunchTemplateNotFound,
            blocking: true,
            summary: format!("launch template {reference} does not exist"),
            explanation: format!(
                "Nodegroup {} launches from launch template {reference}, which EC2 cannot find ({reason}).",
                evidence.nodegroup.name
            ),
            evidence: vec![Fact::new(reference, reason)],
            remedy: Some(Cause::LaunchTemplateNotFound.doc().remedy.into()),
            subject: Subject::Resource { id: reference.clone() },
        }),
        Some(TemplateLookup::Found(template)) => {
            let name = format!("launch template {} version {}", template.id, template.version);
            if !template.missing_security_group_ids.is_empty() {
                let missing = template.missing_security_group_ids.join(", ");
                findings.push(Finding {
                    cause: Cause::LaunchTemplateSecurityGroupMissing,
                    blocking: true,
                    summary: format!("{name} names deleted security group(s) {missing}"),
                    explanation: format!(
                        "The launch template attaches security group(s) {missing}, which no longer exist; EC2 refuses \
                         every launch."
                    ),
                    evidence: vec![Fact::new(&name, format!("security groups {missing} not found"))],
                    remedy: Some(format!(
                        "aws ec2 create-launch-template-version --launch-template-id {} --source-version {} \
                         --launch-template-data '{{\"SecurityGroupIds\":[\"<existing-sg>\"]}}' and update the nodegroup",
                        template.id, template.version
                    )),
                    subject: Subject::Resource { id: template.id.clone() },
                });
            }
            if !template.forbidden_settings.is_empty() {
                let settings = template.forbidden_settings.join(", ");
                findings.push(Finding {
                    cause: Cause::LaunchTemplateInvalid,
                    blocking: true,
                    summary: format!("{name} sets what a managed nodegroup may not: {settings}"),
                    explanation: "EKS places a managed nodegroup's instances itself: it chooses the subnets, the \
                                  instance profile of the node role and the purchase option. A launch template \
                                  that sets them is refused when the nodegroup is created or updated, and its \
                                  launches fail."
                        .into(),
                    evidence: vec![Fact::new(&name, settings)],
                    remedy: Some(format!(
                        "Create a version of {} without these settings (subnets go on the nodegroup, the role is its \
                         nodeRole, spot is its capacityType) and update the nodegroup to it",
                        template.id
                    )),
                    subject: Subject::Resource { id: template.id.clone() },
                });
            }
            if let Some(image_id) = &template.image_id {
                if let Some(ImageLookup::NotFound { .. }) = &evidence.image {
                    findings.push(Finding {
                        cause: Cause::AmiNotFound,
                        blocking: true,
                        summary: format!("AMI {image_id} of {name} does not exist or is not shared"),
                        explanation: format!(
                            "The launch template names AMI {image_id}; DescribeImages finds no such image available to \
                             this account."
                        ),
                        evidence: vec![Fact::new(image_id, "DescribeImages: not found")],
                        remedy: Some(format!(
                            "aws ec2 create-launch-template-version --launch-template-id {} --source-version {} \
                             --launch-template-data '{{\"ImageId\":\"<available-ami>\"}}'",
                            template.id, template.version
                        )),
                        subject: Subject::Resource { id: image_id.clone() },
                    });
                }
                if !bootstraps_node(template.user_data.as_deref()) {
                    findings.push(Finding {
                        cause: Cause::CustomAmiWithoutBootstrap,
                        blocking: true,
                        summary: format!("{name} uses custom AMI {image_id} without bootstrap user data"),
                        explanation: "A launch template that names an AMI makes EKS skip its own bootstrap user data. \
                                      The instance starts, but nothing tells kubelet which cluster to join."
                            .into(),
                        evidence: vec![Fact::new(
                            &name,
                            match &template.user_data {
                                None => format!("ImageId {image_id}, no user data"),
                                Some(_) => format!(
                                    "ImageId {image_id}, user data calls neither /etc/eks/bootstrap.sh nor nodeadm"
                                ),
                            },
                        )],
                        remedy: Some(format!(
                            "Add user data to a new version of {}: for AL2 `/etc/eks/bootstrap.sh {}`, for AL2023 a \
                             nodeadm NodeConfig (MIME part application/node.eks.aws) naming cluster {}",
                            template.id, evidence.nodegroup.cluster, evidence.nodegroup.cluster
                        )),
                        subject: Subject::Resource { id: template.id.clone() },
                    });
                }
            }
        }
        None => {}
    }
    findings
}

/// Whether user data bootstraps a node: bootstrap.sh (AL2), nodeadm's NodeConfig (AL2023), or
/// Bottlerocket's kubernetes settings.
pub fn bootstraps_node(user_data: Option<&str>) -> bool {
    user_data.is_some_and(|text| {
        [
            "bootstrap.sh",
            "nodeadm",
            "NodeConfig",
            "settings.kubernetes",
        ]
        .iter()
        .any(|marker| text.contains(marker))
    })
}
