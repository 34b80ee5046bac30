//! Small builders for evidence in unit tests, shaped like the two seed labs:
//! `Evidence::lab_002()` (KMS key policy without the Auto Scaling role) and
//! `Evidence::lab_000()` (subnet without a route to the NAT gateway).

use std::collections::BTreeSet;

use time::macros::datetime;

use super::*;
use crate::intake::{LaunchOutcome, Trigger};

pub const ACCOUNT: &str = "123456789012";
pub const KEY_ARN: &str =
    "arn:aws:kms:us-west-2:123456789012:key/1234abcd-1234-abcd-1234-1234abcd1234";
pub const ROLE: &str = "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling";
pub const ROOT_ONLY_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}"#;
pub const KMS_MESSAGE: &str = "Instance became unhealthy while waiting for instance to be in InService state. Termination Reason: Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state";

fn trigger(outcome: LaunchOutcome, asg: &str) -> Trigger {
    Trigger {
        event_id: "event-1".into(),
        outcome,
        account: ACCOUNT.into(),
        region: "us-west-2".into(),
        time: datetime!(2024-10-04 18:06:36 UTC),
        asg_name: asg.into(),
        instance_id: None,
        subnet_id: None,
        availability_zone: None,
        status_code: None,
        status_message: None,
        description: None,
        cause: None,
        activity_id: None,
    }
}

fn nodegroup(name: &str, subnets: &[&str]) -> NodegroupFacts {
    NodegroupFacts {
        cluster: "eks-workshop".into(),
        name: name.into(),
        status: "ACTIVE".into(),
        scaling: Scaling {
            min: 0,
            max: 1,
            desired: 1,
        },
        subnets: subnets.iter().map(|s| s.to_string()).collect(),
        health_issues: vec![],
        node_role: Some("arn:aws:iam::123456789012:role/eks-node".into()),
        launch_template: None,
    }
}

fn group(name: &str) -> GroupFacts {
    GroupFacts {
        name: name.into(),
        service_linked_role_arn: Some(ROLE.into()),
        instances: vec![],
        launch_template: None,
    }
}

impl Evidence {
    /// Lab 002: the launch template encrypts with an Enabled customer managed key whose policy
    /// only lets the account root in; the nodegroup is DEGRADED.
    pub fn lab_002() -> Evidence {
        let asg = "eks-new_nodegroup_1-abcd";
        let mut trigger = trigger(LaunchOutcome::Unsuccessful, asg);
        trigger.status_code = Some("Cancelled".into());
        trigger.status_message = Some(KMS_MESSAGE.into());
        trigger.subnet_id = Some("subnet-private-a".into());
        let mut nodegroup = nodegroup("new_nodegroup_1", &["subnet-private-a"]);
        nodegroup.status = "DEGRADED".into();
        nodegroup.health_issues = vec![HealthIssue {
            code: "AsgInstanceLaunchFailures".into(),
            message: KMS_MESSAGE.into(),
            resource_ids: vec![asg.into()],
        }];
        Evidence {
            trigger,
            nodegroup,
            group: group(asg),
            activities: vec![ActivityFacts {
                status_code: "Cancelled".into(),
                status_message: Some(KMS_MESSAGE.into()),
                description: None,
            }],
            launch_template: Some(LaunchTemplateFacts {
                id: "lt-1234abcd1234abcd1".into(),
                version: "1".into(),
                volumes: vec![VolumeFacts {
                    device_name: "/dev/xvda".into(),
                    encrypted: true,
                    kms_key_id: Some(KEY_ARN.into()),
                }],
            }),
            keys: vec![KeyFacts {
                reference: KEY_ARN.into(),
                lookup: KeyLookup::Found(KeyMetadata {
                    arn: KEY_ARN.into(),
                    key_id: "1234abcd-1234-abcd-1234-1234abcd1234".into(),
                    account: ACCOUNT.into(),
                    state: "Enabled".into(),
                    manager: "CUSTOMER".into(),
                    policy: Some(ROOT_ONLY_POLICY.into()),
                    policy_unreadable: None,
                }),
            }],
            network: None,
            calls: CallLog::default(),
        }
    }

    /// Lab 000: an instance launched into subnet-new (10.42.192.0/19), whose route table has only
    /// the local route; the cluster's private subnet routes through nat-a in the same zone.
    pub fn lab_000() -> Evidence {
        let asg = "eks-new_nodegroup_2-abcd";
        let mut trigger = trigger(LaunchOutcome::Successful, asg);
        trigger.instance_id = Some("i-new".into());
        trigger.subnet_id = Some("subnet-new".into());
        trigger.description = Some("Launching a new EC2 instance: i-new".into());
        let mut group = group(asg);
        group.instances = vec![GroupInstance {
            id: "i-new".into(),
            lifecycle_state: "InService".into(),
            health_status: "Healthy".into(),
            subnet_id: Some("subnet-new".into()),
        }];
        let subnet = |id: &str, az: &str, cidr: &str| SubnetFacts {
            id: id.into(),
            availability_zone: az.into(),
            cidr: cidr.into(),
            available_ips: 8186,
            map_public_ip_on_launch: false,
        };
        let route = |destination: &str, target: &str| RouteFacts {
            destination: destination.into(),
            target: target.into(),
            state: "active".into(),
        };
        Evidence {
            trigger,
            nodegroup: nodegroup("new_nodegroup_2", &["subnet-new"]),
            group,
            activities: vec![],
            launch_template: None,
            keys: vec![],
            network: Some(NetworkFacts {
                subnet_id: "subnet-new".into(),
                vpc_id: "vpc-1".into(),
                subnets: vec![
                    subnet("subnet-public-a", "us-west-2a", "10.42.0.0/19"),
                    subnet("subnet-private-a", "us-west-2a", "10.42.96.0/19"),
                    subnet("subnet-new", "us-west-2a", "10.42.192.0/19"),
                ],
                route_tables: vec![
                    RouteTableFacts {
                        id: "rtb-main".into(),
                        main: true,
                        subnet_ids: vec![],
                        routes: vec![route("10.42.0.0/16", "local")],
                    },
                    RouteTableFacts {
                        id: "rtb-public".into(),
                        main: false,
                        subnet_ids: vec!["subnet-public-a".into()],
                        routes: vec![route("10.42.0.0/16", "local"), route("0.0.0.0/0", "igw-1")],
                    },
                    RouteTableFacts {
                        id: "rtb-private".into(),
                        main: false,
                        subnet_ids: vec!["subnet-private-a".into()],
                        routes: vec![route("10.42.0.0/16", "local"), route("0.0.0.0/0", "nat-a")],
                    },
                    RouteTableFacts {
                        id: "rtb-new".into(),
                        main: false,
                        subnet_ids: vec!["subnet-new".into()],
                        routes: vec![route("10.42.0.0/16", "local")],
                    },
                ],
                nat_gateways: vec![NatGatewayFacts {
                    id: "nat-a".into(),
                    subnet_id: "subnet-public-a".into(),
                    state: "available".into(),
                    connectivity: "public".into(),
                }],
                endpoints: vec![],
                cluster_node_subnets: BTreeSet::from([
                    "subnet-private-a".to_string(),
                    "subnet-public-a".to_string(),
                ]),
            }),
            calls: CallLog::default(),
        }
    }

    pub fn key_state(mut self, state: &str) -> Self {
        if let Some(KeyFacts {
            lookup: KeyLookup::Found(metadata),
            ..
        }) = self.keys.first_mut()
        {
            metadata.state = state.into();
        }
        self
    }

    pub fn key_policy(mut self, policy: &str) -> Self {
        if let Some(KeyFacts {
            lookup: KeyLookup::Found(metadata),
            ..
        }) = self.keys.first_mut()
        {
            metadata.policy = Some(policy.into());
        }
        self
    }

    pub fn key_missing(mut self) -> Self {
        if let Some(key) = self.keys.first_mut() {
            key.lookup = KeyLookup::NotFound {
                reason: "NotFoundException: Key does not exist".into(),
            };
        }
        self
    }

    pub fn key_owned_by(mut self, account: &str) -> Self {
        if let Some(KeyFacts {
            lookup: KeyLookup::Found(metadata),
            reference,
        }) = self.keys.first_mut()
        {
            metadata.account = account.into();
            metadata.arn = metadata.arn.replace(ACCOUNT, account);
            *reference = metadata.arn.clone();
            metadata.policy = None;
            metadata.policy_unreadable =
                Some("AccessDeniedException: the key belongs to another account".into());
        }
        self
    }

    pub fn status_message(mut self, message: &str) -> Self {
        self.trigger.status_message = Some(message.into());
        self.activities.clear();
        self.nodegroup.health_issues.clear();
        self
    }

    pub fn network(mut self, change: impl FnOnce(&mut NetworkFacts)) -> Self {
        if let Some(network) = self.network.as_mut() {
            change(network);
        }
        self
    }

    pub fn scaling(mut self, min: i32, max: i32, desired: i32) -> Self {
        self.nodegroup.scaling = Scaling { min, max, desired };
        self
    }

    pub fn instance(mut self, id: &str, subnet: &str, lifecycle: &str) -> Self {
        self.group.instances.push(GroupInstance {
            id: id.into(),
            lifecycle_state: lifecycle.into(),
            health_status: "Healthy".into(),
            subnet_id: Some(subnet.into()),
        });
        self
    }

    pub fn nodegroup_status(mut self, status: &str) -> Self {
        self.nodegroup.status = status.into();
        self
    }
}

/// A default route, for `network(...)` changes.
pub fn default_route(target: &str, state: &str) -> RouteFacts {
    RouteFacts {
        destination: "0.0.0.0/0".into(),
        target: target.into(),
        state: state.into(),
    }
}

/// Every private-join endpoint, available, for region us-west-2.
pub fn private_join_endpoints() -> Vec<EndpointFacts> {
    crate::diagnose::PRIVATE_JOIN_SERVICES
        .iter()
        .enumerate()
        .map(|(n, service)| EndpointFacts {
            id: format!("vpce-{n}"),
            service_name: format!("com.amazonaws.us-west-2.{service}"),
            kind: if *service == "s3" {
                "Gateway"
            } else {
                "Interface"
            }
            .into(),
            state: "available".into(),
        })
        .collect()
}
