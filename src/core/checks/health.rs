//! Nodegroup health issues: every EKS `NodegroupIssueCode` maps to a cause. Issues that another
//! rule already explains with evidence add nothing; the rest become findings of their own.

use super::launch::{classify_launch_failure, message_finding};
use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{Evidence, HealthIssue};

/// The cause an EKS health issue stands for, and whether it blocks nodes joining. The message
/// matters only for AsgInstanceLaunchFailures, whose text is the Auto Scaling failure.
pub fn health_issue_cause(code: &str, message: &str) -> (Cause, bool) {
    match code {
        "AsgInstanceLaunchFailures" => match classify_launch_failure(message).map(|c| c.cause()) {
            Some(Some(cause)) => (cause, cause != Cause::Ec2InternalError),
            Some(None) => (Cause::KmsKeyPolicyBlocksAutoscaling, true),
            None => (Cause::Unknown, true),
        },
        "AutoScalingGroupNotFound" => (Cause::AutoscalingGroupMissing, true),
        "AutoScalingGroupInvalidConfiguration" => (Cause::AutoscalingGroupModified, true),
        "AutoScalingGroupOptInRequired" => (Cause::AutoscalingOptInRequired, true),
        "AutoScalingGroupRateLimitExceeded"
        | "IamLimitExceeded"
        | "IamThrottling"
        | "LimitExceeded" => (Cause::AwsApiLimit, true),
        "AutoScalingGroupInstanceRefreshActive" => (Cause::InstanceRefreshInProgress, false),
        "Ec2SecurityGroupNotFound" => (Cause::ClusterSecurityGroupMissing, true),
        "Ec2SecurityGroupDeletionFailure"
        | "Ec2LaunchTemplateDeletionFailure"
        | "NodeTerminationFailure"
        | "PodEvictionFailure" => (Cause::NodegroupCleanupBlocked, false),
        "Ec2LaunchTemplateNotFound" | "SourceEc2LaunchTemplateNotFound" => {
            (Cause::LaunchTemplateNotFound, true)
        }
        "Ec2LaunchTemplateVersionMismatch" => (Cause::LaunchTemplateVersionMismatch, true),
        "Ec2LaunchTemplateInvalidConfiguration" => (Cause::LaunchTemplateInvalid, true),
        "Ec2LaunchTemplateMaxLimitExceeded" | "Ec2LaunchTemplateVersionMaxLimitExceeded" => {
            (Cause::LaunchTemplateLimitExceeded, true)
        }
        "Ec2SubnetNotFound" => (Cause::SubnetNotFound, true),
        "Ec2SubnetInvalidConfiguration" => (Cause::PublicSubnetWithoutPublicIp, true),
        "Ec2SubnetMissingIpv6Assignment" => (Cause::SubnetMissingIpv6, true),
        "Ec2SubnetListTooLong" => (Cause::SubnetListTooLong, true),
        "Ec2InstanceTypeDoesNotExist" => (Cause::InstanceTypeUnavailable, true),
        "IamInstanceProfileNotFound" | "IamNodeRoleNotFound" => (Cause::NodeRoleNotFound, true),
        "NodeCreationFailure" => (Cause::NodeCreationFailure, true),
        "InstanceLimitExceeded" => (Cause::InstanceQuotaExceeded, true),
        "InsufficientFreeAddresses" => (Cause::SubnetOutOfAddresses, true),
        "AccessDenied" => (Cause::ClusterAccessDenied, true),
        "InternalFailure" => (Cause::EksInternalFailure, true),
        "ClusterUnreachable" => (Cause::ClusterUnreachable, true),
        "AmiIdNotFound" => (Cause::AmiNotFound, true),
        "KubernetesLabelInvalid" => (Cause::KubernetesLabelInvalid, true),
        _ => (Cause::Unknown, true),
    }
}

/// Findings for health issues no evidence-based rule explains (`explained` lists the causes
/// those rules found).
pub fn findings(evidence: &Evidence, explained: &[Cause]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for issue in &evidence.nodegroup.health_issues {
        let (cause, blocking) = health_issue_cause(&issue.code, &issue.message);
        // Key problems are judged from the key itself (the message may predate a fix); a failed
        // join is explained by the other checks, or concluded on when none explains it.
        if matches!(
            cause,
            Cause::KmsKeyPolicyBlocksAutoscaling | Cause::NodeCreationFailure
        ) || explained.contains(&cause)
        {
            continue;
        }
        findings.push(issue_finding(evidence, issue, cause, blocking));
    }
    findings
}

fn issue_finding(
    evidence: &Evidence,
    issue: &HealthIssue,
    cause: Cause,
    blocking: bool,
) -> Finding {
    let subject = Subject::Resource {
        id: issue
            .resource_ids
            .first()
            .cloned()
            .unwrap_or_else(|| evidence.nodegroup.name.clone()),
    };
    if issue.code == "AsgInstanceLaunchFailures" && cause != Cause::Unknown {
        let mut finding = message_finding(evidence, cause, &issue.message, subject);
        finding.blocking = blocking;
        finding.evidence.push(health_fact(evidence, issue));
        return finding;
    }
    let doc = cause.doc();
    Finding {
        cause,
        blocking,
        summary: if cause == Cause::Unknown {
            format!(
                "nodegroup {} reports {}: {}",
                evidence.nodegroup.name, issue.code, issue.message
            )
        } else {
            format!("{} (EKS health issue {})", doc.title, issue.code)
        },
        explanation: if issue.message.is_empty() {
            format!("{}. {}", doc.title, doc.evidence)
        } else {
            format!("{}. EKS says: {}", doc.title, issue.message)
        },
        evidence: vec![health_fact(evidence, issue)],
        remedy: Some(doc.remedy.into()),
        subject,
    }
}

fn health_fact(evidence: &Evidence, issue: &HealthIssue) -> Fact {
    Fact::new(
        format!("nodegroup {}", evidence.nodegroup.name),
        format!(
            "health issue {}: {} (resources: {})",
            issue.code,
            issue.message,
            issue.resource_ids.join(", ")
        ),
    )
}
