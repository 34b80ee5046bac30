//! Condition blocks of key-policy statements, evaluated against what is known of the requests EC2
//! makes to KMS on behalf of the Auto Scaling service-linked role when it launches an encrypted
//! volume. A key nodemedic cannot know the value of, or an operator it does not read, makes the
//! condition undecided: never met, never failed.

use serde_json::Value;

use crate::core::policy_document::{as_list, wildcard_matches};

/// Whether a condition block holds for the launch's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Truth {
    Met,
    NotMet,
    /// Why the evaluator cannot tell.
    Unknown(String),
}

/// Who calls KMS, where, for which operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The Auto Scaling service-linked role.
    pub role_arn: &'a str,
    /// The key's region: EC2 in that region makes the calls.
    pub region: &'a str,
}

impl<'a> Caller<'a> {
    /// The caller of a key, its region read from the key's ARN.
    pub fn for_key(role_arn: &'a str, key_arn: &'a str) -> Self {
        Caller {
            role_arn,
            region: key_arn.split(':').nth(3).unwrap_or_default(),
        }
    }

    fn account(&self) -> &'a str {
        self.role_arn.split(':').nth(4).unwrap_or_default()
    }

    /// The value of a global or KMS condition key in the request for `operation`: `Ok(None)`
    /// when the request carries no such key, `Err` when nodemedic cannot know it.
    fn value(&self, key: &str, operation: &str) -> Result<Option<String>, String> {
        match key.to_ascii_lowercase().as_str() {
            // EBS calls KMS through EC2, as the role, in the key's region: the shape of the
            // `aws/ebs` key policy, whose conditions these launches meet.
            "kms:viaservice" if !self.region.is_empty() => {
                Ok(Some(format!("ec2.{}.amazonaws.com", self.region)))
            }
            "kms:calleraccount" | "aws:principalaccount" if !self.account().is_empty() => {
                Ok(Some(self.account().to_string()))
            }
            "aws:principalarn" => Ok(Some(self.role_arn.to_string())),
            // Set on the grant operations only, true when an AWS service creates the grant.
            "kms:grantisforawsresource" => {
                Ok((operation == "kms:CreateGrant").then(|| "true".to_string()))
            }
            _ => Err(format!("the value of {key} in EC2's request is not known")),
        }
    }

    /// Evaluates a statement's `Condition` element (absent: met) for `operation`. Every operator
    /// and key must hold: one that fails decides, else one undecided leaves the block undecided.
    pub fn evaluate(&self, condition: Option<&Value>, operation: &str) -> Truth {
        let Some(condition) = condition else {
            return Truth::Met;
        };
        let Some(operators) = condition.as_object() else {
            return Truth::Unknown("the Condition element is not an object".into());
        };
        let mut undecided = None;
        for (operator, keys) in operators {
            let Some(keys) = keys.as_object() else {
                return Truth::Unknown(format!("condition {operator} is not an object"));
            };
            for (key, expected) in keys {
                match self.test(operator, key, expected, operation) {
                    Truth::NotMet => return Truth::NotMet,
                    Truth::Unknown(why) => {
                        undecided.get_or_insert(why);
                    }
                    Truth::Met => {}
                }
            }
        }
        match undecided {
            Some(why) => Truth::Unknown(why),
            None => Truth::Met,
        }
    }

    fn test(&self, operator: &str, key: &str, expected: &Value, operation: &str) -> Truth {
        if operator.contains(':') {
            return Truth::Unknown(format!("set operator {operator} on {key} is not evaluated"));
        }
        let (base, if_exists) = match operator.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (operator, false),
        };
        let Some(comparison) = Comparison::named(base) else {
            return Truth::Unknown(format!("condition operator {operator} is not evaluated"));
        };
        let Some(expected) = as_list(expected)
            .into_iter()
            .map(|value| match value {
                Value::String(text) => Some(text.clone()),
                Value::Bool(flag) => Some(flag.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
        else {
            return Truth::Unknown(format!(
                "condition {operator} on {key} has a non-text value"
            ));
        };
        let actual = match self.value(key, operation) {
            Ok(actual) => actual,
            Err(why) => return Truth::Unknown(why),
        };
        let met = match (comparison, actual) {
            (Comparison::Null, actual) => expected
                .iter()
                .any(|flag| flag.eq_ignore_ascii_case("true") == actual.is_none()),
            (_, None) => if_exists || comparison.negated(),
            (comparison, Some(actual)) => {
                let any = expected
                    .iter()
                    .any(|want| comparison.matches(want, &actual));
                any != comparison.negated()
            }
        };
        if met { Truth::Met } else { Truth::NotMet }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    ArnLike,
    ArnNotLike,
    Bool,
    Null,
}

impl Comparison {
    fn named(operator: &str) -> Option<Self> {
        Some(match operator {
            "StringEquals" => Comparison::StringEquals,
            "StringNotEquals" => Comparison::StringNotEquals,
            "StringEqualsIgnoreCase" => Comparison::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Comparison::StringNotEqualsIgnoreCase,
            "StringLike" => Comparison::StringLike,
            "StringNotLike" => Comparison::StringNotLike,
            // IAM documents ArnEquals and ArnLike as the same comparison.
            "ArnEquals" | "ArnLike" => Comparison::ArnLike,
            "ArnNotEquals" | "ArnNotLike" => Comparison::ArnNotLike,
            "Bool" => Comparison::Bool,
            "Null" => Comparison::Null,
            _ => return None,
        })
    }

    fn negated(self) -> bool {
        matches!(
            self,
            Comparison::StringNotEquals
                | Comparison::StringNotEqualsIgnoreCase
                | Comparison::StringNotLike
                | Comparison::ArnNotLike
        )
    }

    fn matches(self, expected: &str, actual: &str) -> bool {
        match self {
            Comparison::StringEquals | Comparison::StringNotEquals => expected == actual,
            Comparison::StringEqualsIgnoreCase
            | Comparison::StringNotEqualsIgnoreCase
            | Comparison::Bool => expected.eq_ignore_ascii_case(actual),
            Comparison::StringLike
            | Comparison::StringNotLike
            | Comparison::ArnLike
            | Comparison::ArnNotLike => wildcard_matches(expected, actual),
            Comparison::Null => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling";
    const KEY: &str = "arn:aws:kms:us-west-2:123456789012:key/1";

    fn truth(condition: Value, operation: &str) -> Truth {
        Caller::for_key(ROLE, KEY).evaluate(Some(&condition), operation)
    }

    #[test]
    fn the_aws_ebs_shape_is_met_by_an_auto_scaling_launch() {
        let ebs = json!({"StringEquals": {"kms:CallerAccount": "123456789012",
            "kms:ViaService": "ec2.us-west-2.amazonaws.com"}});
        assert_eq!(truth(ebs, "kms:Decrypt"), Truth::Met);
        let elsewhere = json!({"StringEquals": {"kms:CallerAccount": "123456789012",
            "kms:ViaService": "rds.us-west-2.amazonaws.com"}});
        assert_eq!(truth(elsewhere, "kms:Decrypt"), Truth::NotMet);
        let like = json!({"StringLike": {"kms:ViaService": "ec2.*.amazonaws.com"}});
        assert_eq!(truth(like, "kms:Encrypt"), Truth::Met);
    }

    #[test]
    fn the_guides_grant_condition_holds_on_create_grant_only() {
        let guide = json!({"Bool": {"kms:GrantIsForAWSResource": true}});
        assert_eq!(truth(guide.clone(), "kms:CreateGrant"), Truth::Met);
        assert_eq!(truth(guide, "kms:Decrypt"), Truth::NotMet);
        let if_exists = json!({"BoolIfExists": {"kms:GrantIsForAWSResource": "true"}});
        assert_eq!(truth(if_exists, "kms:Decrypt"), Truth::Met);
    }

    #[test]
    fn unknown_keys_and_operators_leave_the_condition_undecided() {
        let org = json!({"StringEquals": {"aws:PrincipalOrgID": "o-abc"}});
        assert!(
            matches!(truth(org, "kms:Decrypt"), Truth::Unknown(why) if why.contains("aws:PrincipalOrgID"))
        );
        let set =
            json!({"ForAnyValue:StringEquals": {"kms:ViaService": "ec2.us-west-2.amazonaws.com"}});
        assert!(matches!(truth(set, "kms:Decrypt"), Truth::Unknown(_)));
        let numeric = json!({"NumericLessThan": {"kms:ViaService": "1"}});
        assert!(matches!(truth(numeric, "kms:Decrypt"), Truth::Unknown(_)));
        // A failing part decides even next to an undecided one.
        let mixed = json!({"StringEquals": {"aws:PrincipalOrgID": "o-abc", "kms:CallerAccount": "999999999999"}});
        assert_eq!(truth(mixed, "kms:Decrypt"), Truth::NotMet);
    }

    #[test]
    fn negated_and_null_operators() {
        let not_rds = json!({"StringNotEquals": {"kms:ViaService": "rds.us-west-2.amazonaws.com"}});
        assert_eq!(truth(not_rds, "kms:Decrypt"), Truth::Met);
        let absent = json!({"StringNotEquals": {"kms:GrantIsForAWSResource": "true"}});
        assert_eq!(truth(absent, "kms:Decrypt"), Truth::Met);
        let must_be_via = json!({"Null": {"kms:ViaService": "false"}});
        assert_eq!(truth(must_be_via, "kms:Decrypt"), Truth::Met);
        let arn = json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/aws-service-role/*"}});
        assert_eq!(truth(arn, "kms:Decrypt"), Truth::Met);
    }

    #[test]
    fn malformed_conditions_are_undecided_not_met() {
        assert!(matches!(
            truth(json!("x"), "kms:Decrypt"),
            Truth::Unknown(_)
        ));
        assert!(matches!(
            truth(json!({"StringEquals": 3}), "kms:Decrypt"),
            Truth::Unknown(_)
        ));
        assert!(matches!(
            truth(
                json!({"StringEquals": {"kms:ViaService": {"a": 1}}}),
                "kms:Decrypt"
            ),
            Truth::Unknown(_)
        ));
    }
}
