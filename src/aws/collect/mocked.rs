//! Evidence collection against aws-smithy-mocks, for the states moto cannot express: nodegroup
//! health issues, Auto Scaling activity messages, and access entries of an API-only cluster.

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
use aws_sdk_autoscaling::operation::describe_scaling_activities::DescribeScalingActivitiesOutput;
use aws_sdk_autoscaling::types::{Activity, AutoScalingGroup as Group, ScalingActivityStatusCode};
use aws_sdk_eks::operation::describe_access_entry::DescribeAccessEntryError;
use aws_sdk_eks::operation::describe_cluster::DescribeClusterOutput;
use aws_sdk_eks::operation::describe_nodegroup::DescribeNodegroupOutput;
use aws_sdk_eks::types::error::ResourceNotFoundException;
use aws_sdk_eks::types::{
    AccessConfigResponse, AuthenticationMode, AutoScalingGroup, Cluster, Issue, Nodegroup,
    NodegroupHealth, NodegroupIssueCode, NodegroupResources, NodegroupScalingConfig,
    NodegroupStatus, VpcConfigResponse,
};
use aws_sdk_iam::operation::get_role::GetRoleOutput;
use aws_sdk_iam::operation::list_attached_role_policies::ListAttachedRolePoliciesOutput;
use aws_sdk_iam::types::{AttachedPolicy, Role};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};

use super::{Scope, collect};
use crate::aws::AwsClients;
use crate::core::checks::{Cause, diagnose};
use crate::core::evidence::Target;
use crate::core::evidence::fixtures::trigger;
use crate::core::evidence::*;
use crate::core::trigger::{HealthEvent, TriggerKind};

const QUOTA: &str = "You have requested more vCPU capacity than your current vCPU limit of 32 allows for the instance bucket that the specified instance type belongs to. Launching EC2 instance failed.";

fn interceptor(rules: &[Rule]) -> MockResponseInterceptor {
    rules.iter().fold(
        MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
        |i, rule| i.with_rule(rule),
    )
}

macro_rules! mocked {
    ($crate_name:ident, $rules:expr) => {
        $crate_name::Client::from_conf(
            $crate_name::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-west-2"))
                .credentials_provider(Credentials::new("test", "test", None, None, "mocks"))
                .http_client(create_mock_http_client())
                .interceptor(interceptor($rules))
                .build(),
        )
    };
}

/// Clients whose every call is answered by `rules`; a call no rule matches fails the test.
fn clients(eks: &[Rule], autoscaling: &[Rule], iam: &[Rule]) -> AwsClients {
    clients_with_review(eks, autoscaling, iam, &[])
}

/// [`clients`] whose IAM Access Analyzer calls are answered by `accessanalyzer`.
pub(crate) fn clients_with_review(
    eks: &[Rule],
    autoscaling: &[Rule],
    iam: &[Rule],
    accessanalyzer: &[Rule],
) -> AwsClients {
    AwsClients {
        region: "us-west-2".into(),
        accessanalyzer: mocked!(aws_sdk_accessanalyzer, accessanalyzer),
        autoscaling: mocked!(aws_sdk_autoscaling, autoscaling),
        ec2: mocked!(aws_sdk_ec2, &[]),
        eks: mocked!(aws_sdk_eks, eks),
        iam: mocked!(aws_sdk_iam, iam),
        kms: mocked!(aws_sdk_kms, &[]),
        credentials: crate::aws::signing::SigningCredentials::new(None),
        // These units are about AWS calls; the cluster's API has its own tests.
        cluster_api: crate::kubernetes::ClusterApiOptions {
            enabled: false,
            ..Default::default()
        },
    }
}

fn degraded_nodegroup() -> Rule {
    mock!(aws_sdk_eks::Client::describe_nodegroup).then_output(|| {
        DescribeNodegroupOutput::builder()
            .nodegroup(
                Nodegroup::builder()
                    .nodegroup_name("ng")
                    .status(NodegroupStatus::Degraded)
                    .node_role("arn:aws:iam::123456789012:role/eks-node")
                    .scaling_config(
                        NodegroupScalingConfig::builder()
                            .min_size(0)
                            .max_size(2)
                            .desired_size(2)
                            .build(),
                    )
                    .subnets("subnet-1")
                    .health(
                        NodegroupHealth::builder()
                            .issues(
                                Issue::builder()
                                    .code(NodegroupIssueCode::AsgInstanceLaunchFailures)
                                    .message(QUOTA)
                                    .resource_ids("eks-ng-1")
                                    .build(),
                            )
                            .build(),
                    )
                    .resources(
                        NodegroupResources::builder()
                            .auto_scaling_groups(
                                AutoScalingGroup::builder().name("eks-ng-1").build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build()
    })
}

fn watched() -> crate::core::trigger::Trigger {
    trigger(TriggerKind::Health(HealthEvent {
        cluster: "c".into(),
        nodegroup: "ng".into(),
        status: "DEGRADED".into(),
        issues: vec![],
    }))
}

fn target() -> Target {
    Target {
        cluster: "c".into(),
        nodegroup: "ng".into(),
        group: None,
    }
}

#[tokio::test]
async fn health_issues_and_scaling_activities_become_evidence_and_a_cause() {
    let group = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups)
        .then_output(|| {
            DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(
                    Group::builder()
                        .auto_scaling_group_name("eks-ng-1")
                        .service_linked_role_arn("arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
                        .build(),
                )
                .build()
        });
    let activities = mock!(aws_sdk_autoscaling::Client::describe_scaling_activities)
        .match_requests(|request| request.auto_scaling_group_name() == Some("eks-ng-1"))
        .then_output(|| {
            DescribeScalingActivitiesOutput::builder()
                .activities(
                    Activity::builder()
                        .activity_id("a-1")
                        .auto_scaling_group_name("eks-ng-1")
                        .cause("capacity")
                        .start_time(aws_smithy_types::DateTime::from_secs(0))
                        .status_code(ScalingActivityStatusCode::Failed)
                        .status_message(QUOTA)
                        .build(),
                )
                .build()
        });
    let clients = clients(&[degraded_nodegroup()], &[group, activities], &[]);

    let evidence = collect(
        &clients,
        &watched(),
        target(),
        Scope::LAUNCH,
        CallLog::default(),
    )
    .await
    .expect("evidence");

    assert_eq!(evidence.nodegroup.status, "DEGRADED");
    assert_eq!(
        evidence.nodegroup.health_issues[0].code,
        "AsgInstanceLaunchFailures"
    );
    assert_eq!(
        evidence.nodegroup.health_issues[0].resource_ids,
        vec!["eks-ng-1"]
    );
    assert_eq!(
        evidence.group.as_ref().map(|g| g.name.as_str()),
        Some("eks-ng-1")
    );
    assert_eq!(evidence.activities[0].status_code, "Failed");
    assert_eq!(
        evidence.activities[0].status_message.as_deref(),
        Some(QUOTA)
    );
    assert_eq!(evidence.calls.total(), 3, "{:?}", evidence.calls);
    assert_eq!(
        diagnose(&evidence).cause(),
        Some(Cause::InstanceQuotaExceeded)
    );
}

#[tokio::test]
async fn an_api_only_cluster_without_the_node_roles_access_entry_is_found() {
    let cluster = mock!(aws_sdk_eks::Client::describe_cluster).then_output(|| {
        DescribeClusterOutput::builder()
            .cluster(
                Cluster::builder()
                    .name("c")
                    .resources_vpc_config(VpcConfigResponse::builder().vpc_id("vpc-1").build())
                    .access_config(
                        AccessConfigResponse::builder()
                            .authentication_mode(AuthenticationMode::Api)
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let no_entry = mock!(aws_sdk_eks::Client::describe_access_entry)
        .match_requests(|request| {
            request.principal_arn() == Some("arn:aws:iam::123456789012:role/eks-node")
        })
        .then_error(|| {
            // The SDK's deserializer puts the code in the error's metadata; so does this mock.
            DescribeAccessEntryError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("no entry")
                    .meta(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("ResourceNotFoundException")
                            .message("no entry")
                            .build(),
                    )
                    .build(),
            )
        });
    let role = mock!(aws_sdk_iam::Client::get_role).then_output(|| {
        GetRoleOutput::builder()
            .role(
                Role::builder()
                    .role_name("eks-node")
                    .path("/")
                    .role_id("AROA1")
                    .arn("arn:aws:iam::123456789012:role/eks-node")
                    .create_date(aws_smithy_types::DateTime::from_secs(0))
                    .build()
                    .expect("a role"),
            )
            .build()
    });
    let policies = mock!(aws_sdk_iam::Client::list_attached_role_policies).then_output(|| {
        let attached = [
            "AmazonEKSWorkerNodePolicy",
            "AmazonEKS_CNI_Policy",
            "AmazonEC2ContainerRegistryReadOnly",
        ]
        .map(|name| {
            AttachedPolicy::builder()
                .policy_arn(format!("arn:aws:iam::aws:policy/{name}"))
                .build()
        });
        ListAttachedRolePoliciesOutput::builder()
            .set_attached_policies(Some(attached.to_vec()))
            .build()
    });
    let scope = Scope {
        launch: false,
        network: false,
        identity: true,
    };
    let group = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups)
        .then_output(|| DescribeAutoScalingGroupsOutput::builder().build());
    let updates = mock!(aws_sdk_eks::Client::list_updates)
        .then_output(|| aws_sdk_eks::operation::list_updates::ListUpdatesOutput::builder().build());
    let clients = clients(
        &[degraded_nodegroup(), cluster, no_entry, updates],
        &[group],
        &[role, policies],
    );

    let evidence = collect(&clients, &watched(), target(), scope, CallLog::default())
        .await
        .expect("evidence");

    let cluster = evidence.cluster.as_ref().expect("cluster evidence");
    assert_eq!(
        cluster.updates_in_progress,
        Some(vec![]),
        "updates were read"
    );
    let identity = evidence.identity.as_ref().expect("identity evidence");
    assert_eq!(identity.access_entry, AccessEntryLookup::Absent);
    assert!(
        matches!(&identity.role, RoleLookup::Found { attached_policy_arns, .. } if attached_policy_arns.len() == 3)
    );
    let causes: Vec<Cause> = diagnose(&evidence).blocking().map(|f| f.cause).collect();
    assert!(
        causes.contains(&Cause::NodeRoleMissingAccessEntry),
        "{causes:?}"
    );
}
