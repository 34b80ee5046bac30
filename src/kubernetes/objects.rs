//! Kubernetes objects as evidence: only the fields the checks judge, only the nodegroup's own
//! Nodes and CSRs, and an error as the reason the cluster checks were skipped.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Node};

use crate::core::boot_log::quote;
use crate::core::evidence::{
    ApiProblem, AwsAuthFacts, ClusterObjects, Condition, CsrFacts, DaemonSetFacts, NodeFacts,
    NodeInstance, Toleration,
};

/// The label EKS puts on a managed nodegroup's Nodes.
const NODEGROUP_LABEL: &str = "eks.amazonaws.com/nodegroup";

#[allow(clippy::too_many_arguments)]
pub(super) fn cluster_objects(
    nodegroup: &str,
    instances: Vec<NodeInstance>,
    nodes: Vec<Node>,
    aws_auth: Option<ConfigMap>,
    csrs: Vec<CertificateSigningRequest>,
    aws_node: Option<DaemonSet>,
    read_at: time::OffsetDateTime,
    join_deadline_secs: u64,
) -> ClusterObjects {
    let nodes: Vec<NodeFacts> = nodes
        .into_iter()
        .map(node_facts)
        .filter(|(node, labelled)| {
            *labelled == Some(nodegroup.to_string())
                || node
                    .instance_id()
                    .is_some_and(|id| instances.iter().any(|i| i.id == id))
        })
        .map(|(node, _)| node)
        .collect();
    let requesters: Vec<String> = nodes
        .iter()
        .map(|n| format!("system:node:{}", n.name))
        .chain(instances.iter().flat_map(|i| {
            i.private_dns_name
                .iter()
                .map(|name| format!("system:node:{name}"))
                .chain(std::iter::once(format!("system:node:{}", i.id)))
        }))
        .collect();
    ClusterObjects {
        read_at,
        join_deadline_secs,
        nodes,
        aws_auth: aws_auth.map(|map| AwsAuthFacts {
            map_roles: map.data.and_then(|mut data| data.remove("mapRoles")),
        }),
        csrs: csrs
            .into_iter()
            .map(csr_facts)
            .filter(|csr| requesters.contains(&csr.username))
            .collect(),
        aws_node: aws_node.map(daemon_set_facts),
        instances,
    }
}

/// The Nodes labelled as `nodegroup`'s: their instance id and whether they are Ready.
pub(super) fn nodegroup_nodes(nodegroup: &str, nodes: Vec<Node>) -> Vec<(String, bool)> {
    nodes
        .into_iter()
        .map(node_facts)
        .filter(|(_, labelled)| labelled.as_deref() == Some(nodegroup))
        .filter_map(|(node, _)| Some((node.instance_id()?.to_string(), node.is_ready())))
        .collect()
}

fn node_facts(node: Node) -> (NodeFacts, Option<String>) {
    let labelled = node
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(NODEGROUP_LABEL).cloned());
    let ready = node
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|condition| condition.type_ == "Ready")
        .map(|condition| Condition {
            kind: condition.type_,
            status: condition.status,
            reason: condition.reason,
            message: condition.message.map(|m| quote(&m)),
        });
    (
        NodeFacts {
            name: node.metadata.name.unwrap_or_default(),
            provider_id: node.spec.and_then(|spec| spec.provider_id),
            ready,
        },
        labelled,
    )
}

fn csr_facts(csr: CertificateSigningRequest) -> CsrFacts {
    let status = csr.status.unwrap_or_default();
    CsrFacts {
        name: csr.metadata.name.unwrap_or_default(),
        signer: csr.spec.signer_name,
        username: csr.spec.username.unwrap_or_default(),
        issued: status.certificate.is_some_and(|c| !c.0.is_empty()),
        conditions: status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .map(|condition| Condition {
                kind: condition.type_,
                status: condition.status,
                reason: condition.reason,
                message: condition.message.map(|m| quote(&m)),
            })
            .collect(),
    }
}

fn daemon_set_facts(daemon_set: DaemonSet) -> DaemonSetFacts {
    DaemonSetFacts {
        name: daemon_set.metadata.name.unwrap_or_default(),
        tolerations: daemon_set
            .spec
            .and_then(|spec| spec.template.spec)
            .and_then(|pod| pod.tolerations)
            .unwrap_or_default()
            .into_iter()
            .map(|t| Toleration {
                key: t.key,
                operator: t.operator,
                value: t.value,
                effect: t.effect,
            })
            .collect(),
    }
}

/// Why the reading failed, as a metric label and a reason for the report.
pub(super) fn classify(error: &kube::Error, endpoint: &str) -> (ApiProblem, String) {
    match error {
        kube::Error::Api(status) if status.code == 401 => (
            ApiProblem::Unauthorized,
            format!(
                "{endpoint} answered 401 Unauthorized: the cluster does not accept nodemedic's token \
                 (is its role in an access entry or aws-auth?)"
            ),
        ),
        kube::Error::Api(status) if status.code == 403 => (
            ApiProblem::Forbidden,
            format!(
                "{endpoint} answered 403 Forbidden: {} (bind nodemedic's group to the nodemedic-reader ClusterRole)",
                quote(&status.message)
            ),
        ),
        kube::Error::Api(status) => (
            ApiProblem::Refused,
            format!(
                "{endpoint} answered {}: {}",
                status.code,
                quote(&status.message)
            ),
        ),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::RustlsTls(_) => (
            ApiProblem::Unreachable,
            format!("{endpoint} could not be reached: {}", quote(&chain(error))),
        ),
        other => (
            ApiProblem::Refused,
            format!("reading {endpoint} failed: {}", quote(&chain(other))),
        ),
    }
}

/// An error with its sources, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
