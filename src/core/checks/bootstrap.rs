//! A custom AMI's user data, read as EC2 and cloud-init would (MIME multipart, a script, or a
//! nodeadm NodeConfig), and the rules on it: the bootstrap that matches the AMI family, names
//! this cluster, carries what a private cluster or nodeadm needs, and fits EC2's 16 KiB.

use mail_parser::MimeHeaders;
use serde_yaml::Value as Yaml;

use super::versions::eks_ami_family;
use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{Evidence, ImageLookup, LaunchTemplateFacts};

/// EC2 refuses user data larger than this (before base64).
pub const USER_DATA_MAX_BYTES: usize = 16 * 1024;

/// How user data bootstraps the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// An AL2 `/etc/eks/bootstrap.sh` call: its cluster argument (unless a shell variable) and
    /// whether it passes the endpoint and CA a private cluster needs.
    Script {
        cluster: Option<String>,
        apiserver_endpoint: bool,
        cluster_ca: bool,
    },
    /// An AL2023 nodeadm NodeConfig: `spec.cluster`'s fields.
    NodeConfig {
        name: Option<String>,
        api_server_endpoint: bool,
        certificate_authority: bool,
        cidr: bool,
    },
}

/// One part of user data: its content type and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub content_type: String,
    pub body: String,
}

/// The parts of user data: a MIME multipart document's parts (transfer encodings undone), or the
/// whole text as one part.
pub fn parts(text: &str) -> Vec<Part> {
    let looks_mime = text.lines().take(5).any(|line| {
        line.to_ascii_lowercase()
            .starts_with("content-type: multipart/")
    });
    if looks_mime
        && let Some(message) = mail_parser::MessageParser::default().parse(text.as_bytes())
    {
        let found: Vec<Part> = message
            .parts
            .iter()
            .filter(|part| !part.is_multipart())
            .map(|part| Part {
                content_type: part
                    .content_type()
                    .map(|ct| match ct.subtype() {
                        Some(sub) => format!("{}/{sub}", ct.ctype()),
                        None => ct.ctype().to_string(),
                    })
                    .unwrap_or_else(|| "text/plain".into()),
                body: String::from_utf8_lossy(part.contents()).into_owned(),
            })
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    vec![Part {
        content_type: "text/plain".into(),
        body: text.to_string(),
    }]
}

/// Every bootstrap the user data's parts perform.
pub fn bootstraps(text: &str) -> Vec<Bootstrap> {
    let mut found = Vec::new();
    for part in parts(text) {
        if part
            .content_type
            .eq_ignore_ascii_case("application/node.eks.aws")
            || part.body.contains("kind: NodeConfig")
        {
            found.extend(node_configs(&part.body));
        }
        found.extend(script_calls(&part.body));
    }
    found
}

fn script_calls(body: &str) -> Vec<Bootstrap> {
    body.lines()
        .filter(|line| !line.trim_start().starts_with('#') && line.contains("bootstrap.sh"))
        .filter_map(|line| shell_words::split(line).ok())
        .filter_map(|words| {
            let at = words.iter().position(|w| w.ends_with("bootstrap.sh"))?;
            let args = &words[at + 1..];
            let cluster = args
                .first()
                .filter(|a| !a.starts_with('-') && !a.contains('$'))
                .cloned();
            let has = |flag: &str| {
                args.iter()
                    .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
            };
            Some(Bootstrap::Script {
                cluster,
                apiserver_endpoint: has("--apiserver-endpoint"),
                cluster_ca: has("--b64-cluster-ca"),
            })
        })
        .collect()
}

fn node_configs(body: &str) -> Vec<Bootstrap> {
    serde_yaml::Deserializer::from_str(body)
        .filter_map(|document| serde::Deserialize::deserialize(document).ok())
        .filter(|doc: &Yaml| doc.get("kind").and_then(Yaml::as_str) == Some("NodeConfig"))
        .map(|doc| {
            let cluster = doc.get("spec").and_then(|s| s.get("cluster"));
            let field = |name: &str| {
                cluster
                    .and_then(|c| c.get(name))
                    .and_then(Yaml::as_str)
                    .filter(|v| !v.trim().is_empty())
            };
            Bootstrap::NodeConfig {
                name: field("name").map(str::to_string),
                api_server_endpoint: field("apiServerEndpoint").is_some(),
                certificate_authority: field("certificateAuthority").is_some(),
                cidr: field("cidr").is_some(),
            }
        })
        .collect()
}

pub fn findings(evidence: &Evidence) -> Vec<Finding> {
    let Some(template) = evidence.launch_template_facts() else {
        return Vec::new();
    };
    let name = format!(
        "launch template {} version {}",
        template.id, template.version
    );
    let finding =
        |cause: Cause, summary: String, explanation: String, observed: String, remedy: String| {
            Finding {
                cause,
                blocking: true,
                summary,
                explanation,
                evidence: vec![Fact::new(&name, observed)],
                remedy: Some(remedy),
                subject: Subject::Resource {
                    id: template.id.clone(),
                },
            }
        };
    let mut found = Vec::new();
    if let Some(bytes) = template.user_data_bytes
        && bytes > USER_DATA_MAX_BYTES
    {
        found.push(finding(
            Cause::UserDataTooLarge,
            format!("{name} has {bytes} bytes of user data; EC2 takes at most {USER_DATA_MAX_BYTES}"),
            "EC2 refuses to launch an instance whose user data is larger than 16 KiB, so every launch from this \
             template fails."
                .into(),
            format!("user data: {bytes} bytes"),
            "Keep user data small: download the rest from S3 at boot, or gzip it (cloud-init reads gzip)".into(),
        ));
    }
    let (Some(image_id), Some(text)) = (&template.image_id, &template.user_data) else {
        return found;
    };
    let family = match &evidence.image {
        Some(ImageLookup::Found {
            name: Some(ami), ..
        }) => eks_ami_family(ami).map(|(f, _)| f),
        _ => None,
    };
    found.extend(custom_ami_findings(
        evidence, template, image_id, family, text, &finding,
    ));
    found
}

type MakeFinding<'a> = dyn Fn(Cause, String, String, String, String) -> Finding + 'a;

fn custom_ami_findings(
    evidence: &Evidence,
    template: &LaunchTemplateFacts,
    image_id: &str,
    family: Option<&str>,
    text: &str,
    finding: &MakeFinding,
) -> Vec<Finding> {
    let cluster = &evidence.nodegroup.cluster;
    let calls = bootstraps(text);
    let scripts = calls.iter().any(|b| matches!(b, Bootstrap::Script { .. }));
    let configs = calls
        .iter()
        .any(|b| matches!(b, Bootstrap::NodeConfig { .. }));
    let mut found = Vec::new();
    let mismatch = match family {
        Some("AL2023") if scripts && !configs => Some(
            "an AL2023 AMI, whose nodeadm reads a NodeConfig, and user data that calls bootstrap.sh, which AL2023 does not have",
        ),
        Some("AL2") if configs && !scripts => Some(
            "an AL2 AMI, which runs /etc/eks/bootstrap.sh, and user data with only a nodeadm NodeConfig",
        ),
        _ => None,
    };
    if let Some(why) = mismatch {
        found.push(finding(
            Cause::UserDataFormatMismatch,
            format!("custom AMI {image_id} and its user data are for different AMI families"),
            format!("Launch template {} pairs {why}; the node never starts kubelet.", template.id),
            format!("AMI family {}, user data {}", family.unwrap_or("?"), if scripts { "calls bootstrap.sh" } else { "holds a NodeConfig" }),
            match family {
                Some("AL2023") => format!("Replace the bootstrap.sh call with a MIME part of type application/node.eks.aws holding a NodeConfig (spec.cluster.name {cluster}, apiServerEndpoint, certificateAuthority, cidr)"),
                _ => format!("Call /etc/eks/bootstrap.sh {cluster} in the user data, or use an AL2023 AMI"),
            },
        ));
        return found;
    }
    for call in &calls {
        let named = match call {
            Bootstrap::Script { cluster: named, .. } => named,
            Bootstrap::NodeConfig { name: named, .. } => named,
        };
        if let Some(named) = named
            && named != cluster
        {
            found.push(finding(
                Cause::BootstrapClusterNameMismatch,
                format!("the user data of {} bootstraps nodes into cluster {named}, not {cluster}", template.id),
                format!("Kubelet registers with the cluster its bootstrap names. Cluster {named} is not {cluster} (names are case-sensitive), so the nodes never appear in {cluster}."),
                format!("bootstrap names cluster {named}"),
                format!("Name cluster {cluster} in the user data of a new version of {}", template.id),
            ));
        }
        let private_only = evidence
            .cluster
            .as_ref()
            .is_some_and(|c| c.is_private_only());
        let missing: Vec<&str> = match call {
            Bootstrap::Script {
                apiserver_endpoint,
                cluster_ca,
                ..
            } if private_only => [
                (!apiserver_endpoint, "--apiserver-endpoint"),
                (!cluster_ca, "--b64-cluster-ca"),
            ]
            .into_iter()
            .filter_map(|(gone, flag)| gone.then_some(flag))
            .collect(),
            Bootstrap::NodeConfig {
                api_server_endpoint,
                certificate_authority,
                cidr,
                ..
            } => [
                (!api_server_endpoint, "apiServerEndpoint"),
                (!certificate_authority, "certificateAuthority"),
                (!cidr, "cidr"),
            ]
            .into_iter()
            .filter_map(|(gone, field)| gone.then_some(field))
            .collect(),
            Bootstrap::Script { .. } => Vec::new(),
        };
        if !missing.is_empty() {
            let nodeadm = matches!(call, Bootstrap::NodeConfig { .. });
            found.push(finding(
                Cause::BootstrapArgsMissing,
                format!("the bootstrap in {} lacks {}", template.id, missing.join(", ")),
                if nodeadm {
                    "nodeadm refuses a NodeConfig whose spec.cluster lacks apiServerEndpoint, certificateAuthority or cidr: it does not look them up.".into()
                } else {
                    "The cluster endpoint is private only, and bootstrap.sh without the endpoint and CA calls DescribeCluster, which a node without a route to the public EKS API cannot reach.".into()
                },
                format!("missing {}", missing.join(", ")),
                format!("aws eks describe-cluster --name {cluster} --query 'cluster.{{endpoint:endpoint,ca:certificateAuthority.data,cidr:kubernetesNetworkConfig.serviceIpv4Cidr}}', and pass them in the user data"),
            ));
        }
    }
    found
}
