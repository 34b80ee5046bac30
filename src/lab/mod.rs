//! The seed labs as worlds: builds the broken states of lab 000 (a subnet without a route to
//! the NAT gateway) and lab 002 (a KMS key policy that locks out AWSServiceRoleForAutoScaling)
//! with the same API calls a user would make, plus the SQS queue and EventBridge rule that feed
//! nodemedic. Used by the demo and the integration tests against an emulator; never by the daemon.

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, RequestLaunchTemplateData, VolumeType,
};
use aws_sdk_eks::types::{LaunchTemplateSpecification, NodegroupScalingConfig, VpcConfigRequest};
use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

use crate::aws::{AwsError, AwsResultExt};

pub mod apiserver;
mod auth;
mod emulator;
mod roles;
pub use auth::{AUTH_CLUSTER, AUTH_NODEGROUP, LabAuth, lab_auth};
pub use emulator::{Emulator, REGION};
pub use roles::{CLUSTER_POLICIES, NODE_POLICIES, cluster_role, node_role, role};

pub const CLUSTER: &str = "eks-workshop";
/// The Kubernetes version the lab clusters run, as a user creating one today would pick.
pub const KUBERNETES_VERSION: &str = "1.33";
pub const ZONE: &str = "us-west-2a";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("the emulator did not return {0}")]
    Missing(&'static str),
    #[error("emulator: {0}")]
    Emulator(String),
}

/// Clients for building worlds.
#[derive(Clone, Debug)]
pub struct LabClients {
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub eks: aws_sdk_eks::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub iam: aws_sdk_iam::Client,
    pub kms: aws_sdk_kms::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sts: aws_sdk_sts::Client,
}

impl LabClients {
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            eks: aws_sdk_eks::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
        }
    }

    pub async fn account(&self) -> Result<String, LabError> {
        let identity = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .op("sts:GetCallerIdentity")?;
        identity
            .account()
            .map(str::to_string)
            .ok_or(LabError::Missing("an account id"))
    }
}

/// The queue nodemedic reads, its dead-letter queue, and the rule that feeds it.
#[derive(Debug, Clone)]
pub struct EventQueue {
    pub url: String,
    pub arn: String,
    pub dead_letter_url: String,
}

/// Creates `name` with a dead-letter queue (after `max_receives` receives) and an EventBridge
/// rule for Auto Scaling launch events targeting it.
pub async fn event_queue(
    c: &LabClients,
    name: &str,
    max_receives: u32,
) -> Result<EventQueue, LabError> {
    let dead_letter_url = create_queue(c, &format!("{name}-dlq"), None).await?;
    let dead_letter_arn = queue_arn(c, &dead_letter_url).await?;
    let redrive = json!({ "deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receives.to_string() });
    let url = create_queue(c, name, Some(redrive.to_string())).await?;
    let arn = queue_arn(c, &url).await?;
    let pattern = json!({
        "source": ["aws.autoscaling"],
        "detail-type": [crate::intake::LAUNCH_UNSUCCESSFUL, crate::intake::LAUNCH_SUCCESSFUL],
    });
    c.events
        .put_rule()
        .name(format!("{name}-autoscaling-launches"))
        .event_pattern(pattern.to_string())
        .send()
        .await
        .op("events:PutRule")?;
    c.events
        .put_targets()
        .rule(format!("{name}-autoscaling-launches"))
        .targets(
            Target::builder()
                .id("nodemedic")
                .arn(&arn)
                .build()
                .map_err(|_| LabError::Missing("a valid target"))?,
        )
        .send()
        .await
        .op("events:PutTargets")?;
    Ok(EventQueue {
        url,
        arn,
        dead_letter_url,
    })
}

async fn create_queue(
    c: &LabClients,
    name: &str,
    redrive: Option<String>,
) -> Result<String, LabError> {
    let mut request = c
        .sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "30");
    if let Some(redrive) = redrive {
        request = request.attributes(QueueAttributeName::RedrivePolicy, redrive);
    }
    let output = request.send().await.op("sqs:CreateQueue")?;
    output
        .queue_url()
        .map(str::to_string)
        .ok_or(LabError::Missing("a queue URL"))
}

async fn queue_arn(c: &LabClients, url: &str) -> Result<String, LabError> {
    let output = c
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .op("sqs:GetQueueAttributes")?;
    output
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or(LabError::Missing("a queue ARN"))
}

/// The cluster's network as the labs start it: a public subnet with an internet gateway and a
/// NAT gateway, and a private subnet routed through the NAT gateway.
#[derive(Debug, Clone)]
pub struct Network {
    pub account: String,
    /// The node role `workshop` creates (with the three managed policies nodes need).
    pub node_role_arn: String,
    pub vpc: String,
    pub internet_gateway: String,
    pub public_subnet: String,
    pub private_subnet: String,
    pub nat_gateway: String,
    pub public_route_table: String,
    pub private_route_table: String,
}

pub async fn network(c: &LabClients) -> Result<Network, LabError> {
    let account = c.account().await?;
    let vpc = c
        .ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .send()
        .await
        .op("ec2:CreateVpc")?
        .vpc()
        .and_then(|v| v.vpc_id())
        .map(str::to_string)
        .ok_or(LabError::Missing("a VPC id"))?;
    for attribute in ["support", "hostnames"] {
        let request = c.ec2.modify_vpc_attribute().vpc_id(&vpc);
        let enabled = AttributeBooleanValue::builder().value(true).build();
        let request = if attribute == "support" {
            request.enable_dns_support(enabled)
        } else {
            request.enable_dns_hostnames(enabled)
        };
        request.send().await.op("ec2:ModifyVpcAttribute")?;
    }
    let internet_gateway = c
        .ec2
        .create_internet_gateway()
        .send()
        .await
        .op("ec2:CreateInternetGateway")?
        .internet_gateway()
        .and_then(|g| g.internet_gateway_id())
        .map(str::to_string)
        .ok_or(LabError::Missing("an internet gateway id"))?;
    c.ec2
        .attach_internet_gateway()
        .internet_gateway_id(&internet_gateway)
        .vpc_id(&vpc)
        .send()
        .await
        .op("ec2:AttachInternetGateway")?;

    let public_subnet = subnet(c, &vpc, "10.42.0.0/19").await?;
    c.ec2
        .modify_subnet_attribute()
        .subnet_id(&public_subnet)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .op("ec2:ModifySubnetAttribute")?;
    let public_route_table = route_table(c, &vpc, &public_subnet).await?;
    c.ec2
        .create_route()
        .route_table_id(&public_route_table)
        .destination_cidr_block("0.0.0.0/0")
        .gateway_id(&internet_gateway)
        .send()
        .await
        .op("ec2:CreateRoute")?;

    let allocation = c
        .ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .op("ec2:AllocateAddress")?
        .allocation_id()
        .map(str::to_string)
        .ok_or(LabError::Missing("an allocation id"))?;
    let nat_gateway = c
        .ec2
        .create_nat_gateway()
        .subnet_id(&public_subnet)
        .allocation_id(allocation)
        .send()
        .await
        .op("ec2:CreateNatGateway")?
        .nat_gateway()
        .and_then(|n| n.nat_gateway_id())
        .map(str::to_string)
        .ok_or(LabError::Missing("a NAT gateway id"))?;

    let private_subnet = subnet(c, &vpc, "10.42.96.0/19").await?;
    let private_route_table = route_table(c, &vpc, &private_subnet).await?;
    c.ec2
        .create_route()
        .route_table_id(&private_route_table)
        .destination_cidr_block("0.0.0.0/0")
        .nat_gateway_id(&nat_gateway)
        .send()
        .await
        .op("ec2:CreateRoute")?;
    Ok(Network {
        node_role_arn: format!("arn:aws:iam::{account}:role/eks-workshop-node"),
        account,
        vpc,
        internet_gateway,
        public_subnet,
        private_subnet,
        nat_gateway,
        public_route_table,
        private_route_table,
    })
}

pub async fn subnet(c: &LabClients, vpc: &str, cidr: &str) -> Result<String, LabError> {
    c.ec2
        .create_subnet()
        .vpc_id(vpc)
        .cidr_block(cidr)
        .availability_zone(ZONE)
        .send()
        .await
        .op("ec2:CreateSubnet")?
        .subnet()
        .and_then(|s| s.subnet_id())
        .map(str::to_string)
        .ok_or(LabError::Missing("a subnet id"))
}

/// A new route table (only the local route) associated with `subnet`.
pub async fn route_table(c: &LabClients, vpc: &str, subnet: &str) -> Result<String, LabError> {
    let table = c
        .ec2
        .create_route_table()
        .vpc_id(vpc)
        .send()
        .await
        .op("ec2:CreateRouteTable")?
        .route_table()
        .and_then(|t| t.route_table_id())
        .map(str::to_string)
        .ok_or(LabError::Missing("a route table id"))?;
    c.ec2
        .associate_route_table()
        .route_table_id(&table)
        .subnet_id(subnet)
        .send()
        .await
        .op("ec2:AssociateRouteTable")?;
    Ok(table)
}

/// The workshop both labs start from: the network, the node and cluster roles, cluster
/// `eks-workshop`, and
/// a healthy nodegroup `default` in the private subnet.
pub async fn workshop(c: &LabClients) -> Result<Network, LabError> {
    let network = network(c).await?;
    node_role(c, "eks-workshop-node", &NODE_POLICIES).await?;
    cluster_role(c, "eks-workshop-cluster").await?;
    cluster(c, &network).await?;
    nodegroup(
        c,
        &network,
        "default",
        &network.private_subnet,
        (1, 3, 1),
        None,
    )
    .await?;
    Ok(network)
}

pub async fn cluster(c: &LabClients, network: &Network) -> Result<(), LabError> {
    cluster_named(c, network, CLUSTER, None).await
}

/// A cluster on the network's subnets, optionally authenticating with `authentication_mode`.
pub async fn cluster_named(
    c: &LabClients,
    network: &Network,
    name: &str,
    authentication_mode: Option<aws_sdk_eks::types::AuthenticationMode>,
) -> Result<(), LabError> {
    let mut request = c
        .eks
        .create_cluster()
        .name(name)
        .version(KUBERNETES_VERSION)
        .role_arn(format!(
            "arn:aws:iam::{}:role/eks-workshop-cluster",
            network.account
        ))
        .resources_vpc_config(
            VpcConfigRequest::builder()
                .subnet_ids(&network.private_subnet)
                .subnet_ids(&network.public_subnet)
                .build(),
        );
    if let Some(mode) = authentication_mode {
        request = request.access_config(
            aws_sdk_eks::types::CreateAccessConfigRequest::builder()
                .authentication_mode(mode)
                .build(),
        );
    }
    request.send().await.op("eks:CreateCluster")?;
    Ok(())
}

/// A managed nodegroup of `eks-workshop`; returns its Auto Scaling group's name.
pub async fn nodegroup(
    c: &LabClients,
    network: &Network,
    name: &str,
    subnet: &str,
    scaling: (i32, i32, i32),
    launch_template: Option<&str>,
) -> Result<String, LabError> {
    nodegroup_in(
        c,
        CLUSTER,
        &network.node_role_arn,
        name,
        subnet,
        scaling,
        launch_template,
    )
    .await
}

/// A managed nodegroup of any cluster, with any node role.
pub async fn nodegroup_in(
    c: &LabClients,
    cluster: &str,
    node_role_arn: &str,
    name: &str,
    subnet: &str,
    (min, max, desired): (i32, i32, i32),
    launch_template: Option<&str>,
) -> Result<String, LabError> {
    let mut request = c
        .eks
        .create_nodegroup()
        .cluster_name(cluster)
        .nodegroup_name(name)
        .node_role(node_role_arn)
        .subnets(subnet)
        .scaling_config(
            NodegroupScalingConfig::builder()
                .min_size(min)
                .max_size(max)
                .desired_size(desired)
                .build(),
        );
    if let Some(template) = launch_template {
        request = request.launch_template(
            LaunchTemplateSpecification::builder()
                .id(template)
                .version("1")
                .build(),
        );
    }
    let created = request.send().await.op("eks:CreateNodegroup")?;
    created
        .nodegroup()
        .and_then(|n| n.resources())
        .and_then(|r| r.auto_scaling_groups().first())
        .and_then(|g| g.name())
        .map(str::to_string)
        .ok_or(LabError::Missing("the nodegroup's Auto Scaling group"))
}

/// Lab 000: nodegroup `new_nodegroup_2` in a new subnet (10.42.192.0/19) whose route table has
/// only the local route; its instance runs but cannot reach the NAT gateway.
#[derive(Debug, Clone)]
pub struct Lab000 {
    pub network: Network,
    pub nodegroup: String,
    pub group: String,
    pub subnet: String,
    pub route_table: String,
}

pub async fn lab_000(c: &LabClients, network: &Network) -> Result<Lab000, LabError> {
    let subnet = subnet(c, &network.vpc, "10.42.192.0/19").await?;
    let route_table = route_table(c, &network.vpc, &subnet).await?;
    let group = nodegroup(c, network, "new_nodegroup_2", &subnet, (0, 1, 1), None).await?;
    Ok(Lab000 {
        network: network.clone(),
        nodegroup: "new_nodegroup_2".into(),
        group,
        subnet,
        route_table,
    })
}

/// Lab 002: nodegroup `new_nodegroup_1` whose launch template encrypts its root volume with a
/// customer managed key whose policy only lets the account root in.
#[derive(Debug, Clone)]
pub struct Lab002 {
    pub network: Network,
    pub nodegroup: String,
    pub group: String,
    pub key_id: String,
    pub key_arn: String,
    pub launch_template: String,
    /// The key policy as the lab sets it.
    pub policy: String,
}

pub async fn lab_002(c: &LabClients, network: &Network) -> Result<Lab002, LabError> {
    let key = c
        .kms
        .create_key()
        .description("new_kms_key for nodegroup volume encryption")
        .send()
        .await
        .op("kms:CreateKey")?;
    let metadata = key
        .key_metadata()
        .ok_or(LabError::Missing("key metadata"))?;
    let key_id = metadata.key_id().to_string();
    let key_arn = metadata
        .arn()
        .ok_or(LabError::Missing("a key ARN"))?
        .to_string();
    let policy = root_only_policy(&network.account);
    c.kms
        .put_key_policy()
        .key_id(&key_id)
        .policy_name("default")
        .policy(&policy)
        .send()
        .await
        .op("kms:PutKeyPolicy")?;
    c.kms
        .create_alias()
        .alias_name("alias/new_kms_key_alias_lab02")
        .target_key_id(&key_id)
        .send()
        .await
        .op("kms:CreateAlias")?;
    let template = c
        .ec2
        .create_launch_template()
        .launch_template_name("new_nodegroup_1-encrypted")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .block_device_mappings(
                    LaunchTemplateBlockDeviceMappingRequest::builder()
                        .device_name("/dev/xvda")
                        .ebs(
                            LaunchTemplateEbsBlockDeviceRequest::builder()
                                .encrypted(true)
                                .kms_key_id(&key_arn)
                                .volume_size(20)
                                .volume_type(VolumeType::Gp2)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .op("ec2:CreateLaunchTemplate")?
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .map(str::to_string)
        .ok_or(LabError::Missing("a launch template id"))?;
    let group = nodegroup(
        c,
        network,
        "new_nodegroup_1",
        &network.private_subnet,
        (0, 1, 1),
        Some(&template),
    )
    .await?;
    Ok(Lab002 {
        network: network.clone(),
        nodegroup: "new_nodegroup_1".into(),
        group,
        key_id,
        key_arn,
        launch_template: template,
        policy,
    })
}

pub fn root_only_policy(account: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:aws:iam::{account}:root") },
            "Action": "kms:*",
            "Resource": "*"
        }]
    })
    .to_string()
}

/// Publishes the Auto Scaling launch event AWS would send for `group`'s most recent activity.
pub async fn publish_launch_event(
    c: &LabClients,
    network: &Network,
    group: &str,
    subnet: &str,
) -> Result<String, LabError> {
    let (detail_type, detail) = launch_event(c, group, subnet).await?;
    put_event(c, &network.account, detail_type, &detail, group).await
}

/// The detail type and detail of the launch event AWS would send for `group`'s most recent
/// activity (for an envelope made by hand, say one forwarded from another account).
pub async fn launch_event(
    c: &LabClients,
    group: &str,
    subnet: &str,
) -> Result<(&'static str, serde_json::Value), LabError> {
    let activities = c
        .autoscaling
        .describe_scaling_activities()
        .auto_scaling_group_name(group)
        .max_records(1)
        .send()
        .await
        .op("autoscaling:DescribeScalingActivities")?;
    let activity = activities
        .activities()
        .first()
        .ok_or(LabError::Missing("a scaling activity"))?;
    let description = activity.description().unwrap_or_default();
    let instance = description
        .split_whitespace()
        .find(|word| word.starts_with("i-"))
        .map(|word| word.trim_end_matches(['.', ',']))
        .unwrap_or("");
    let status = activity
        .status_code()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    let failed = matches!(status.as_str(), "Failed" | "Cancelled");
    let detail = json!({
        "StatusCode": if failed { status.as_str() } else { "InProgress" },
        "AutoScalingGroupName": group,
        "ActivityId": activity.activity_id().unwrap_or_default(),
        "Details": { "Availability Zone": ZONE, "Subnet ID": subnet },
        "RequestId": activity.activity_id().unwrap_or_default(),
        "StatusMessage": activity.status_message().unwrap_or_default(),
        "Description": description,
        "EC2InstanceId": instance,
        "Cause": activity.cause().unwrap_or_default(),
    });
    let detail_type = if failed {
        crate::intake::LAUNCH_UNSUCCESSFUL
    } else {
        crate::intake::LAUNCH_SUCCESSFUL
    };
    Ok((detail_type, detail))
}

/// Publishes one `aws.autoscaling` event through EventBridge; returns its event id.
pub async fn put_event(
    c: &LabClients,
    account: &str,
    detail_type: &str,
    detail: &serde_json::Value,
    group: &str,
) -> Result<String, LabError> {
    let output = c
        .events
        .put_events()
        .entries(
            PutEventsRequestEntry::builder()
                .source("aws.autoscaling")
                .detail_type(detail_type)
                .detail(detail.to_string())
                .resources(format!("arn:aws:autoscaling:{REGION}:{account}:autoScalingGroup:0:autoScalingGroupName/{group}"))
                .build(),
        )
        .send()
        .await
        .op("events:PutEvents")?;
    output
        .entries()
        .first()
        .and_then(|e| e.event_id())
        .map(str::to_string)
        .ok_or(LabError::Missing("an event id"))
}
