//! The join checklist: every rule named as a check with a stable id, the evidence it needs and
//! one result. A check fails (or warns) when a finding of one of its causes was made; it passes
//! when its evidence was collected and nothing was found; otherwise it is skipped, saying why.
//! A check whose evidence could not be read (an API call denied) is skipped, never passed.

mod not_checked;

pub use not_checked::{NOT_CHECKED, NotChecked, Unseen};

use serde::{Deserialize, Serialize};

use super::{Cause, Diagnosis, Fact, Finding};
use crate::core::evidence::{
    AccessEntryLookup, Evidence, ImageLookup, KeyLookup, NetworkFacts, RoleLookup, TemplateLookup,
};
use crate::core::trigger::{LaunchOutcome, TriggerKind};

macro_rules! checks {
    ($( $variant:ident => $id:literal, [$($nj:literal),*], $title:literal, [$($cause:ident),+]; )+) => {
        /// A check of the join checklist. Its id is part of the public contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CheckId {
            $( $variant, )+
        }

        impl CheckId {
            /// In checklist order: the cluster and nodegroup, identity, launch, network.
            pub const ALL: &'static [CheckId] = &[ $( CheckId::$variant, )+ ];

            pub fn id(self) -> &'static str {
                match self { $( CheckId::$variant => $id, )+ }
            }

            /// The checks of the AWS DevOps Agent's eks-node-join-diagnostic skill it covers.
            pub fn nj(self) -> &'static [&'static str] {
                match self { $( CheckId::$variant => &[$($nj),*], )+ }
            }

            pub fn title(self) -> &'static str {
                match self { $( CheckId::$variant => $title, )+ }
            }

            /// The causes this check decides; every cause belongs to exactly one check.
            pub fn causes(self) -> &'static [Cause] {
                match self { $( CheckId::$variant => &[$(Cause::$cause),+], )+ }
            }
        }
    };
}

checks! {
    ClusterStatus => "eks.cluster_status", ["NJ1", "NJ2"],
        "The cluster is ACTIVE and not being updated",
        [ClusterNotActive, ClusterUpdating];
    NodegroupStatus => "eks.nodegroup_status", ["NJ4"],
        "The nodegroup is not CREATE_FAILED or DEGRADED without a reason",
        [NodegroupCreateFailed];
    VersionSkew => "eks.version_skew", ["NJ21"],
        "The nodes' Kubernetes version is within the supported skew of the control plane",
        [NodeVersionSkew];
    AmiType => "eks.ami_type", ["NJ22"],
        "The nodes' AMI family is supported at the cluster's Kubernetes version",
        [AmiTypeUnsupported];
    NodegroupHealth => "eks.nodegroup_health", ["NJ3"],
        "EKS reports no nodegroup health issue",
        [AutoscalingGroupMissing, AutoscalingGroupModified, AutoscalingOptInRequired, AwsApiLimit,
         ClusterSecurityGroupMissing, LaunchTemplateVersionMismatch, LaunchTemplateLimitExceeded,
         SubnetMissingIpv6, SubnetListTooLong, EksInternalFailure, KubernetesLabelInvalid,
         ClusterUnreachable, ClusterAccessDenied, NodegroupCleanupBlocked, InstanceRefreshInProgress,
         NodeCreationFailure];
    ClusterRole => "iam.cluster_role", ["NJ8"],
        "The cluster's role exists, trusts eks.amazonaws.com and has AmazonEKSClusterPolicy",
        [ClusterRoleInvalid];
    NodeRolePolicies => "iam.node_role_policies", ["NJ5"],
        "The node role exists and has the worker node, CNI and ECR read policies",
        [NodeRoleNotFound, NodeRoleMissingPolicy];
    NodeRoleTrust => "iam.node_role_trust", ["NJ60"],
        "EC2 may assume the node role: its trust policy allows ec2.amazonaws.com without an impossible condition",
        [NodeRoleTrustInvalid];
    NodeAccessEntry => "iam.node_access_entry", ["NJ6"],
        "The node role has an access entry when the cluster admits nodes by access entries only",
        [NodeRoleMissingAccessEntry];
    VolumeKeys => "kms.volume_keys", [],
        "The launch template's KMS keys are enabled and let Auto Scaling use them",
        [KmsKeyUnusable, KmsKeyPolicyBlocksAutoscaling];
    LaunchActivity => "launch.activity", [],
        "Auto Scaling's launch failure text names no known cause",
        [InsufficientCapacity, InstanceQuotaExceeded, InstanceTypeUnavailable, SpotPriceTooLow,
         LifecycleHookAbandoned, Ec2InternalError, LaunchTemplateKeyPairMissing, Unknown];
    LaunchTemplate => "launch.template", ["NJ49"],
        "The launch template exists, its security groups exist, and it sets nothing a managed nodegroup forbids",
        [LaunchTemplateNotFound, LaunchTemplateSecurityGroupMissing, LaunchTemplateInvalid];
    LaunchAmi => "launch.ami", [],
        "The launch template's AMI exists and is available",
        [AmiNotFound];
    UserData => "launch.user_data", ["NJ17", "NJ18", "NJ19", "NJ20", "NJ47"],
        "A custom AMI's user data bootstraps the node: the right format, this cluster, the arguments it needs, within 16 KiB",
        [CustomAmiWithoutBootstrap, UserDataTooLarge, UserDataFormatMismatch,
         BootstrapClusterNameMismatch, BootstrapArgsMissing];
    RootVolume => "launch.root_volume", ["NJ55"],
        "The nodes' root volume is at least the AMI's snapshot and 20 GiB",
        [RootVolumeTooSmall];
    InstanceState => "instance.state", ["NJ29"],
        "The instance a launch or join check names is not stuck pending",
        [InstanceStuckPending];
    Imds => "instance.imds", ["NJ30"],
        "Instance metadata is reachable from pods: a hop limit of 2 when IMDSv2 is required",
        [ImdsHopLimitTooLow];
    Subnets => "net.subnets", [],
        "The node subnets exist and are in the cluster's VPC",
        [SubnetNotFound, SubnetInOtherVpc];
    SubnetAddresses => "net.subnet_addresses", ["NJ14"],
        "The node subnets have free addresses for the nodes the nodegroup may launch",
        [SubnetOutOfAddresses, SubnetLowOnAddresses];
    VpcDns => "net.vpc_dns", ["NJ11", "NJ12"],
        "The VPC resolves names: DNS support and hostnames on, AmazonProvidedDNS in the DHCP options",
        [VpcDnsDisabled, DhcpOptionsWithoutAmazonDns];
    DefaultRoute => "net.default_route", ["NJ13"],
        "The node subnets reach the internet (NAT or internet gateway) or have the endpoints of a private join",
        [SubnetNoEgressRoute, DefaultRouteBlackhole, NatGatewayUnavailable,
         NatGatewayWithoutInternetRoute, PublicSubnetWithoutPublicIp];
    VpcEndpoints => "net.vpc_endpoints", ["NJ16"],
        "The VPC endpoints of a private join exist and accept HTTPS from the nodes",
        [VpcEndpointMissing, VpcEndpointBlocksHttps, VpcEndpointPrivateDnsDisabled];
    S3EndpointPolicy => "net.s3_endpoint_policy", ["NJ59"],
        "The S3 gateway endpoint's policy lets nodes read ECR's image layers",
        [S3EndpointPolicyBlocksEcr];
    PublicEndpointAccess => "net.public_endpoint_access", [],
        "The cluster's public endpoint admits the nodes' addresses",
        [PublicEndpointExcludesNodes];
    SecurityGroups => "net.security_groups", ["NJ9", "NJ10"],
        "Security groups let nodes and control plane talk (443 both ways, 10250 to the nodes)",
        [SecurityGroupBlocksCluster];
    NetworkAcls => "net.network_acls", ["NJ15"],
        "Network ACLs allow 443, 10250 and the ephemeral ports",
        [NetworkAclBlocksTraffic];
}

impl Serialize for CheckId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

impl<'de> Deserialize<'de> for CheckId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        CheckId::from_id(&id)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown check id {id:?}")))
    }
}

impl CheckId {
    pub fn from_id(id: &str) -> Option<CheckId> {
        CheckId::ALL.iter().copied().find(|check| check.id() == id)
    }

    /// The check that decides a cause.
    pub fn of(cause: Cause) -> CheckId {
        CheckId::ALL
            .iter()
            .copied()
            .find(|check| check.causes().contains(&cause))
            .unwrap_or(CheckId::LaunchActivity)
    }
}

impl std::fmt::Display for CheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    /// A blocking cause was found.
    Fail,
    /// Only warnings were found.
    Warn,
    Skipped,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "fail",
            CheckStatus::Warn => "warn",
            CheckStatus::Skipped => "skipped",
        }
    }
}

/// Why a check did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum Skip {
    /// The evidence it needs is not collected for this trigger.
    NotCollected(String),
    /// It does not concern this nodegroup.
    NotApplicable(String),
    /// The API call it needs was denied.
    PermissionDenied(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotCollected(why) => write!(f, "not collected: {why}"),
            Skip::NotApplicable(why) => write!(f, "not applicable: {why}"),
            Skip::PermissionDenied(why) => write!(f, "permission denied: {why}"),
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: CheckId,
    pub result: CheckStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skip>,
    /// The causes found, most important first; empty unless the check failed or warned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
    /// What was seen: the findings' facts, or what a passing check examined.
    #[serde(default)]
    pub evidence: Vec<Fact>,
    /// How to fix what was found: the finding's own remedy, else its cause's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

/// Every check's result over the evidence and the findings made from it, in checklist order.
pub fn checklist(evidence: &Evidence, diagnosis: &Diagnosis) -> Vec<CheckResult> {
    CheckId::ALL
        .iter()
        .map(|&check| {
            let found: Vec<&Finding> = diagnosis
                .findings
                .iter()
                .filter(|finding| CheckId::of(finding.cause) == check)
                .collect();
            if let Some(first) = found.first() {
                let blocking = found.iter().any(|finding| finding.blocking);
                return CheckResult {
                    check,
                    result: if blocking {
                        CheckStatus::Fail
                    } else {
                        CheckStatus::Warn
                    },
                    skipped: None,
                    causes: found.iter().map(|finding| finding.cause).collect(),
                    evidence: found
                        .iter()
                        .flat_map(|finding| finding.evidence.iter().cloned())
                        .collect(),
                    remedy: Some(
                        first
                            .remedy
                            .clone()
                            .unwrap_or_else(|| first.cause.doc().remedy.to_string()),
                    ),
                };
            }
            match examined(check, evidence) {
                Ok(evidence) => CheckResult {
                    check,
                    result: CheckStatus::Pass,
                    skipped: None,
                    causes: Vec::new(),
                    evidence,
                    remedy: None,
                },
                Err(skip) => CheckResult {
                    check,
                    result: CheckStatus::Skipped,
                    skipped: Some(skip),
                    causes: Vec::new(),
                    evidence: Vec::new(),
                    remedy: None,
                },
            }
        })
        .collect()
}

/// What a check looked at when it found nothing, or why it could not look.
fn examined(check: CheckId, evidence: &Evidence) -> Result<Vec<Fact>, Skip> {
    let nodegroup = format!("nodegroup {}", evidence.nodegroup.name);
    match check {
        CheckId::ClusterStatus => {
            let cluster = evidence.cluster.as_ref().ok_or_else(cluster_not_collected)?;
            Ok(vec![Fact::new(
                format!("cluster {}", cluster.name),
                format!("status {}", cluster.status),
            )])
        }
        CheckId::NodegroupStatus => Ok(vec![Fact::new(
            nodegroup.clone(),
            format!("status {}", evidence.nodegroup.status),
        )]),
        CheckId::S3EndpointPolicy => {
            let network = network(evidence)?;
            let s3 = format!("com.amazonaws.{}.s3", evidence.trigger.region);
            let gateways: Vec<Fact> = network
                .endpoints
                .iter()
                .filter(|e| e.service_name == s3 && e.kind == "Gateway")
                .map(|e| {
                    let policy = if e.policy.is_some() { "a policy" } else { "no policy" };
                    Fact::new(&e.id, format!("S3 gateway endpoint with {policy}"))
                })
                .collect();
            if gateways.is_empty() {
                return Err(Skip::NotApplicable(
                    "the VPC has no S3 gateway endpoint: S3 traffic takes the default route".into(),
                ));
            }
            Ok(gateways)
        }
        CheckId::VersionSkew | CheckId::AmiType => {
            let cluster = evidence.cluster.as_ref().ok_or_else(cluster_not_collected)?;
            let control_plane = cluster.version.as_deref().ok_or_else(|| {
                Skip::NotCollected(format!("cluster {} reports no version", cluster.name))
            })?;
            let nodes = match (check, &evidence.nodegroup.ami_type, &evidence.nodegroup.version) {
                (CheckId::AmiType, Some(ami_type), _) if ami_type != "CUSTOM" => ami_type.clone(),
                (CheckId::VersionSkew, Some(ami_type), Some(version)) if ami_type != "CUSTOM" => {
                    format!("version {version}")
                }
                _ => match &evidence.image {
                    Some(ImageLookup::Found {
                        name: Some(name), ..
                    }) if super::versions::eks_ami_family(name).is_some() => format!("AMI {name}"),
                    _ => {
                        return Err(Skip::NotApplicable(
                            "a custom AMI not built by EKS: its family and version are unknown".into(),
                        ));
                    }
                },
            };
            Ok(vec![
                Fact::new(format!("cluster {}", cluster.name), format!("version {control_plane}")),
                Fact::new(nodegroup.clone(), nodes),
            ])
        }
        CheckId::NodegroupHealth => Ok(vec![Fact::new(
            nodegroup,
            format!(
                "status {}, {} health issue(s)",
                evidence.nodegroup.status,
                evidence.nodegroup.health_issues.len()
            ),
        )]),
        CheckId::NodeRolePolicies => match node_role(evidence)? {
            RoleLookup::Found {
                name,
                attached_policy_arns,
                ..
            } => Ok(vec![Fact::new(
                format!("role {name}"),
                format!("{} policies attached", attached_policy_arns.len()),
            )]),
            RoleLookup::NotFound { name } => Ok(vec![Fact::new(name, "not found")]),
            RoleLookup::Unreadable { reason } => Err(Skip::PermissionDenied(format!(
                "iam:GetRole or iam:ListAttachedRolePolicies: {reason}"
            ))),
        },
        CheckId::ClusterRole => match &evidence.cluster_role {
            Some(RoleLookup::Found { name, .. }) => Ok(vec![Fact::new(
                format!("role {name}"),
                "trusts EKS, AmazonEKSClusterPolicy attached",
            )]),
            Some(RoleLookup::NotFound { name }) => Ok(vec![Fact::new(name, "not found")]),
            Some(RoleLookup::Unreadable { reason }) => {
                Err(Skip::PermissionDenied(format!("iam:GetRole: {reason}")))
            }
            None => Err(identity_not_collected()),
        },
        CheckId::NodeRoleTrust => match node_role(evidence)? {
            RoleLookup::Found {
                name,
                trust_policy: Some(_),
                ..
            } => Ok(vec![Fact::new(format!("role {name}"), "trust policy read")]),
            RoleLookup::Found { name, .. } => Err(Skip::NotCollected(format!(
                "GetRole returned no trust policy for {name}"
            ))),
            RoleLookup::NotFound { name } => Err(Skip::NotApplicable(format!(
                "role {name} does not exist (see iam.node_role_policies)"
            ))),
            RoleLookup::Unreadable { reason } => {
                Err(Skip::PermissionDenied(format!("iam:GetRole: {reason}")))
            }
        },
        CheckId::NodeAccessEntry => {
            let identity = evidence.identity.as_ref().ok_or_else(identity_not_collected)?;
            match &identity.access_entry {
                AccessEntryLookup::Present { kind } => Ok(vec![Fact::new(
                    &identity.node_role_arn,
                    format!("access entry of type {kind}"),
                )]),
                AccessEntryLookup::Absent => Ok(Vec::new()),
                AccessEntryLookup::NotApplicable => Err(Skip::NotApplicable(
                    "the cluster also admits nodes through the aws-auth ConfigMap, which lives inside the cluster"
                        .into(),
                )),
                AccessEntryLookup::Unreadable { reason } => Err(Skip::PermissionDenied(format!(
                    "eks:DescribeAccessEntry: {reason}"
                ))),
            }
        }
        CheckId::VolumeKeys => {
            let template = launch_template(evidence)?;
            if evidence.keys.is_empty() {
                return Err(Skip::NotApplicable(format!(
                    "launch template {} encrypts no volume with a KMS key it names",
                    template.id
                )));
            }
            evidence
                .keys
                .iter()
                .map(|key| match &key.lookup {
                    KeyLookup::Found(metadata) => Ok(Fact::new(
                        &metadata.arn,
                        format!("{}, policy read: {}", metadata.state, metadata.policy.is_some()),
                    )),
                    KeyLookup::NotFound { reason } => Ok(Fact::new(&key.reference, reason)),
                    KeyLookup::Unreadable { reason } => Err(Skip::PermissionDenied(format!(
                        "kms:DescribeKey on {}: {reason}",
                        key.reference
                    ))),
                })
                .collect()
        }
        CheckId::LaunchActivity => match &evidence.trigger.kind {
            TriggerKind::Launch(launch) if launch.outcome == LaunchOutcome::Unsuccessful => {
                Ok(vec![Fact::new(&launch.asg_name, "failed launch")])
            }
            _ => Err(Skip::NotApplicable("no failed launch to read".into())),
        },
        CheckId::LaunchTemplate => match &evidence.launch_template {
            Some(TemplateLookup::Found(template)) => Ok(vec![Fact::new(
                format!("launch template {} version {}", template.id, template.version),
                format!("{} security group(s)", template.security_group_ids.len()),
            )]),
            Some(TemplateLookup::NotFound { reference, reason }) => {
                Ok(vec![Fact::new(reference, reason)])
            }
            None => Err(no_launch_template(evidence)),
        },
        CheckId::LaunchAmi => match &evidence.image {
            Some(ImageLookup::Found {
                image_id, state, ..
            }) => {
                Ok(vec![Fact::new(image_id, format!("state {state}"))])
            }
            Some(ImageLookup::NotFound { image_id }) => Ok(vec![Fact::new(image_id, "not found")]),
            None => Err(match evidence.launch_template_facts() {
                Some(_) => Skip::NotApplicable(
                    "the launch template names no AMI: EKS chooses it from the nodegroup's AMI type".into(),
                ),
                None => no_launch_template(evidence),
            }),
        },
        CheckId::UserData => {
            let template = launch_template(evidence)?;
            match &template.image_id {
                Some(image) => Ok(vec![Fact::new(
                    format!("launch template {}", template.id),
                    format!(
                        "custom AMI {image}, user data {}",
                        if template.user_data.is_some() { "present" } else { "absent" }
                    ),
                )]),
                None => Err(Skip::NotApplicable(
                    "no custom AMI: EKS writes the bootstrap user data itself".into(),
                )),
            }
        }
        CheckId::RootVolume => match super::root_volume::root_volume(evidence) {
            Some(root) => Ok(vec![Fact::new(root.source, format!("{} GiB", root.size_gib))]),
            None if evidence.launch_template_facts().is_some() => Err(Skip::NotApplicable(
                "the launch template keeps the AMI's root volume size".into(),
            )),
            None => Err(no_launch_template(evidence)),
        },
        CheckId::InstanceState => match &evidence.instance {
            Some(instance) => Ok(vec![Fact::new(
                &instance.id,
                format!("state {}", instance.state),
            )]),
            None => Err(Skip::NotApplicable(
                "the trigger names no instance (a launch or join check does; `diagnose --instance`)".into(),
            )),
        },
        CheckId::Imds => {
            let template = launch_template(evidence)?;
            match &template.metadata_options {
                Some(options) => Ok(vec![Fact::new(
                    format!("launch template {}", template.id),
                    format!(
                        "HttpTokens {}, hop limit {}",
                        options.http_tokens.as_deref().unwrap_or("default"),
                        options.hop_limit.map_or("default".to_string(), |h| h.to_string())
                    ),
                )]),
                None => Err(Skip::NotApplicable(
                    "the launch template leaves the metadata options to the AMI and EKS".into(),
                )),
            }
        }
        CheckId::Subnets | CheckId::SubnetAddresses => {
            let network = network(evidence)?;
            Ok(network
                .subnet_ids
                .iter()
                .filter_map(|id| network.subnet(id))
                .map(|subnet| {
                    Fact::new(
                        &subnet.id,
                        format!(
                            "VPC {}, {} free addresses",
                            subnet.vpc_id, subnet.available_ips
                        ),
                    )
                })
                .collect())
        }
        CheckId::VpcDns => {
            let vpc = &network(evidence)?.vpc;
            Ok(vec![Fact::new(
                &vpc.id,
                format!(
                    "DNS support {:?}, hostnames {:?}, name servers {:?}",
                    vpc.dns_support, vpc.dns_hostnames, vpc.domain_name_servers
                ),
            )])
        }
        CheckId::DefaultRoute => {
            let network = network(evidence)?;
            Ok(network
                .subnet_ids
                .iter()
                .map(|subnet| {
                    let route = network
                        .route_table_for(subnet)
                        .and_then(|table| {
                            table
                                .routes
                                .iter()
                                .find(|route| route.is_default_ipv4())
                                .map(|route| format!("{}: 0.0.0.0/0 → {}", table.id, route.target))
                        })
                        .unwrap_or_else(|| "no default route; private join".into());
                    Fact::new(subnet, route)
                })
                .collect())
        }
        CheckId::VpcEndpoints => {
            let network = network(evidence)?;
            Ok(network
                .endpoints
                .iter()
                .map(|endpoint| {
                    Fact::new(
                        &endpoint.id,
                        format!("{} ({}), {}", endpoint.service_name, endpoint.kind, endpoint.state),
                    )
                })
                .collect())
        }
        CheckId::PublicEndpointAccess => {
            network(evidence)?;
            let cluster = evidence.cluster.as_ref().ok_or_else(cluster_not_collected)?;
            Ok(vec![Fact::new(
                format!("cluster {}", cluster.name),
                format!(
                    "public {}, private {}, public CIDRs {}",
                    cluster.endpoint_public_access,
                    cluster.endpoint_private_access,
                    cluster.public_access_cidrs.join(", ")
                ),
            )])
        }
        CheckId::SecurityGroups => {
            let network = network(evidence)?;
            Ok(network
                .node_security_group_ids
                .iter()
                .map(|group| Fact::new(group, "node security group"))
                .collect())
        }
        CheckId::NetworkAcls => {
            let network = network(evidence)?;
            Ok(network
                .subnet_ids
                .iter()
                .filter_map(|subnet| {
                    network
                        .network_acl_for(subnet)
                        .map(|acl| Fact::new(subnet, format!("network ACL {}", acl.id)))
                })
                .collect())
        }
    }
}

fn network(evidence: &Evidence) -> Result<&NetworkFacts, Skip> {
    evidence.network.as_ref().ok_or_else(|| {
        Skip::NotCollected(
            "the VPC is read for successful launches, health and join checks, preflight and `diagnose`; \
             this trigger's failure text and launch template were enough"
                .into(),
        )
    })
}

fn identity_not_collected() -> Skip {
    Skip::NotCollected(
        "the node role is read for health and join checks, preflight, `diagnose`, and failed launches \
         no launch evidence explains"
            .into(),
    )
}

fn cluster_not_collected() -> Skip {
    Skip::NotCollected("DescribeCluster is not called for this trigger".into())
}

fn node_role(evidence: &Evidence) -> Result<&RoleLookup, Skip> {
    match &evidence.identity {
        Some(identity) => Ok(&identity.role),
        None if evidence.nodegroup.node_role.is_none() => Err(Skip::NotApplicable(
            "the nodegroup names no node role".into(),
        )),
        None => Err(identity_not_collected()),
    }
}

fn launch_template(
    evidence: &Evidence,
) -> Result<&crate::core::evidence::LaunchTemplateFacts, Skip> {
    evidence
        .launch_template_facts()
        .ok_or_else(|| no_launch_template(evidence))
}

fn no_launch_template(evidence: &Evidence) -> Skip {
    if evidence.nodegroup.launch_template.is_none() {
        Skip::NotApplicable("the nodegroup uses no launch template of its own".into())
    } else if matches!(
        evidence.launch_template,
        Some(TemplateLookup::NotFound { .. })
    ) {
        Skip::NotApplicable("the launch template was not found (see launch.template)".into())
    } else {
        Skip::NotCollected(
            "the launch template is read for failed launches, health and join checks, preflight and `diagnose`"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests;
