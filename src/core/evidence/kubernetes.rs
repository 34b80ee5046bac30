//! What the cluster itself and the nodes' own consoles show: the Kubernetes objects a join leaves
//! behind (Node, CSR, the aws-auth ConfigMap, the aws-node DaemonSet) and the boot log EC2 keeps
//! for an instance. Plain data; `kubernetes` (the edge) reads them, `core::checks` judges them.

use serde::{Deserialize, Serialize};

/// The cluster's API as nodemedic saw it, or why it could not look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ClusterView {
    Seen(ClusterObjects),
    /// Not reached, refused or too slow: every cluster check is skipped with this reason.
    Unreachable {
        kind: ApiProblem,
        reason: String,
    },
}

/// Why the cluster's API was not read; the label of `nodemedic_cluster_api_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiProblem {
    /// DescribeCluster gave no endpoint.
    NoEndpoint,
    /// No connection: DNS, TCP, TLS (a private-only endpoint from outside its VPC, a wrong CA).
    Unreachable,
    /// 401: the token was refused.
    Unauthorized,
    /// 403: the identity is known but may not read (no access entry, no RBAC).
    Forbidden,
    /// No answer within the bound.
    Timeout,
    /// Any other refusal or error.
    Refused,
}

impl ApiProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiProblem::NoEndpoint => "no_endpoint",
            ApiProblem::Unreachable => "unreachable",
            ApiProblem::Unauthorized => "unauthorized",
            ApiProblem::Forbidden => "forbidden",
            ApiProblem::Timeout => "timeout",
            ApiProblem::Refused => "refused",
        }
    }
}

/// The objects read, and the instances of the nodegroup they are compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterObjects {
    /// When the API was read: an instance launched more than `join_deadline_secs` before this
    /// and without a Node has not registered.
    #[serde(with = "time::serde::rfc3339")]
    pub read_at: time::OffsetDateTime,
    pub join_deadline_secs: u64,
    /// The nodegroup's running instances as EC2 describes them.
    pub instances: Vec<NodeInstance>,
    /// Nodes of this nodegroup (by label or by an instance's providerID).
    pub nodes: Vec<NodeFacts>,
    /// `kube-system/aws-auth`; `None` when the ConfigMap does not exist.
    pub aws_auth: Option<AwsAuthFacts>,
    /// CSRs requested by this nodegroup's nodes (by the requester's node name).
    pub csrs: Vec<CsrFacts>,
    /// `kube-system/aws-node`; `None` when the DaemonSet does not exist.
    pub aws_node: Option<DaemonSetFacts>,
}

impl ClusterObjects {
    /// The Node an instance registered, by its providerID.
    pub fn node_of(&self, instance: &NodeInstance) -> Option<&NodeFacts> {
        self.nodes
            .iter()
            .find(|node| node.instance_id() == Some(instance.id.as_str()))
    }

    /// The instances that ran past the join deadline without a Node.
    pub fn unregistered(&self) -> Vec<&NodeInstance> {
        let deadline =
            time::Duration::seconds(i64::try_from(self.join_deadline_secs).unwrap_or(i64::MAX));
        self.instances
            .iter()
            .filter(|instance| self.node_of(instance).is_none())
            .filter(|instance| {
                instance
                    .launched_at
                    .and_then(|at| at.checked_add(deadline))
                    .is_some_and(|due| due <= self.read_at)
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInstance {
    pub id: String,
    pub availability_zone: Option<String>,
    pub private_dns_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub launched_at: Option<time::OffsetDateTime>,
}

impl NodeInstance {
    /// The providerID kubelet registers this instance's Node with.
    pub fn provider_id(&self) -> Option<String> {
        self.availability_zone
            .as_ref()
            .map(|zone| format!("aws:///{zone}/{}", self.id))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub name: String,
    pub provider_id: Option<String>,
    /// The `Ready` condition; `None` when the Node reports none yet.
    pub ready: Option<Condition>,
}

impl NodeFacts {
    /// The instance id at the end of an `aws:///<zone>/<instance-id>` providerID.
    pub fn instance_id(&self) -> Option<&str> {
        let provider_id = self.provider_id.as_deref()?.strip_prefix("aws:///")?;
        provider_id
            .rsplit('/')
            .next()
            .filter(|id| id.starts_with("i-"))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.as_ref().is_some_and(|c| c.status == "True")
    }
}

/// A condition of a Node or a CSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// `Ready` for a Node; `Approved`, `Denied` or `Failed` for a CSR.
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsAuthFacts {
    /// `data.mapRoles` as written; `None` when the key is absent. Parsed by the check, because
    /// a text the authenticator cannot parse is itself a finding.
    pub map_roles: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrFacts {
    pub name: String,
    pub signer: String,
    /// `spec.username`: `system:node:<node name>` for a kubelet.
    pub username: String,
    pub conditions: Vec<Condition>,
    /// `status.certificate` is set.
    pub issued: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonSetFacts {
    pub name: String,
    pub tolerations: Vec<Toleration>,
}

/// A pod toleration, as the DaemonSet's pod template declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toleration {
    pub key: Option<String>,
    /// `Exists` or `Equal` (the default).
    pub operator: Option<String>,
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule`, `NoExecute`; `None` matches every effect.
    pub effect: Option<String>,
}

/// A nodegroup taint as DescribeNodegroup reports it (effect `NO_SCHEDULE`, `NO_EXECUTE`,
/// `PREFER_NO_SCHEDULE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodegroupTaint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

impl NodegroupTaint {
    /// The effect as Kubernetes spells it on the Node.
    pub fn kubernetes_effect(&self) -> &str {
        match self.effect.as_str() {
            "NO_SCHEDULE" => "NoSchedule",
            "NO_EXECUTE" => "NoExecute",
            "PREFER_NO_SCHEDULE" => "PreferNoSchedule",
            other => other,
        }
    }

    /// Whether `toleration` tolerates this taint, by the scheduler's rules.
    pub fn tolerated_by(&self, toleration: &Toleration) -> bool {
        let effect_matches = toleration
            .effect
            .as_deref()
            .is_none_or(|effect| effect.is_empty() || effect == self.kubernetes_effect());
        if !effect_matches {
            return false;
        }
        let key = toleration.key.as_deref().unwrap_or_default();
        match toleration.operator.as_deref().unwrap_or("Equal") {
            // An empty key with Exists tolerates every taint.
            "Exists" => key.is_empty() || key == self.key,
            "Equal" => {
                key == self.key
                    && toleration.value.as_deref().unwrap_or_default()
                        == self.value.as_deref().unwrap_or_default()
            }
            _ => false,
        }
    }
}

/// The console output EC2 keeps for one instance that has not registered, classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootLog {
    pub instance_id: String,
    pub lookup: BootLogLookup,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum BootLogLookup {
    Read(BootDigest),
    /// EC2 had no output yet, or the call was refused.
    Unavailable {
        reason: String,
    },
}

/// What a boot log says, bounded: the lines nodemedic recognised, and the tail of the log when
/// it recognised none. Every line is cleaned of control characters and cut to a bounded length.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BootDigest {
    /// Bytes of output EC2 returned.
    pub bytes: usize,
    pub lines: Vec<BootLine>,
    /// The last lines, kept when no line was recognised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excerpt: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootLine {
    pub kind: BootErrorKind,
    pub text: String,
}

/// What a recognised boot-log line says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootErrorKind {
    /// A timeout, refusal or no route to the cluster endpoint or an AWS API.
    EndpointUnreachable,
    DnsFailure,
    /// The API server refused the node's credentials.
    Unauthorized,
    /// A certificate the node could not verify (a wrong or stale CA).
    CertificateError,
    ClusterNotFound,
    /// nodeadm could not read or complete its NodeConfig.
    NodeadmConfig,
    /// A cloud-init module or the bootstrap script failed.
    BootstrapFailed,
}

impl BootErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BootErrorKind::EndpointUnreachable => "endpoint_unreachable",
            BootErrorKind::DnsFailure => "dns_failure",
            BootErrorKind::Unauthorized => "unauthorized",
            BootErrorKind::CertificateError => "certificate_error",
            BootErrorKind::ClusterNotFound => "cluster_not_found",
            BootErrorKind::NodeadmConfig => "nodeadm_config",
            BootErrorKind::BootstrapFailed => "bootstrap_failed",
        }
    }
}
