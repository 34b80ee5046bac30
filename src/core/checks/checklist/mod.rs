//! The join checklist: every rule named as a check with a stable id, the evidence it needs and
//! one result. A check fails (or warns) when a finding of one of its causes was made; it passes
//! when its evidence was collected and nothing was found; otherwise it is skipped, saying why.
//! A check whose evidence could not be read (an API call denied) is skipped, never passed.

mod examined;
mod examined_cluster;
mod not_checked;

use examined::examined;

pub use not_checked::{NOT_CHECKED, NotChecked, Unseen};

use serde::{Deserialize, Serialize};

use super::{Cause, Diagnosis, Fact, Finding};
use crate::core::evidence::Evidence;

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
    InstanceProfile => "iam.instance_profile", [],
        "The nodes' instance profile exists and holds the node role",
        [InstanceProfileInvalid];
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
    AwsAuth => "k8s.aws_auth", ["NJ6", "NJ7"],
        "aws-auth maps the node role by its pathless role ARN to system:bootstrappers and system:nodes, or an EC2_LINUX access entry admits it",
        [AwsAuthMissingNodeRole, AwsAuthRoleArnHasPath, AwsAuthMalformed];
    AwsNodeTolerations => "k8s.aws_node_tolerations", ["NJ28"],
        "The aws-node DaemonSet tolerates the nodegroup's NoSchedule and NoExecute taints",
        [AwsNodeTaintNotTolerated];
    NodeCsr => "k8s.node_csr", ["NJ63"],
        "No kubelet certificate signing request of the nodegroup's nodes is denied or failed",
        [NodeCsrDenied];
    NodeRegistered => "k8s.node_registered", [],
        "Every instance running past the join deadline has a Node with its providerID",
        [NodeNotRegistered];
    NodeReady => "k8s.node_ready", [],
        "The nodegroup's Nodes are Ready",
        [NodeNotReady];
    BootLog => "instance.boot_log", [],
        "The console output of an instance that has not registered shows no bootstrap error",
        [NodeBootError];
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
    /// The cluster's API could not be reached, refused nodemedic, or did not answer in time.
    Unreachable(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotCollected(why) => write!(f, "not collected: {why}"),
            Skip::NotApplicable(why) => write!(f, "not applicable: {why}"),
            Skip::PermissionDenied(why) => write!(f, "permission denied: {why}"),
            Skip::Unreachable(why) => write!(f, "cluster API unreachable: {why}"),
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

#[cfg(test)]
mod tests;
