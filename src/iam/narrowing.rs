//! What the JSON policy (IRSA, member roles) adds to narrow itself beyond the template's: the
//! partition of every ARN, mutations only on resources of the principal's own account, access
//! entries only of the node type, and, for teams that keep an allow list, only on resources
//! tagged for nodemedic.

use serde_json::{Map, Value, json};

/// The tag a team puts on the resources nodemedic may change, with `iam-policy --managed-tag`.
pub const MANAGED_TAG: &str = "nodemedic.io/managed";

/// Rewrites every `arn:aws:` of `document` into `partition`'s (GovCloud `aws-us-gov`, China
/// `aws-cn`).
pub fn in_partition(document: &mut Value, partition: &str) {
    if partition == "aws" {
        return;
    }
    match document {
        Value::String(text) => {
            if let Some(rest) = text.strip_prefix("arn:aws:") {
                *text = format!("arn:{partition}:{rest}");
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| in_partition(item, partition)),
        Value::Object(fields) => fields
            .values_mut()
            .for_each(|value| in_partition(value, partition)),
        _ => {}
    }
}

/// Narrows a mutating Allow statement: the resource must belong to the account of the
/// principal using the policy (a policy variable, so one document serves every member account),
/// a new access entry must be of type EC2_LINUX, and with `managed_tag` the resource must carry
/// `nodemedic.io/managed=true`.
pub fn narrow_mutation(statement: &mut Value, managed_tag: bool) {
    let creates_entries = statement["Action"]
        .as_array()
        .is_some_and(|actions| actions.iter().any(|a| a == "eks:CreateAccessEntry"));
    let condition = statement
        .as_object_mut()
        .map(|fields| fields.entry("Condition").or_insert_with(|| json!({})));
    let Some(Value::Object(condition)) = condition else {
        return;
    };
    let equals = string_equals(condition);
    equals.insert(
        "aws:ResourceAccount".into(),
        json!("${aws:PrincipalAccount}"),
    );
    if creates_entries {
        // Only the access entry a node needs: never one that grants a person the cluster.
        equals.insert("eks:accessEntryType".into(), json!("EC2_LINUX"));
    }
    if managed_tag {
        equals.insert(format!("aws:ResourceTag/{MANAGED_TAG}"), json!("true"));
    }
}

fn string_equals(condition: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let entry = condition.entry("StringEquals").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("an object was just put there")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Value {
        json!({"Statement": [
            {"Sid": "ReadEc2", "Effect": "Allow", "Action": ["ec2:DescribeRouteTables"], "Resource": ["*"]},
            {"Sid": "FixRoute", "Effect": "Allow", "Action": ["ec2:CreateRoute"], "Resource": ["arn:aws:ec2:*:*:route-table/*"]},
            {"Sid": "FixAccessEntry", "Effect": "Allow", "Action": ["eks:CreateAccessEntry", "eks:DeleteAccessEntry"],
             "Resource": ["arn:aws:eks:*:*:cluster/*"]},
            {"Sid": "FixNodeRolePolicy", "Effect": "Allow", "Action": ["iam:AttachRolePolicy"], "Resource": ["arn:aws:iam::*:role/*"],
             "Condition": {"ArnEquals": {"iam:PolicyARN": ["arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"]}}},
            {"Sid": "HonourIgnoreTag", "Effect": "Deny", "Action": ["ec2:CreateRoute"], "Resource": ["*"]}
        ]})
    }

    #[test]
    fn every_arn_takes_the_partition() {
        let mut policy = document();
        in_partition(&mut policy, "aws-us-gov");
        let text = policy.to_string();
        assert!(!text.contains("arn:aws:"), "{text}");
        assert!(text.contains("arn:aws-us-gov:iam::aws:policy/AmazonEKSWorkerNodePolicy"));
        assert!(text.contains("arn:aws-us-gov:ec2:*:*:route-table/*"));
    }

    #[test]
    fn mutations_are_narrowed_to_the_principals_account_and_node_entries() {
        let mut policy = document();
        for statement in policy["Statement"].as_array_mut().unwrap()[1..4].iter_mut() {
            narrow_mutation(statement, false);
        }
        let statements = policy["Statement"].as_array().unwrap();
        assert!(
            statements[0].get("Condition").is_none(),
            "reads are left alone"
        );
        assert_eq!(
            statements[1]["Condition"]["StringEquals"]["aws:ResourceAccount"],
            "${aws:PrincipalAccount}"
        );
        assert_eq!(
            statements[2]["Condition"]["StringEquals"]["eks:accessEntryType"],
            "EC2_LINUX"
        );
        assert!(
            statements[1]["Condition"]["StringEquals"]
                .get("eks:accessEntryType")
                .is_none()
        );
        assert_eq!(
            statements[3]["Condition"]["ArnEquals"]["iam:PolicyARN"][0],
            "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
            "an existing condition is kept"
        );
        assert!(!policy.to_string().contains(MANAGED_TAG));
        narrow_mutation(&mut policy["Statement"][1], true);
        assert_eq!(
            policy["Statement"][1]["Condition"]["StringEquals"]["aws:ResourceTag/nodemedic.io/managed"],
            "true"
        );
    }
}
