//! Small builders for evidence in unit tests. `Evidence::healthy()` is a nodegroup with every
//! part of the checklist collected and nothing wrong; the seed labs and each rule's test break
//! one thing: `Evidence::lab_002()` (KMS key policy without the Auto Scaling role),
//! `Evidence::lab_000()` (subnet without a route to the NAT gateway).

use std::collections::BTreeSet;

use time::macros::datetime;

use super::*;
use crate::core::key_policy;
use crate::core::trigger::{LaunchEvent, LaunchOutcome, NodegroupApiCall, Trigger, TriggerKind};

pub const ACCOUNT: &str = "123456789012";
pub const KEY_ARN: &str =
    "arn:aws:kms:us-west-2:123456789012:key/1234abcd-1234-abcd-1234-1234abcd1234";
pub const ROLE: &str = "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling";
pub const NODE_ROLE: &str = "arn:aws:iam::123456789012:role/eks-node";
pub const ROOT_ONLY_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}"#;
pub const KMS_MESSAGE: &str = "Instance became unhealthy while waiting for instance to be in InService state. Termination Reason: Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state";
pub const CLUSTER_SG: &str = "sg-cluster";
pub const GROUP: &str = "eks-ng-abcd";

/// The cluster's role.
pub const CLUSTER_ROLE: &str = "arn:aws:iam::123456789012:role/eks-cluster";

/// The trust policy a node role needs: EC2 may assume it.
pub const EC2_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// `ROOT_ONLY_POLICY` with the guide's two statements for `ROLE`: a key Auto Scaling may use.
pub fn granted_policy() -> String {
    match key_policy::patch(ROOT_ONLY_POLICY, key_policy::Caller::for_key(ROLE, KEY_ARN)) {
        Ok(key_policy::KeyPolicyPatch::Patched { policy, .. }) => policy,
        other => panic!("the fixture policy cannot be patched: {other:?}"),
    }
}

/// Whether `policy` alone lets `ROLE` use `KEY_ARN`.
pub fn grants_role(policy: &str) -> bool {
    key_policy::assess(policy, key_policy::Caller::for_key(ROLE, KEY_ARN), &[])
        == Ok(key_policy::Access::Granted)
}

pub fn trigger(kind: TriggerKind) -> Trigger {
    Trigger {
        event_id: "event-1".into(),
        account: ACCOUNT.into(),
        region: "us-west-2".into(),
        time: datetime!(2024-10-04 18:06:36 UTC),
        kind,
    }
}

pub fn launch(outcome: LaunchOutcome) -> LaunchEvent {
    LaunchEvent {
        outcome,
        asg_name: GROUP.into(),
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

fn subnet(id: &str, az: &str, cidr: &str, public: bool) -> SubnetFacts {
    SubnetFacts {
        id: id.into(),
        vpc_id: "vpc-1".into(),
        availability_zone: az.into(),
        cidr: cidr.into(),
        available_ips: 8186,
        map_public_ip_on_launch: public,
        tags: Tags::new(),
    }
}

pub fn route(destination: &str, target: &str) -> RouteFacts {
    RouteFacts {
        destination: destination.into(),
        target: target.into(),
        state: "active".into(),
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

pub fn acl_entry(
    rule_number: i32,
    egress: bool,
    protocol: &str,
    action: &str,
    cidr: &str,
    ports: Option<(i32, i32)>,
) -> AclEntry {
    AclEntry {
        rule_number,
        egress,
        protocol: protocol.into(),
        action: action.into(),
        cidr: cidr.into(),
        port_from: ports.map(|p| p.0),
        port_to: ports.map(|p| p.1),
    }
}

pub fn sg_rule(
    protocol: &str,
    ports: Option<(i32, i32)>,
    cidrs: &[&str],
    groups: &[&str],
) -> SecurityGroupRule {
    SecurityGroupRule {
        protocol: protocol.into(),
        from_port: ports.map(|p| p.0),
        to_port: ports.map(|p| p.1),
        cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
        source_groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// The VPC's default network ACL: everything allowed both ways.
pub fn allow_all_acl() -> NetworkAclFacts {
    NetworkAclFacts {
        id: "acl-default".into(),
        default: true,
        subnet_ids: vec![],
        entries: vec![
            acl_entry(100, false, "-1", "allow", "0.0.0.0/0", None),
            acl_entry(32767, false, "-1", "deny", "0.0.0.0/0", None),
            acl_entry(100, true, "-1", "allow", "0.0.0.0/0", None),
            acl_entry(32767, true, "-1", "deny", "0.0.0.0/0", None),
        ],
    }
}

/// Every private-join endpoint, available, for region us-west-2.
pub fn private_join_endpoints() -> Vec<EndpointFacts> {
    crate::core::checks::PRIVATE_JOIN_SERVICES
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
            security_group_ids: if *service == "s3" {
                vec![]
            } else {
                vec!["sg-endpoints".into()]
            },
            route_table_ids: if *service == "s3" {
                vec!["rtb-node".into(), "rtb-new".into()]
            } else {
                vec![]
            },
            private_dns_enabled: *service != "s3",
            policy: None,
            tags: Tags::new(),
        })
        .collect()
}

impl Evidence {
    /// A nodegroup `ng` in private subnet `subnet-node` (10.42.96.0/19, us-west-2a) routed to
    /// NAT gateway `nat-a` in the public subnet, with every check passing.
    pub fn healthy() -> Evidence {
        Evidence {
            trigger: trigger(TriggerKind::Preflight(NodegroupApiCall {
                cluster: "eks-workshop".into(),
                nodegroup: "ng".into(),
                event_name: "CreateNodegroup".into(),
            })),
            nodegroup: NodegroupFacts {
                cluster: "eks-workshop".into(),
                name: "ng".into(),
                status: "ACTIVE".into(),
                scaling: Scaling {
                    min: 0,
                    max: 1,
                    desired: 1,
                },
                subnets: vec!["subnet-node".into()],
                health_issues: vec![],
                node_role: Some(NODE_ROLE.into()),
                launch_template: None,
                ami_type: Some("AL2023_x86_64_STANDARD".into()),
                version: Some("1.33".into()),
                release_version: Some("1.33.5-20251016".into()),
                capacity_type: Some("ON_DEMAND".into()),
                disk_size: Some(20),
                instance_types: vec!["t3.medium".into()],
                group_names: vec![GROUP.into()],
                tags: Tags::new(),
                taints: vec![],
            },
            group: Some(GroupFacts {
                name: GROUP.into(),
                service_linked_role_arn: Some(ROLE.into()),
                instances: vec![],
                launch_template: None,
            }),
            activities: vec![],
            cluster: Some(ClusterFacts {
                name: "eks-workshop".into(),
                status: "ACTIVE".into(),
                version: Some("1.33".into()),
                role_arn: Some(CLUSTER_ROLE.into()),
                vpc_id: Some("vpc-1".into()),
                subnet_ids: vec!["subnet-node".into(), "subnet-public-a".into()],
                cluster_security_group_id: Some(CLUSTER_SG.into()),
                security_group_ids: vec![],
                endpoint_public_access: true,
                endpoint_private_access: false,
                public_access_cidrs: vec!["0.0.0.0/0".into()],
                authentication_mode: Some("API_AND_CONFIG_MAP".into()),
                tags: Tags::new(),
                updates_in_progress: Some(vec![]),
                endpoint: Some("https://0123456789ABCDEF.gr7.us-west-2.eks.amazonaws.com".into()),
                certificate_authority: None,
            }),
            launch_template: None,
            image: None,
            keys: vec![],
            network: Some(NetworkFacts {
                subnet_ids: vec!["subnet-node".into()],
                vpc: VpcFacts {
                    id: "vpc-1".into(),
                    cidr_blocks: vec!["10.42.0.0/16".into()],
                    dns_support: Some(true),
                    dns_hostnames: Some(true),
                    dhcp_options_id: Some("dopt-1".into()),
                    domain_name_servers: Some(vec!["AmazonProvidedDNS".into()]),
                    tags: Tags::new(),
                },
                subnets: vec![
                    subnet("subnet-public-a", "us-west-2a", "10.42.0.0/19", true),
                    subnet("subnet-node", "us-west-2a", "10.42.96.0/19", false),
                ],
                route_tables: vec![
                    RouteTableFacts {
                        id: "rtb-main".into(),
                        main: true,
                        subnet_ids: vec![],
                        routes: vec![route("10.42.0.0/16", "local")],
                        tags: Tags::new(),
                    },
                    RouteTableFacts {
                        id: "rtb-public".into(),
                        main: false,
                        subnet_ids: vec!["subnet-public-a".into()],
                        routes: vec![route("10.42.0.0/16", "local"), route("0.0.0.0/0", "igw-1")],
                        tags: Tags::new(),
                    },
                    RouteTableFacts {
                        id: "rtb-node".into(),
                        main: false,
                        subnet_ids: vec!["subnet-node".into()],
                        routes: vec![route("10.42.0.0/16", "local"), route("0.0.0.0/0", "nat-a")],
                        tags: Tags::new(),
                    },
                ],
                nat_gateways: vec![NatGatewayFacts {
                    id: "nat-a".into(),
                    subnet_id: "subnet-public-a".into(),
                    state: "available".into(),
                    connectivity: "public".into(),
                    public_ips: vec!["52.10.10.10".into()],
                }],
                endpoints: vec![],
                network_acls: vec![allow_all_acl()],
                security_groups: vec![SecurityGroupFacts {
                    id: CLUSTER_SG.into(),
                    name: "eks-cluster-sg-eks-workshop".into(),
                    ingress: vec![sg_rule("-1", None, &[], &[CLUSTER_SG])],
                    egress: vec![sg_rule("-1", None, &["0.0.0.0/0"], &[])],
                }],
                node_security_group_ids: vec![CLUSTER_SG.into()],
                cluster_node_subnets: BTreeSet::from([
                    "subnet-node".to_string(),
                    "subnet-public-a".to_string(),
                ]),
            }),
            identity: Some(IdentityFacts {
                node_role_arn: NODE_ROLE.into(),
                role: RoleLookup::Found {
                    name: "eks-node".into(),
                    attached_policy_arns: vec![
                        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy".into(),
                        "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy".into(),
                        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly".into(),
                    ],
                    tags: Tags::new(),
                    trust_policy: Some(EC2_TRUST.into()),
                },
                access_entry: AccessEntryLookup::NotApplicable,
                instance_profile: Some(ProfileLookup::Found {
                    template: "lt-eks version 1".into(),
                    name: "eks-ng-profile".into(),
                    role_arns: vec![NODE_ROLE.into()],
                    tags: Tags::new(),
                }),
            }),
            cluster_role: None,
            instance: None,
            kubernetes: None,
            boot_logs: vec![],
            calls: CallLog::default(),
            reused: None,
        }
    }

    /// Lab 002: the launch template encrypts with an Enabled customer managed key whose policy
    /// only lets the account root in; the nodegroup is DEGRADED and launches fail.
    pub fn lab_002() -> Evidence {
        let mut evidence = Evidence::healthy();
        let mut event = launch(LaunchOutcome::Unsuccessful);
        event.status_code = Some("Cancelled".into());
        event.status_message = Some(KMS_MESSAGE.into());
        event.subnet_id = Some("subnet-node".into());
        evidence.trigger = trigger(TriggerKind::Launch(event));
        evidence.nodegroup.name = "new_nodegroup_1".into();
        evidence.nodegroup.status = "DEGRADED".into();
        evidence.nodegroup.health_issues = vec![HealthIssue {
            code: "AsgInstanceLaunchFailures".into(),
            message: KMS_MESSAGE.into(),
            resource_ids: vec![GROUP.into()],
        }];
        evidence.activities = vec![ActivityFacts {
            status_code: "Cancelled".into(),
            status_message: Some(KMS_MESSAGE.into()),
            description: None,
        }];
        evidence.launch_template = Some(TemplateLookup::Found(LaunchTemplateFacts {
            id: "lt-1234abcd1234abcd1".into(),
            version: "1".into(),
            volumes: vec![VolumeFacts {
                device_name: "/dev/xvda".into(),
                encrypted: true,
                kms_key_id: Some(KEY_ARN.into()),
                size_gib: None,
            }],
            image_id: None,
            user_data: None,
            user_data_bytes: None,
            forbidden_settings: Vec::new(),
            metadata_options: None,
            security_group_ids: vec![],
            missing_security_group_ids: vec![],
            key_name: None,
        }));
        evidence.keys = vec![KeyFacts {
            reference: KEY_ARN.into(),
            lookup: KeyLookup::Found(KeyMetadata {
                arn: KEY_ARN.into(),
                key_id: "1234abcd-1234-abcd-1234-1234abcd1234".into(),
                account: ACCOUNT.into(),
                state: "Enabled".into(),
                manager: "CUSTOMER".into(),
                policy: Some(ROOT_ONLY_POLICY.into()),
                policy_unreadable: None,
                tags: Tags::new(),
                tags_unreadable: None,
                grants: Vec::new(),
                grants_unreadable: None,
            }),
        }];
        // A failed launch is investigated through its launch template, not the network.
        evidence.network = None;
        evidence.identity = None;
        evidence
    }

    /// Lab 000: an instance launched into subnet-new (10.42.192.0/19), whose route table has only
    /// the local route; the cluster's private subnet routes through nat-a in the same zone.
    pub fn lab_000() -> Evidence {
        let mut evidence = Evidence::healthy();
        let mut event = launch(LaunchOutcome::Successful);
        event.instance_id = Some("i-new".into());
        event.subnet_id = Some("subnet-new".into());
        event.description = Some("Launching a new EC2 instance: i-new".into());
        evidence.trigger = trigger(TriggerKind::Launch(event));
        evidence.nodegroup.name = "new_nodegroup_2".into();
        evidence.nodegroup.subnets = vec!["subnet-new".into()];
        if let Some(group) = evidence.group.as_mut() {
            group.instances = vec![GroupInstance {
                id: "i-new".into(),
                lifecycle_state: "InService".into(),
                health_status: "Healthy".into(),
                subnet_id: Some("subnet-new".into()),
            }];
        }
        evidence.identity = None;
        evidence.network(|n| {
            n.subnet_ids = vec!["subnet-new".into()];
            n.subnets
                .push(subnet("subnet-new", "us-west-2a", "10.42.192.0/19", false));
            n.route_tables.push(RouteTableFacts {
                id: "rtb-new".into(),
                main: false,
                subnet_ids: vec!["subnet-new".into()],
                routes: vec![route("10.42.0.0/16", "local")],
                tags: Tags::new(),
            });
        })
    }

    /// No launch has failed yet: the trigger is a CloudTrail preflight of the nodegroup, and no
    /// activity or health issue mentions KMS.
    pub fn before_any_launch(mut self) -> Self {
        self.trigger = Evidence::healthy().trigger;
        self.activities.clear();
        self.nodegroup.health_issues.clear();
        self.nodegroup.status = "ACTIVE".into();
        self
    }

    /// Adds a grant of the key to the Auto Scaling role.
    pub fn key_grant(mut self, operations: &[&str], constrained: bool) -> Self {
        if let Some(KeyFacts {
            lookup: KeyLookup::Found(metadata),
            ..
        }) = self.keys.first_mut()
        {
            metadata.grants.push(KeyGrant {
                grant_id: format!("grant-{}", metadata.grants.len() + 1),
                grantee_principal: ROLE.into(),
                operations: operations.iter().map(|op| op.to_string()).collect(),
                constrained,
            });
        }
        self
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

    /// Replaces the launch failure text everywhere it appears.
    pub fn status_message(mut self, message: &str) -> Self {
        if let TriggerKind::Launch(launch) = &mut self.trigger.kind {
            launch.status_message = Some(message.into());
        }
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

    pub fn cluster(mut self, change: impl FnOnce(&mut ClusterFacts)) -> Self {
        if let Some(cluster) = self.cluster.as_mut() {
            change(cluster);
        }
        self
    }

    pub fn identity(mut self, change: impl FnOnce(&mut IdentityFacts)) -> Self {
        if let Some(identity) = self.identity.as_mut() {
            change(identity);
        }
        self
    }

    pub fn template(mut self, change: impl FnOnce(&mut LaunchTemplateFacts)) -> Self {
        if self.launch_template.is_none() {
            self.launch_template = Some(TemplateLookup::Found(LaunchTemplateFacts {
                id: "lt-1".into(),
                version: "1".into(),
                volumes: vec![],
                image_id: None,
                user_data: None,
                user_data_bytes: None,
                forbidden_settings: Vec::new(),
                metadata_options: None,
                security_group_ids: vec![],
                missing_security_group_ids: vec![],
                key_name: None,
            }));
        }
        if let Some(TemplateLookup::Found(facts)) = self.launch_template.as_mut() {
            change(facts);
        }
        self
    }

    pub fn health_issue(mut self, code: &str, message: &str, resources: &[&str]) -> Self {
        self.nodegroup.status = "DEGRADED".into();
        self.nodegroup.health_issues.push(HealthIssue {
            code: code.into(),
            message: message.into(),
            resource_ids: resources.iter().map(|r| r.to_string()).collect(),
        });
        self
    }

    pub fn scaling(mut self, min: i32, max: i32, desired: i32) -> Self {
        self.nodegroup.scaling = Scaling { min, max, desired };
        self
    }

    pub fn instance(mut self, id: &str, subnet: &str, lifecycle: &str) -> Self {
        if let Some(group) = self.group.as_mut() {
            group.instances.push(GroupInstance {
                id: id.into(),
                lifecycle_state: lifecycle.into(),
                health_status: "Healthy".into(),
                subnet_id: Some(subnet.into()),
            });
        }
        self
    }

    /// The cluster's role as IAM shows it: trusting `trusted` (a service), with these AWS
    /// managed policies attached.
    pub fn cluster_role(mut self, trusted: &str, policies: &[&str]) -> Self {
        self.cluster_role = Some(RoleLookup::Found {
            name: "eks-cluster".into(),
            attached_policy_arns: policies
                .iter()
                .map(|p| format!("arn:aws:iam::aws:policy/{p}"))
                .collect(),
            tags: Tags::new(),
            trust_policy: Some(format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"{trusted}"}},"Action":"sts:AssumeRole"}}]}}"#
            )),
        });
        self
    }

    pub fn nodegroup_status(mut self, status: &str) -> Self {
        self.nodegroup.status = status.into();
        self
    }
}
