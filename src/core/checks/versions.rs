//! Versions: the nodes' Kubernetes version against the control plane's (kubelet may not be newer,
//! nor older than the supported skew), and the AMI family against the version (no Amazon Linux 2
//! from Kubernetes 1.33 on).

use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{Evidence, ImageLookup};

/// The first Kubernetes version EKS publishes no Amazon Linux 2 AMI for.
const LAST_AL2_MINOR_PLUS_ONE: u32 = 33;
/// How many minors a kubelet may lag the control plane: three from Kubernetes 1.28, two before.
fn supported_lag(control_plane_minor: u32) -> u32 {
    if control_plane_minor >= 28 { 3 } else { 2 }
}

/// `1.33` (or `1.33.5-20251016`) as its minor, for Kubernetes 1.x.
pub fn minor(version: &str) -> Option<u32> {
    let mut parts = version.split(['.', '-']);
    if parts.next()? != "1" {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The AMI family and Kubernetes version an EKS-built AMI's name carries:
/// `amazon-eks-node-1.29-v20240117` (AL2), `amazon-eks-node-al2023-x86_64-standard-1.31-v…`
/// (AL2023), `amazon-eks-gpu-node-…`, `amazon-eks-arm64-node-…`, `bottlerocket-aws-k8s-1.30-…`.
pub fn eks_ami_family(name: &str) -> Option<(&'static str, Option<u32>)> {
    let version = name
        .split(['-', '_'])
        .find_map(|part| part.strip_prefix("1.").and_then(|m| m.parse().ok()));
    if name.starts_with("bottlerocket-aws-k8s-") {
        return Some(("BOTTLEROCKET", version));
    }
    if !name.starts_with("amazon-eks-") || !name.contains("node") {
        return None;
    }
    if name.contains("al2023") {
        Some(("AL2023", version))
    } else {
        Some(("AL2", version))
    }
}

/// The nodes' AMI family: the nodegroup's AMI type, or for a custom AMI the family its name
/// shows (unknown for an AMI not built by EKS).
fn ami_family(evidence: &Evidence) -> Option<(String, Option<u32>, String)> {
    match evidence.nodegroup.ami_type.as_deref() {
        Some("CUSTOM") | None => match &evidence.image {
            Some(ImageLookup::Found {
                image_id,
                name: Some(name),
                ..
            }) => eks_ami_family(name).map(|(family, version)| {
                (
                    family.to_string(),
                    version,
                    format!("AMI {image_id} ({name})"),
                )
            }),
            _ => None,
        },
        Some(ami_type) => Some((
            ami_type.split('_').next().unwrap_or(ami_type).to_string(),
            None,
            format!("nodegroup {} amiType {ami_type}", evidence.nodegroup.name),
        )),
    }
}

pub fn findings(evidence: &Evidence) -> Vec<Finding> {
    let Some(cluster) = &evidence.cluster else {
        return Vec::new();
    };
    let Some(control_plane) = cluster.version.as_deref().and_then(minor) else {
        return Vec::new();
    };
    let cluster_fact = Fact::new(
        format!("cluster {}", cluster.name),
        format!("Kubernetes 1.{control_plane}"),
    );
    let mut findings = Vec::new();
    let family = ami_family(evidence);
    if let Some((family, _, source)) = &family
        && family == "AL2"
        && control_plane >= LAST_AL2_MINOR_PLUS_ONE
    {
        findings.push(Finding {
            cause: Cause::AmiTypeUnsupported,
            blocking: true,
            summary: format!(
                "nodegroup {} runs Amazon Linux 2 on Kubernetes 1.{control_plane}",
                evidence.nodegroup.name
            ),
            explanation: "EKS publishes no Amazon Linux 2 AMI from Kubernetes 1.33 on, and AL2 nodes are not \
                          supported there; their bootstrap does not match what the control plane expects."
                .into(),
            evidence: vec![Fact::new(source, "Amazon Linux 2"), cluster_fact.clone()],
            remedy: Some(format!(
                "Create a nodegroup with amiType AL2023_x86_64_STANDARD (or Bottlerocket) and move the workloads: \
                 aws eks create-nodegroup --cluster-name {} --nodegroup-name <new> --ami-type AL2023_x86_64_STANDARD …",
                evidence.nodegroup.cluster
            )),
            subject: Subject::Resource {
                id: evidence.nodegroup.name.clone(),
            },
        });
    }
    let node_version = evidence
        .nodegroup
        .version
        .as_deref()
        .and_then(minor)
        .map(|m| {
            (
                m,
                format!("nodegroup {} version 1.{m}", evidence.nodegroup.name),
            )
        })
        .filter(|_| evidence.nodegroup.ami_type.as_deref() != Some("CUSTOM"))
        .or_else(|| {
            family
                .as_ref()
                .and_then(|(_, version, source)| version.map(|m| (m, source.clone())))
        });
    if let Some((nodes, source)) = node_version {
        let lag = supported_lag(control_plane);
        let problem = if nodes > control_plane {
            Some(
                "newer than the control plane: kubelet may not be newer than the API server"
                    .to_string(),
            )
        } else if control_plane - nodes > lag {
            Some(format!(
                "{} minor versions behind the control plane; the supported skew is {lag}",
                control_plane - nodes
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            findings.push(Finding {
                cause: Cause::NodeVersionSkew,
                blocking: true,
                summary: format!(
                    "nodes of {} run Kubernetes 1.{nodes} against a 1.{control_plane} control plane",
                    evidence.nodegroup.name
                ),
                explanation: format!(
                    "The nodes' Kubernetes version is {problem}. Outside the skew policy kubelet's registration \
                     and API calls are not supported and may be refused."
                ),
                evidence: vec![Fact::new(source, format!("Kubernetes 1.{nodes}")), cluster_fact],
                remedy: Some(format!(
                    "aws eks update-nodegroup-version --cluster-name {} --nodegroup-name {} --kubernetes-version 1.{control_plane}",
                    evidence.nodegroup.cluster, evidence.nodegroup.name
                )),
                subject: Subject::Resource {
                    id: evidence.nodegroup.name.clone(),
                },
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_ami_names_are_read() {
        assert_eq!(minor("1.33"), Some(33));
        assert_eq!(minor("1.29.3-20240117"), Some(29));
        assert_eq!(minor("2.0"), None);
        assert_eq!(
            eks_ami_family("amazon-eks-node-1.29-v20240117"),
            Some(("AL2", Some(29)))
        );
        assert_eq!(
            eks_ami_family("amazon-eks-node-al2023-x86_64-standard-1.31-v20241115"),
            Some(("AL2023", Some(31)))
        );
        assert_eq!(
            eks_ami_family("bottlerocket-aws-k8s-1.30-x86_64-v1.20.0-fcf71a47"),
            Some(("BOTTLEROCKET", Some(30)))
        );
        assert_eq!(eks_ami_family("my-golden-image-2025"), None);
    }
}
