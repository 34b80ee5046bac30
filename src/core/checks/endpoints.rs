//! VPC endpoint rules beyond presence: an interface endpoint that does not answer the service's
//! name (private DNS off), and an S3 gateway endpoint whose policy keeps nodes from ECR's layers.

use serde_json::Value;

use super::{Cause, Fact, Finding, PRIVATE_JOIN_SERVICES, Subject};
use crate::core::evidence::{EndpointFacts, Evidence, NetworkFacts, SubnetFacts};
use crate::core::policy_document::{
    action_matches, aws_principals, effect, resource_matches, statements,
};

/// Interface endpoints of a private join's services that are available with private DNS off,
/// when no endpoint of the same service has it on: nodes resolve the public name, which a subnet
/// without a default route cannot reach.
pub fn private_dns_findings(evidence: &Evidence, network: &NetworkFacts) -> Vec<Finding> {
    let region = &evidence.trigger.region;
    let off: Vec<&EndpointFacts> = PRIVATE_JOIN_SERVICES
        .iter()
        .filter_map(|service| {
            let name = format!("com.amazonaws.{region}.{service}");
            let interfaces: Vec<&EndpointFacts> = network
                .endpoints
                .iter()
                .filter(|e| e.service_name == name && e.kind == "Interface")
                .filter(|e| e.state.eq_ignore_ascii_case("available"))
                .collect();
            if interfaces.iter().any(|e| e.private_dns_enabled) {
                None
            } else {
                interfaces.first().copied()
            }
        })
        .collect();
    if off.is_empty() {
        return Vec::new();
    }
    let ids: Vec<&str> = off.iter().map(|e| e.id.as_str()).collect();
    vec![Finding {
        cause: Cause::VpcEndpointPrivateDnsDisabled,
        blocking: true,
        summary: format!("VPC endpoints {} have private DNS turned off", ids.join(", ")),
        explanation: "Without a route to the internet, nodes reach EC2, ECR and STS only through interface endpoints, \
                      and they call them by the services' public names. With private DNS off those names still \
                      resolve to public addresses the subnet cannot reach, so the endpoint might as well not exist."
            .into(),
        evidence: off
            .iter()
            .map(|e| Fact::new(&e.id, format!("{}: PrivateDnsEnabled=false", e.service_name)))
            .collect(),
        remedy: Some(
            ids.iter()
                .map(|id| format!("aws ec2 modify-vpc-endpoint --vpc-endpoint-id {id} --private-dns-enabled"))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        subject: Subject::Endpoints {
            vpc_id: network.vpc.id.clone(),
            endpoint_ids: ids.iter().map(|id| id.to_string()).collect(),
        },
    }]
}

/// What a node fetches from S3 through a gateway endpoint, and whether the join needs it.
struct Bucket {
    object: String,
    what: &'static str,
    blocking: bool,
}

fn buckets(evidence: &Evidence) -> Vec<Bucket> {
    let region = &evidence.trigger.region;
    let mut wanted = vec![Bucket {
        object: format!("arn:aws:s3:::prod-{region}-starport-layer-bucket/layer"),
        what: "ECR image layers",
        blocking: true,
    }];
    let ami_type = evidence.nodegroup.ami_type.as_deref().unwrap_or_default();
    if ami_type.starts_with("AL2023") {
        wanted.push(Bucket {
            object: format!("arn:aws:s3:::al2023-repos-{region}-de612dc2/package"),
            what: "Amazon Linux 2023 package repositories",
            blocking: false,
        });
    } else if ami_type.starts_with("AL2_") {
        wanted.push(Bucket {
            object: format!("arn:aws:s3:::amazonlinux-2-repos-{region}/package"),
            what: "Amazon Linux 2 package repositories",
            blocking: false,
        });
    }
    wanted
}

/// The S3 gateway endpoint a subnet's traffic to S3 takes, and whether its policy lets nodes
/// read what they need. A policy that cannot be read as JSON is left to a human: EC2 validated it.
pub fn s3_policy_findings(
    evidence: &Evidence,
    network: &NetworkFacts,
    subnet: &SubnetFacts,
) -> Vec<Finding> {
    let Some(table) = network.route_table_for(&subnet.id) else {
        return Vec::new();
    };
    let s3 = format!("com.amazonaws.{}.s3", evidence.trigger.region);
    let Some(endpoint) = network.endpoints.iter().find(|e| {
        e.service_name == s3
            && e.kind == "Gateway"
            && e.state.eq_ignore_ascii_case("available")
            && e.route_table_ids.contains(&table.id)
    }) else {
        return Vec::new();
    };
    let Some(policy) = endpoint
        .policy
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
    else {
        return Vec::new();
    };
    let node_role = evidence.nodegroup.node_role.as_deref();
    let refused: Vec<Bucket> = buckets(evidence)
        .into_iter()
        .filter(|bucket| !allows_get_object(&policy, &bucket.object, node_role))
        .collect();
    if refused.is_empty() {
        return Vec::new();
    }
    let blocking = refused.iter().any(|bucket| bucket.blocking);
    let what: Vec<&str> = refused.iter().map(|bucket| bucket.what).collect();
    let resources: Vec<String> = refused
        .iter()
        .map(|bucket| {
            let (bucket_arn, _) = bucket
                .object
                .rsplit_once('/')
                .unwrap_or((&bucket.object, ""));
            format!("{bucket_arn}/*")
        })
        .collect();
    vec![Finding {
        cause: Cause::S3EndpointPolicyBlocksEcr,
        blocking,
        summary: format!(
            "S3 gateway endpoint {} does not allow nodes in subnet {} to read {}",
            endpoint.id,
            subnet.id,
            what.join(" and ")
        ),
        explanation: format!(
            "Route table {} sends the subnet's S3 traffic through gateway endpoint {}, and the endpoint's policy \
             decides which buckets nodes may read. ECR serves image layers from S3, so without s3:GetObject on its \
             layer bucket kubelet cannot pull the pause and CNI images and the node never becomes Ready.",
            table.id, endpoint.id
        ),
        evidence: vec![
            Fact::new(
                &table.id,
                format!("subnet {} uses gateway endpoint {}", subnet.id, endpoint.id),
            ),
            Fact::new(
                &endpoint.id,
                format!("policy allows no s3:GetObject on {}", resources.join(", ")),
            ),
        ],
        remedy: Some(format!(
            "Add to the policy of {}: {{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\",\"Resource\":[{}]}} \
             (aws ec2 modify-vpc-endpoint --vpc-endpoint-id {} --policy-document file://policy.json)",
            endpoint.id,
            resources
                .iter()
                .map(|r| format!("\"{r}\""))
                .collect::<Vec<_>>()
                .join(","),
            endpoint.id
        )),
        subject: Subject::Resource {
            id: endpoint.id.clone(),
        },
    }]
}

/// Whether an endpoint policy lets the nodes `s3:GetObject` an object: an Allow covers it and no
/// unconditional Deny does. Conditions on an Allow are taken to hold (nodemedic cannot evaluate
/// them, and a false alarm on a working policy costs trust); a conditional Deny is not counted.
fn allows_get_object(policy: &Value, object: &str, node_role: Option<&str>) -> bool {
    let Some(statements) = statements(policy) else {
        return true;
    };
    let reaches = |statement: &Value| {
        aws_principals(statement.get("Principal"))
            .iter()
            .any(|p| *p == "*" || Some(*p) == node_role)
    };
    let covers = |statement: &Value| {
        reaches(statement)
            && action_matches(statement, "s3:GetObject")
            && resource_matches(statement, object)
    };
    let denied = statements.iter().any(|statement| {
        effect(statement) == Some("Deny")
            && statement.get("Condition").is_none()
            && covers(statement)
    });
    !denied
        && statements
            .iter()
            .any(|statement| effect(statement) == Some("Allow") && covers(statement))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LAYER: &str = "arn:aws:s3:::prod-us-west-2-starport-layer-bucket/layer";

    #[test]
    fn the_default_full_access_policy_allows_ecr_layers() {
        let full = json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]});
        assert!(allows_get_object(&full, LAYER, None));
    }

    #[test]
    fn a_policy_limited_to_other_buckets_refuses_ecr_layers() {
        let own = json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*",
            "Resource": ["arn:aws:s3:::my-bucket", "arn:aws:s3:::my-bucket/*"]}]});
        assert!(!allows_get_object(&own, LAYER, None));
    }

    #[test]
    fn a_deny_wins_over_an_allow_and_the_node_role_counts_as_principal() {
        let denied = json!({"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::prod-*/*"}]});
        assert!(!allows_get_object(&denied, LAYER, None));
        let role = "arn:aws:iam::1:role/nodes";
        let for_role = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": role},
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::prod-us-west-2-starport-layer-bucket/*"}});
        assert!(allows_get_object(&for_role, LAYER, Some(role)));
        assert!(!allows_get_object(
            &for_role,
            LAYER,
            Some("arn:aws:iam::1:role/other")
        ));
    }
}
