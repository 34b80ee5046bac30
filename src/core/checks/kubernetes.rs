//! What the cluster's own API shows about the nodegroup's nodes: instances that never registered
//! a Node, Nodes that are not Ready, the aws-auth mapping of the node role, denied kubelet CSRs
//! and taints the aws-node DaemonSet does not tolerate.

use super::{Cause, Fact, Finding, Subject};
use crate::core::boot_log::quote;
use crate::core::evidence::{
    AccessEntryLookup, ClusterObjects, ClusterView, Evidence, ProfileLookup,
};

/// At most this many instances, nodes or CSRs are quoted in one finding.
const MAX_QUOTED: usize = 10;

pub fn findings(evidence: &Evidence) -> Vec<Finding> {
    let Some(ClusterView::Seen(objects)) = &evidence.kubernetes else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    findings.extend(aws_auth(evidence, objects));
    findings.extend(untolerated_taints(evidence, objects));
    findings.extend(denied_csrs(evidence, objects));
    findings.extend(not_registered(evidence, objects));
    findings.extend(not_ready(evidence, objects));
    findings
}

/// The cluster's authentication mode; a cluster that reports none predates access entries.
pub(super) fn authentication_mode(evidence: &Evidence) -> &str {
    evidence
        .cluster
        .as_ref()
        .and_then(|c| c.authentication_mode.as_deref())
        .unwrap_or("CONFIG_MAP")
}

/// The role ARN the authenticator compares with mapRoles: a session's role, without its path.
pub(super) fn pathless_role_arn(role_arn: &str) -> String {
    match role_arn.split_once(":role/") {
        Some((prefix, path_and_name)) => {
            let name = path_and_name.rsplit('/').next().unwrap_or(path_and_name);
            format!("{prefix}:role/{name}")
        }
        None => role_arn.to_string(),
    }
}

/// How aws-auth's mapRoles treats the node role.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Mapping {
    /// Mapped by its pathless ARN to both node groups.
    Admitted,
    /// Mapped by its pathless ARN, but without `system:bootstrappers` and `system:nodes`.
    MissingGroups(Vec<String>),
    /// Named only by an ARN the authenticator never matches: with a path, or an instance profile.
    Unmatchable(String),
    Absent,
    Malformed(String),
}

pub(super) fn mapping(evidence: &Evidence, objects: &ClusterObjects, role_arn: &str) -> Mapping {
    let Some(text) = objects
        .aws_auth
        .as_ref()
        .and_then(|a| a.map_roles.as_deref())
    else {
        return Mapping::Absent;
    };
    let entries = match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(serde_yaml::Value::Null) => return Mapping::Absent,
        Ok(serde_yaml::Value::Sequence(entries)) => entries,
        Ok(_) => return Mapping::Malformed("mapRoles is not a list".into()),
        Err(error) => return Mapping::Malformed(quote(&error.to_string())),
    };
    if entries.iter().any(|entry| !entry.is_mapping()) {
        return Mapping::Malformed("an entry of mapRoles is not a mapping".into());
    }
    let canonical = pathless_role_arn(role_arn);
    let role_name = canonical.rsplit('/').next().unwrap_or_default();
    let profile_name = evidence
        .identity
        .as_ref()
        .and_then(|i| match &i.instance_profile {
            Some(ProfileLookup::Found { name, .. }) => Some(name.as_str()),
            _ => None,
        });
    let mut unmatchable = None;
    let mut missing_groups = None;
    for entry in &entries {
        let Some(arn) = entry.get("rolearn").and_then(|v| v.as_str()) else {
            continue;
        };
        if arn.eq_ignore_ascii_case(&canonical) {
            let groups: Vec<String> = entry
                .get("groups")
                .and_then(|g| g.as_sequence())
                .map(|g| {
                    g.iter()
                        .filter_map(|v| v.as_str())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if ["system:bootstrappers", "system:nodes"]
                .iter()
                .all(|needed| groups.iter().any(|g| g == needed))
            {
                return Mapping::Admitted;
            }
            missing_groups = Some(groups);
            continue;
        }
        let last = arn.rsplit('/').next().unwrap_or_default();
        let names_role = arn.contains(":role/") && last.eq_ignore_ascii_case(role_name);
        let names_profile = arn.contains(":instance-profile/")
            && (last.eq_ignore_ascii_case(role_name) || Some(last) == profile_name);
        if names_role || names_profile {
            unmatchable = Some(arn.to_string());
        }
    }
    match (missing_groups, unmatchable) {
        (_, Some(arn)) => Mapping::Unmatchable(arn),
        (Some(groups), None) => Mapping::MissingGroups(groups),
        (None, None) => Mapping::Absent,
    }
}

fn aws_auth(evidence: &Evidence, objects: &ClusterObjects) -> Vec<Finding> {
    let mode = authentication_mode(evidence);
    let Some(role_arn) = evidence.nodegroup.node_role.as_deref() else {
        return Vec::new();
    };
    if mode == "API" {
        return Vec::new();
    }
    let access_entry = evidence.identity.as_ref().map(|i| &i.access_entry);
    let admitted_by_entry =
        matches!(access_entry, Some(AccessEntryLookup::Present { kind }) if kind == "EC2_LINUX");
    let cluster = &evidence.nodegroup.cluster;
    let configmap = "configmap kube-system/aws-auth".to_string();
    let finding = |cause, summary: String, explanation: String, observed: String| Finding {
        cause,
        blocking: !admitted_by_entry,
        summary,
        explanation,
        evidence: vec![
            Fact::new(
                format!("cluster {cluster}"),
                format!("accessConfig.authenticationMode={mode}"),
            ),
            Fact::new(configmap.clone(), observed),
        ],
        remedy: None,
        subject: Subject::Resource {
            id: "kube-system/aws-auth".into(),
        },
    };
    match mapping(evidence, objects, role_arn) {
        Mapping::Admitted => Vec::new(),
        Mapping::Malformed(error) => vec![finding(
            Cause::AwsAuthMalformed,
            "aws-auth's mapRoles cannot be parsed, so the cluster maps no role at all".into(),
            "The authenticator keeps no role mapping when mapRoles is not a YAML list of mappings: every node \
             (and every role mapped there) is Unauthorized."
                .into(),
            format!("data.mapRoles: {error}"),
        )],
        Mapping::Unmatchable(arn) => vec![finding(
            Cause::AwsAuthRoleArnHasPath,
            format!("aws-auth maps the node role as {arn}, which the authenticator never matches"),
            format!(
                "The authenticator compares mapRoles with the node's role ARN without its path ({}); an entry \
                 with the role's path or an instance-profile ARN never matches, so kubelet is Unauthorized.",
                pathless_role_arn(role_arn)
            ),
            format!("mapRoles names {}", quote(&arn)),
        )],
        Mapping::MissingGroups(_) | Mapping::Absent if admitted_by_entry => Vec::new(),
        missing => {
            if mode == "API_AND_CONFIG_MAP"
                && !matches!(access_entry, Some(AccessEntryLookup::Absent | AccessEntryLookup::Present { .. }))
            {
                // Without the access entries read, a missing mapping proves nothing.
                return Vec::new();
            }
            let observed = match &missing {
                Mapping::MissingGroups(groups) => format!(
                    "maps {} to groups [{}], not system:bootstrappers and system:nodes",
                    pathless_role_arn(role_arn),
                    quote(&groups.join(", "))
                ),
                _ if objects.aws_auth.is_none() => "does not exist".into(),
                _ => format!("mapRoles has no entry for {}", pathless_role_arn(role_arn)),
            };
            let mut found = finding(
                Cause::AwsAuthMissingNodeRole,
                format!("the node role is not mapped in aws-auth and has no EC2_LINUX access entry in cluster {cluster}"),
                format!(
                    "Cluster {cluster} admits nodes through the aws-auth ConfigMap{}. Neither maps {role_arn} to \
                     system:bootstrappers and system:nodes, so kubelet's credentials are Unauthorized and the node \
                     never registers.",
                    if mode == "API_AND_CONFIG_MAP" { " and access entries" } else { "" }
                ),
                observed,
            );
            if mode == "API_AND_CONFIG_MAP" {
                found
                    .evidence
                    .push(Fact::new(role_arn, "DescribeAccessEntry: no EC2_LINUX access entry"));
                found.remedy = Some(format!(
                    "aws eks create-access-entry --cluster-name {cluster} --principal-arn {role_arn} --type EC2_LINUX"
                ));
                found.subject = Subject::AccessEntry {
                    cluster: cluster.clone(),
                    principal_arn: role_arn.to_string(),
                };
            } else {
                found.remedy = Some(format!(
                    "eksctl create iamidentitymapping --cluster {cluster} --arn {} --group system:bootstrappers \
                     --group system:nodes --username 'system:node:{{{{EC2PrivateDNSName}}}}'",
                    pathless_role_arn(role_arn)
                ));
            }
            vec![found]
        }
    }
}

fn untolerated_taints(evidence: &Evidence, objects: &ClusterObjects) -> Vec<Finding> {
    let Some(aws_node) = &objects.aws_node else {
        return Vec::new();
    };
    let untolerated: Vec<String> = evidence
        .nodegroup
        .taints
        .iter()
        .filter(|taint| matches!(taint.effect.as_str(), "NO_SCHEDULE" | "NO_EXECUTE"))
        .filter(|taint| !aws_node.tolerations.iter().any(|t| taint.tolerated_by(t)))
        .map(|taint| {
            format!(
                "{}={}:{}",
                taint.key,
                taint.value.as_deref().unwrap_or_default(),
                taint.kubernetes_effect()
            )
        })
        .collect();
    if untolerated.is_empty() {
        return Vec::new();
    }
    vec![Finding {
        cause: Cause::AwsNodeTaintNotTolerated,
        blocking: true,
        summary: format!(
            "aws-node does not tolerate the taint(s) {} of nodegroup {}",
            untolerated.join(", "),
            evidence.nodegroup.name
        ),
        explanation: "The VPC CNI runs as the aws-node DaemonSet. On a node whose taints it does not tolerate it \
                      never starts, the CNI is never initialized, and the node stays NotReady."
            .into(),
        evidence: vec![
            Fact::new(
                format!("nodegroup {}", evidence.nodegroup.name),
                format!("taints {}", untolerated.join(", ")),
            ),
            Fact::new(
                format!("daemonset kube-system/{}", aws_node.name),
                format!("{} toleration(s), none matching", aws_node.tolerations.len()),
            ),
        ],
        remedy: None,
        subject: Subject::Resource {
            id: format!("kube-system/{}", aws_node.name),
        },
    }]
}

fn denied_csrs(evidence: &Evidence, objects: &ClusterObjects) -> Vec<Finding> {
    let requesters = node_names(objects);
    let denied: Vec<Fact> = objects
        .csrs
        .iter()
        .filter(|csr| {
            csr.username
                .strip_prefix("system:node:")
                .is_some_and(|name| requesters.iter().any(|n| n == name))
        })
        .filter_map(|csr| {
            let condition = csr
                .conditions
                .iter()
                .find(|c| matches!(c.kind.as_str(), "Denied" | "Failed") && c.status == "True")?;
            Some(Fact::new(
                format!("csr {}", quote(&csr.name)),
                format!(
                    "{} by {} ({}): {} {}",
                    condition.kind,
                    quote(&csr.username),
                    quote(&csr.signer),
                    quote(condition.reason.as_deref().unwrap_or_default()),
                    quote(condition.message.as_deref().unwrap_or_default())
                ),
            ))
        })
        .take(MAX_QUOTED)
        .collect();
    if denied.is_empty() {
        return Vec::new();
    }
    vec![Finding {
        cause: Cause::NodeCsrDenied,
        blocking: true,
        summary: format!(
            "{} kubelet certificate request(s) of nodegroup {} denied or failed",
            denied.len(),
            evidence.nodegroup.name
        ),
        explanation: "kubelet asks the cluster to sign its certificates. A denied or failed request leaves the node \
                      without its serving certificate (no logs, exec or metrics) or, for a client certificate, \
                      unable to talk to the API server."
            .into(),
        evidence: denied,
        remedy: None,
        subject: Subject::Resource {
            id: format!("nodegroup {}", evidence.nodegroup.name),
        },
    }]
}

/// The names a node of this nodegroup registers, or would register, under.
fn node_names(objects: &ClusterObjects) -> Vec<String> {
    let mut names: Vec<String> = objects.nodes.iter().map(|n| n.name.clone()).collect();
    for instance in &objects.instances {
        names.extend(instance.private_dns_name.iter().cloned());
        names.push(instance.id.clone());
    }
    names
}

fn not_registered(evidence: &Evidence, objects: &ClusterObjects) -> Vec<Finding> {
    let missing = objects.unregistered();
    let Some(first) = missing.first() else {
        return Vec::new();
    };
    let evidence_facts = missing
        .iter()
        .take(MAX_QUOTED)
        .map(|instance| {
            let since = instance
                .launched_at
                .map(|at| (objects.read_at - at).whole_seconds())
                .unwrap_or_default();
            Fact::new(
                format!("instance {}", instance.id),
                format!(
                    "running for {since} s (join deadline {} s); no Node has providerID {}",
                    objects.join_deadline_secs,
                    instance
                        .provider_id()
                        .unwrap_or_else(|| format!("aws:///?/{}", instance.id))
                ),
            )
        })
        .collect();
    vec![Finding {
        cause: Cause::NodeNotRegistered,
        blocking: true,
        summary: format!(
            "{} instance(s) of nodegroup {} ran past the join deadline without registering a Node",
            missing.len(),
            evidence.nodegroup.name
        ),
        explanation: "The instance runs, but kubelet never registered it with the cluster. The other checks of \
                      this incident (identity, network, the boot log) say why."
            .into(),
        evidence: evidence_facts,
        remedy: Some(format!(
            "kubectl get nodes -l eks.amazonaws.com/nodegroup={}; aws ec2 get-console-output --instance-id {} --latest",
            evidence.nodegroup.name, first.id
        )),
        subject: Subject::Resource {
            id: first.id.clone(),
        },
    }]
}

fn not_ready(evidence: &Evidence, objects: &ClusterObjects) -> Vec<Finding> {
    let facts: Vec<Fact> = objects
        .nodes
        .iter()
        .filter(|node| !node.is_ready())
        .take(MAX_QUOTED)
        .map(|node| {
            let observed = match &node.ready {
                Some(ready) => format!(
                    "Ready={} {}: {}",
                    quote(&ready.status),
                    quote(ready.reason.as_deref().unwrap_or_default()),
                    quote(ready.message.as_deref().unwrap_or_default())
                ),
                None => "no Ready condition yet".into(),
            };
            Fact::new(format!("node {}", quote(&node.name)), observed)
        })
        .collect();
    let Some(first) = facts.first() else {
        return Vec::new();
    };
    vec![Finding {
        cause: Cause::NodeNotReady,
        blocking: true,
        summary: format!(
            "{} node(s) of nodegroup {} registered but are not Ready: {}",
            facts.len(),
            evidence.nodegroup.name,
            first.observed
        ),
        explanation: "kubelet registered the node, but it reports it cannot run pods. The condition's message \
                      says why: most often the CNI (aws-node) has not started."
            .into(),
        remedy: Some(format!(
            "kubectl describe node {}; kubectl -n kube-system get pods -l k8s-app=aws-node -o wide",
            first.resource.trim_start_matches("node ")
        )),
        subject: Subject::Resource {
            id: first.resource.clone(),
        },
        evidence: facts,
    }]
}
