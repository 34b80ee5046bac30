//! The node role's trust policy: EC2 must be allowed to assume it, without a condition that
//! cannot hold for a service (an organization or principal-account condition, NJ60).

use serde_json::Value;

use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{Evidence, IdentityFacts, RoleLookup};
use crate::core::policy_document::{action_matches, effect, principals_of_kind, statements};

const EC2: &str = "ec2.amazonaws.com";
pub const EKS: &str = "eks.amazonaws.com";

/// Condition keys about the calling principal's identity: EC2 assuming a role is a service, not
/// a principal of an account or organization, so they never hold.
const PRINCIPAL_KEYS: [&str; 5] = [
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:principaltag/",
];

/// What a trust policy says about a service.
#[derive(Debug, PartialEq, Eq)]
pub enum ServiceTrust {
    Allowed,
    Denied,
    NotNamed,
    /// Allowed only under a condition that cannot hold: the condition's key.
    OnlyIf(String),
}

fn names(statement: &Value, service: &str) -> bool {
    principals_of_kind(statement.get("Principal"), "Service")
        .iter()
        .any(|named| *named == "*" || named.eq_ignore_ascii_case(service))
}

fn impossible_condition(statement: &Value) -> Option<String> {
    let operators = statement.get("Condition")?.as_object()?;
    operators
        .values()
        .filter_map(Value::as_object)
        .flat_map(|keys| keys.keys())
        .find(|key| {
            let key = key.to_ascii_lowercase();
            PRINCIPAL_KEYS.iter().any(|p| key.starts_with(p))
        })
        .cloned()
}

/// Whether a trust policy lets `service` assume the role.
pub fn service_trust(document: &Value, service: &str) -> ServiceTrust {
    let about_ec2: Vec<&Value> = statements(document)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| names(s, service) && action_matches(s, "sts:AssumeRole"))
        .collect();
    if about_ec2
        .iter()
        .any(|s| effect(s) == Some("Deny") && s.get("Condition").is_none())
    {
        return ServiceTrust::Denied;
    }
    let allows: Vec<&Value> = about_ec2
        .into_iter()
        .filter(|s| effect(s) == Some("Allow"))
        .collect();
    if allows.iter().any(|s| impossible_condition(s).is_none()) {
        return ServiceTrust::Allowed;
    }
    match allows.first().and_then(|s| impossible_condition(s)) {
        Some(key) => ServiceTrust::OnlyIf(key),
        None => ServiceTrust::NotNamed,
    }
}

pub fn findings(evidence: &Evidence, identity: &IdentityFacts) -> Vec<Finding> {
    let RoleLookup::Found {
        name,
        trust_policy: Some(text),
        ..
    } = &identity.role
    else {
        return Vec::new();
    };
    let Ok(document) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let why = match service_trust(&document, EC2) {
        ServiceTrust::Allowed => return Vec::new(),
        ServiceTrust::Denied => "denies ec2.amazonaws.com sts:AssumeRole".to_string(),
        ServiceTrust::NotNamed => "does not let ec2.amazonaws.com assume it".to_string(),
        ServiceTrust::OnlyIf(key) => format!(
            "lets ec2.amazonaws.com assume it only under condition {key}, which never holds for a service"
        ),
    };
    vec![Finding {
        cause: Cause::NodeRoleTrustInvalid,
        blocking: true,
        summary: format!("node role {name}'s trust policy {why}"),
        explanation: format!(
            "An instance gets its credentials by EC2 assuming the node role on its behalf. Role {name}'s trust policy \
             {why}, so instances of nodegroup {} start without credentials and cannot call EKS, EC2 or ECR to join.",
            evidence.nodegroup.name
        ),
        evidence: vec![Fact::new(
            &identity.node_role_arn,
            format!("AssumeRolePolicyDocument: {text}"),
        )],
        remedy: Some(format!(
            "aws iam update-assume-role-policy --role-name {name} --policy-document \
             '{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Principal\":{{\"Service\":\"{EC2}\"}},\"Action\":\"sts:AssumeRole\"}}]}}'"
        )),
        subject: Subject::Resource {
            id: identity.node_role_arn.clone(),
        },
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ec2_must_be_allowed_without_a_principal_condition() {
        let allow = |condition: Value| {
            json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": ["ec2.amazonaws.com"]},
                "Action": "sts:AssumeRole", "Condition": condition}]})
        };
        let plain = json!({"Statement": {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole"}});
        assert_eq!(service_trust(&plain, EC2), ServiceTrust::Allowed);
        assert_eq!(
            service_trust(
                &allow(json!({"StringEquals": {"aws:PrincipalOrgID": "o-abc"}})),
                EC2
            ),
            ServiceTrust::OnlyIf("aws:PrincipalOrgID".into())
        );
        assert_eq!(
            service_trust(
                &allow(json!({"StringEquals": {"aws:SourceAccount": "123456789012"}})),
                EC2
            ),
            ServiceTrust::Allowed,
            "a source condition is the service's to satisfy"
        );
        let lambda = json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]});
        assert_eq!(service_trust(&lambda, EC2), ServiceTrust::NotNamed);
        let denied = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"},
            {"Effect": "Deny", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:*"}]});
        assert_eq!(service_trust(&denied, EC2), ServiceTrust::Denied);
    }
}
