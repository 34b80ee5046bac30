//! The soak's world: a cluster with a managed nodegroup, a self-managed group, and the
//! messages of every kind the bench sends.

use super::*;

/// The world the events are about.
pub(super) struct World {
    pub(super) emulator: Emulator,
    pub(super) clients: LabClients,
    pub(super) network: Network,
    pub(super) queue: lab::EventQueue,
    /// A queue like `queue` for the bare loop alone: a long poll the loop leaves behind when it
    /// stops would otherwise take (and hide for 120 s) the daemon's first message.
    pub(super) baseline_queue: lab::EventQueue,
    /// (Auto Scaling group, subnet, instance) of each healthy nodegroup.
    pub(super) healthy: Vec<(String, String, String)>,
    /// The instance lab 000 launched.
    lab_000_instance: String,
    pub(super) not_eks_group: String,
    lab_000: lab::Lab000,
    pub(super) lab_002: lab::Lab002,
}

pub(super) async fn build_world() -> World {
    let emulator = Emulator::start(0.5)
        .await
        .expect("the emulator starts (pip install \"moto[server]\")");
    let clients = LabClients::new(&emulator.sdk_config());
    let queue = lab::event_queue(&clients, "nodemedic-soak", 5)
        .await
        .expect("queue");
    let baseline_queue = lab::event_queue(&clients, "nodemedic-soak-baseline", 5)
        .await
        .expect("baseline queue");
    let network = lab::workshop(&clients).await.expect("workshop");
    let default_group = clients
        .eks
        .describe_nodegroup()
        .cluster_name(lab::CLUSTER)
        .nodegroup_name("default")
        .send()
        .await
        .op("eks:DescribeNodegroup")
        .expect("the workshop's nodegroup")
        .nodegroup()
        .and_then(|n| n.resources())
        .and_then(|r| r.auto_scaling_groups().first())
        .and_then(|g| g.name())
        .map(str::to_string)
        .expect("its Auto Scaling group");
    let mut groups = vec![(default_group, network.private_subnet.clone())];
    for (name, subnet) in [
        ("workers-b", &network.private_subnet),
        ("workers-public", &network.public_subnet),
    ] {
        let group = lab::nodegroup(&clients, &network, name, subnet, (1, 3, 1), None)
            .await
            .expect("healthy nodegroup");
        groups.push((group, subnet.clone()));
    }
    let mut healthy = Vec::new();
    for (group, subnet) in groups {
        let instance = instance_of(&clients, &group).await;
        healthy.push((group, subnet, instance));
    }
    let not_eks_group = self_managed_group(&clients, &network).await;
    let lab_000 = lab::lab_000(&clients, &network).await.expect("lab 000");
    let lab_000_instance = instance_of(&clients, &lab_000.group).await;
    let lab_002 = lab::lab_002(&clients, &network).await.expect("lab 002");
    World {
        emulator,
        clients,
        network,
        queue,
        baseline_queue,
        healthy,
        lab_000_instance,
        not_eks_group,
        lab_000,
        lab_002,
    }
}

/// The instance the emulator launched for `group`: launch events name real instances.
pub(super) async fn instance_of(c: &LabClients, group: &str) -> String {
    c.autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .op("autoscaling:DescribeAutoScalingGroups")
        .expect("the group")
        .auto_scaling_groups()
        .first()
        .and_then(|g| g.instances().first())
        .and_then(|i| i.instance_id())
        .map(str::to_string)
        .expect("the group's instance")
}

/// An Auto Scaling group of self-managed instances: no `eks:*` tags.
pub(super) async fn self_managed_group(c: &LabClients, network: &Network) -> String {
    let template = c
        .ec2
        .create_launch_template()
        .launch_template_name("self-managed-workers")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Medium)
                .build(),
        )
        .send()
        .await
        .op("ec2:CreateLaunchTemplate")
        .expect("launch template")
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .map(str::to_string)
        .expect("launch template id");
    let name = "self-managed-workers";
    c.autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(template)
                .version("$Latest")
                .build(),
        )
        .min_size(0)
        .max_size(1)
        .desired_capacity(0)
        .vpc_zone_identifier(&network.private_subnet)
        .send()
        .await
        .op("autoscaling:CreateAutoScalingGroup")
        .expect("self-managed group");
    name.to_string()
}

/// Lab 002's launch failure: the Auto Scaling role may not use the volumes' KMS key.
pub(super) fn kms_failure(world: &World, event_id: &str, at: time::OffsetDateTime) -> String {
    let mut body: serde_json::Value = serde_json::from_str(&envelope(
        world,
        event_id,
        nodemedic::intake::LAUNCH_UNSUCCESSFUL,
        &world.lab_002.group,
        json!({
            "StatusCode": "Failed",
            "ActivityId": uuid::Uuid::new_v4().to_string(),
            "Details": { "Availability Zone": lab::ZONE, "Subnet ID": world.network.private_subnet },
            "StatusMessage": "Instance became unhealthy while waiting for instance to be in InService state. Termination Reason: Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state",
            "Description": "Launching a new EC2 instance. Status Reason: Client.InvalidKMSKey.InvalidState",
            "EC2InstanceId": "",
            "Cause": "At 2026-01-01T00:00:00Z an instance was started",
        }),
    ))
    .expect("our own envelope");
    body["time"] = json!(
        at.format(&time::format_description::well_known::Rfc3339)
            .expect("a time formats")
    );
    body.to_string()
}

/// The body EventBridge delivers to SQS for an Auto Scaling event.
pub(super) fn envelope(
    world: &World,
    event_id: &str,
    detail_type: &str,
    group: &str,
    detail: serde_json::Value,
) -> String {
    let mut detail = detail;
    detail["AutoScalingGroupName"] = json!(group);
    json!({
        "version": "0",
        "id": event_id,
        "detail-type": detail_type,
        "source": "aws.autoscaling",
        "account": world.network.account,
        "time": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("now formats"),
        "region": lab::REGION,
        "resources": [format!("arn:aws:autoscaling:{}:{}:autoScalingGroup:0:autoScalingGroupName/{group}", lab::REGION, world.network.account)],
        "detail": detail,
    })
    .to_string()
}

pub(super) fn launched(instance: &str, subnet: &str) -> serde_json::Value {
    json!({
        "StatusCode": "InProgress",
        "ActivityId": uuid::Uuid::new_v4().to_string(),
        "Details": { "Availability Zone": lab::ZONE, "Subnet ID": subnet },
        "StatusMessage": "",
        "Description": format!("Launching a new EC2 instance: {instance}"),
        "EC2InstanceId": instance,
        "Cause": "At 2026-01-01T00:00:00Z an instance was started in response to a difference between desired and actual capacity",
    })
}

/// One message to send, and what it is.
pub(super) struct Message {
    pub(super) kind: Kind,
    pub(super) event_id: String,
    pub(super) body: String,
}

pub(super) fn messages(world: &World, count: usize) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(count);
    let mut last_healthy: Option<usize> = None;
    for index in 0..count {
        let kind = Kind::at(index);
        let event_id = uuid::Uuid::new_v4().to_string();
        let body = match kind {
            Kind::Healthy => {
                let (group, subnet, instance) = &world.healthy[index % world.healthy.len()];
                envelope(
                    world,
                    &event_id,
                    nodemedic::intake::LAUNCH_SUCCESSFUL,
                    group,
                    launched(instance, subnet),
                )
            }
            Kind::NotEks => envelope(
                world,
                &event_id,
                nodemedic::intake::LAUNCH_SUCCESSFUL,
                &world.not_eks_group,
                launched(
                    &format!("i-{:017x}", index + 1),
                    &world.network.private_subnet,
                ),
            ),
            Kind::OtherType => envelope(
                world,
                &event_id,
                "EC2 Instance Terminate Successful",
                &world.healthy[0].0,
                launched(&world.healthy[0].2, &world.healthy[0].1),
            ),
            Kind::Duplicate => {
                let original = &out[last_healthy.expect("a healthy event comes first")];
                out.push(Message {
                    kind,
                    event_id: original.event_id.clone(),
                    body: original.body.clone(),
                });
                continue;
            }
            Kind::FailingKms => kms_failure(world, &event_id, time::OffsetDateTime::now_utc()),
            Kind::FailingRoute => envelope(
                world,
                &event_id,
                nodemedic::intake::LAUNCH_SUCCESSFUL,
                &world.lab_000.group,
                launched(&world.lab_000_instance, &world.lab_000.subnet),
            ),
        };
        if kind == Kind::Healthy {
            last_healthy = Some(out.len());
        }
        out.push(Message {
            kind,
            event_id,
            body,
        });
    }
    out
}
