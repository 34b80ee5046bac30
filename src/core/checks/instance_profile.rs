//! The instance profile instances launch with: EC2 hands an instance its role's credentials
//! through it, so it must exist and hold the node role.

use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{Evidence, IdentityFacts, ProfileLookup, RoleLookup};

fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

pub fn findings(evidence: &Evidence, identity: &IdentityFacts) -> Vec<Finding> {
    // A deleted role cannot be in any profile (IAM removes it first); that is the cause to fix.
    if matches!(identity.role, RoleLookup::NotFound { .. }) {
        return Vec::new();
    }
    let Some(lookup) = &identity.instance_profile else {
        return Vec::new();
    };
    let role = role_name(&identity.node_role_arn);
    let group = evidence
        .group
        .as_ref()
        .map(|g| g.name.as_str())
        .unwrap_or("<group>");
    let (why, fact, remedy, subject) = match lookup {
        ProfileLookup::Found {
            template,
            name,
            role_arns,
            ..
        } => {
            if role_arns.iter().any(|arn| role_name(arn) == role) {
                return Vec::new();
            }
            let holds = if role_arns.is_empty() {
                "no role".to_string()
            } else {
                role_arns.join(", ")
            };
            // A profile holds one role: another must come out before the node role goes in.
            let make_room = role_arns
                .iter()
                .map(|arn| {
                    format!(
                        "aws iam remove-role-from-instance-profile --instance-profile-name {name} --role-name {} && ",
                        role_name(arn)
                    )
                })
                .collect::<String>();
            (
                format!("instance profile {name} holds {holds}, not node role {role}"),
                Fact::new(
                    format!("instance profile {name}"),
                    format!("Roles: {holds} (read from launch template {template})"),
                ),
                format!(
                    "{make_room}aws iam add-role-to-instance-profile --instance-profile-name {name} --role-name {role}"
                ),
                // Only an empty profile gets a planned fix: one holding another role may serve
                // something else, and is its owner's to change.
                if role_arns.is_empty() {
                    Subject::InstanceProfile {
                        profile_name: name.clone(),
                        role_name: role.to_string(),
                    }
                } else {
                    Subject::Resource { id: name.clone() }
                },
            )
        }
        ProfileLookup::NotFound { template, name } => (
            format!(
                "launch template {template} names instance profile {name}, which does not exist"
            ),
            Fact::new(template, format!("IamInstanceProfile {name}: NoSuchEntity")),
            format!(
                "aws iam create-instance-profile --instance-profile-name {name} && \
                 aws iam add-role-to-instance-profile --instance-profile-name {name} --role-name {role}"
            ),
            Subject::Resource { id: name.clone() },
        ),
        ProfileLookup::NotInTemplate { template } => (
            format!(
                "Auto Scaling group {group} launches from {template}, which gives no instance profile"
            ),
            Fact::new(template, "no IamInstanceProfile"),
            format!(
                "Point the group back at the launch template EKS made for the nodegroup (it carries the \
                 profile): aws autoscaling update-auto-scaling-group --auto-scaling-group-name {group} \
                 --launch-template LaunchTemplateId=<eks-made template>,Version=<version>"
            ),
            Subject::Resource {
                id: template.clone(),
            },
        ),
        ProfileLookup::Unreadable { .. } => return Vec::new(),
    };
    vec![Finding {
        cause: Cause::InstanceProfileInvalid,
        blocking: true,
        summary: why.clone(),
        explanation: format!(
            "EC2 gives an instance its role's credentials through the instance profile it launches with. \
             Here {why}, so instances of nodegroup {} start without the node role and cannot call EKS, \
             EC2 or ECR to join.",
            evidence.nodegroup.name
        ),
        evidence: vec![fact],
        remedy: Some(remedy),
        subject,
    }]
}
