//! Resolution: from a trigger's Auto Scaling group to the EKS managed nodegroup it belongs to,
//! through the `eks:cluster-name` and `eks:nodegroup-name` tags, or "not ours".

use aws_sdk_autoscaling::types::AutoScalingGroup;

use crate::aws::{AwsClients, AwsError, AwsResultExt};
use crate::core::evidence::{CallLog, GroupFacts, GroupInstance, Target, TemplateRef};

pub const CLUSTER_TAG: &str = "eks:cluster-name";
pub const NODEGROUP_TAG: &str = "eks:nodegroup-name";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Nodegroup(Target),
    /// The group is not an EKS managed nodegroup's; nodemedic touches nothing.
    NotOurs {
        reason: String,
    },
}

/// Looks the group up once; its description is kept as evidence.
pub async fn resolve(
    clients: &AwsClients,
    asg_name: &str,
    calls: &mut CallLog,
) -> Result<Resolution, AwsError> {
    calls.record("autoscaling:DescribeAutoScalingGroups");
    let output = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg_name)
        .send()
        .await
        .op("autoscaling:DescribeAutoScalingGroups")?;
    let Some(group) = output
        .auto_scaling_groups()
        .iter()
        .find(|g| g.auto_scaling_group_name() == Some(asg_name))
    else {
        return Ok(Resolution::NotOurs {
            reason: format!(
                "Auto Scaling group {asg_name} does not exist (deleted, or in another account or region)"
            ),
        });
    };
    Ok(classify(group))
}

/// Pure: decides from a group description whether it belongs to a managed nodegroup.
pub fn classify(group: &AutoScalingGroup) -> Resolution {
    let name = group.auto_scaling_group_name().unwrap_or_default();
    let tag = |key: &str| {
        group
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    match (tag(CLUSTER_TAG), tag(NODEGROUP_TAG)) {
        (Some(cluster), Some(nodegroup)) => Resolution::Nodegroup(Target {
            cluster,
            nodegroup,
            group: Some(group_facts(group)),
        }),
        _ => {
            let self_managed = group
                .tags()
                .iter()
                .filter_map(|t| t.key())
                .find_map(|key| key.strip_prefix("kubernetes.io/cluster/"));
            Resolution::NotOurs {
                reason: match self_managed {
                    Some(cluster) => format!(
                        "Auto Scaling group {name} is a self-managed node group of cluster {cluster} (no {CLUSTER_TAG} / {NODEGROUP_TAG} tags); nodemedic remediates managed nodegroups only"
                    ),
                    None => format!(
                        "Auto Scaling group {name} has no {CLUSTER_TAG} and {NODEGROUP_TAG} tags: not an EKS managed nodegroup"
                    ),
                },
            }
        }
    }
}

/// Pure conversion of an Auto Scaling group description.
pub fn group_facts(group: &AutoScalingGroup) -> GroupFacts {
    let template = group
        .launch_template()
        .or_else(|| {
            group
                .mixed_instances_policy()
                .and_then(|p| p.launch_template())
                .and_then(|t| t.launch_template_specification())
        })
        .map(|spec| TemplateRef {
            id: spec.launch_template_id().map(str::to_string),
            name: spec.launch_template_name().map(str::to_string),
            version: spec.version().map(str::to_string),
        });
    GroupFacts {
        name: group
            .auto_scaling_group_name()
            .unwrap_or_default()
            .to_string(),
        service_linked_role_arn: group.service_linked_role_arn().map(str::to_string),
        instances: group
            .instances()
            .iter()
            .map(|instance| GroupInstance {
                id: instance.instance_id().unwrap_or_default().to_string(),
                lifecycle_state: instance
                    .lifecycle_state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                health_status: instance.health_status().unwrap_or_default().to_string(),
                subnet_id: None,
            })
            .collect(),
        launch_template: template,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_autoscaling::types::{Instance, LifecycleState, TagDescription};

    fn group(tags: &[(&str, &str)]) -> AutoScalingGroup {
        let mut builder = AutoScalingGroup::builder()
            .auto_scaling_group_name("eks-ng-1")
            .service_linked_role_arn("arn:aws:iam::1:role/slr")
            .instances(
                Instance::builder()
                    .instance_id("i-1")
                    .lifecycle_state(LifecycleState::InService)
                    .health_status("Healthy")
                    .build(),
            );
        for (key, value) in tags {
            builder = builder.tags(TagDescription::builder().key(*key).value(*value).build());
        }
        builder.build()
    }

    #[test]
    fn the_eks_tags_name_the_nodegroup() {
        let resolution = classify(&group(&[
            (CLUSTER_TAG, "eks-workshop"),
            (NODEGROUP_TAG, "ng-1"),
        ]));
        let Resolution::Nodegroup(target) = resolution else {
            panic!("expected a nodegroup")
        };
        assert_eq!(target.cluster, "eks-workshop");
        assert_eq!(target.nodegroup, "ng-1");
        let group = target.group.expect("the group");
        assert_eq!(group.instances[0].lifecycle_state, "InService");
        assert_eq!(
            group.service_linked_role_arn.as_deref(),
            Some("arn:aws:iam::1:role/slr")
        );
    }

    #[test]
    fn a_group_without_the_tags_is_not_ours() {
        let Resolution::NotOurs { reason } = classify(&group(&[("team", "web")])) else {
            panic!("expected not ours")
        };
        assert!(reason.contains("not an EKS managed nodegroup"));
    }

    #[test]
    fn one_tag_alone_or_an_empty_value_is_not_enough() {
        assert!(matches!(
            classify(&group(&[(CLUSTER_TAG, "c")])),
            Resolution::NotOurs { .. }
        ));
        assert!(matches!(
            classify(&group(&[(CLUSTER_TAG, "c"), (NODEGROUP_TAG, "")])),
            Resolution::NotOurs { .. }
        ));
    }

    #[test]
    fn a_self_managed_group_is_named_as_such() {
        let Resolution::NotOurs { reason } =
            classify(&group(&[("kubernetes.io/cluster/prod", "owned")]))
        else {
            panic!("expected not ours")
        };
        assert!(reason.contains("self-managed node group of cluster prod"));
    }
}
