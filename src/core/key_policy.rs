//! Reading and patching a KMS key policy for the Auto Scaling service-linked role, following the
//! EC2 Auto Scaling guide "Required AWS KMS key policy for use with encrypted volumes".
//! Pure: policy text in, an assessment or a validated new policy out.

use serde_json::{Map, Value, json};

pub use crate::core::policy_document::glob_matches;
use crate::core::policy_document::{action_matches, aws_principals, effect, sid};

/// Sids of the two statements the guide requires (the names the seed lab uses).
pub const USE_SID: &str = "AllowAutoScalingServiceRole";
pub const GRANT_SID: &str = "AllowAttachmentOfPersistentResources";

/// The actions of the guide's first statement.
pub const USE_ACTIONS: [&str; 5] = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
];

/// Concrete operations Auto Scaling performs with the key when it launches an encrypted volume;
/// every one must be allowed for the role.
const REQUIRED_OPERATIONS: [&str; 8] = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:DescribeKey",
    "kms:CreateGrant",
];

/// KMS refuses key policies larger than 32 KiB.
const MAX_POLICY_BYTES: usize = 32 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyPolicyError {
    #[error("the key policy is not valid JSON: {0}")]
    NotJson(String),
    #[error("the key policy is not a JSON object with a Statement list")]
    NoStatements,
    #[error(
        "statement {sid:?} explicitly denies the Auto Scaling role {action}; adding allow statements cannot help"
    )]
    ExplicitDeny { sid: String, action: String },
    #[error("the patched policy would be {bytes} bytes, over the 32 KiB KMS limit")]
    TooLarge { bytes: usize },
    #[error("refusing to write the patched policy: {0}")]
    FailedValidation(String),
}

/// Whether a policy lets the role use the key for EBS encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Granted,
    /// Operations no statement allows.
    Missing(Vec<&'static str>),
    /// An unconditional Deny statement blocks the role.
    Denied {
        sid: String,
        action: String,
    },
}

/// The outcome of patching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPolicyPatch {
    AlreadyGranted,
    Patched {
        policy: String,
        added_sids: Vec<String>,
    },
}

/// Reads a policy document and says whether `role_arn` may use the key.
pub fn assess(policy_text: &str, role_arn: &str) -> Result<Access, KeyPolicyError> {
    let document = parse(policy_text)?;
    let statements = statements_of(&document)?;
    Ok(assess_statements(&statements, role_arn))
}

/// Adds the guide's two statements for `role_arn` when the policy does not already grant it,
/// keeping every existing statement unchanged and in order.
pub fn patch(policy_text: &str, role_arn: &str) -> Result<KeyPolicyPatch, KeyPolicyError> {
    let mut document = parse(policy_text)?;
    let original = statements_of(&document)?;
    match assess_statements(&original, role_arn) {
        Access::Granted => return Ok(KeyPolicyPatch::AlreadyGranted),
        Access::Denied { sid, action } => return Err(KeyPolicyError::ExplicitDeny { sid, action }),
        Access::Missing(_) => {}
    }

    let use_sid = unique_sid(&original, USE_SID);
    let grant_sid = unique_sid(&original, GRANT_SID);
    let added = [
        json!({
            "Sid": use_sid,
            "Effect": "Allow",
            "Principal": { "AWS": role_arn },
            "Action": USE_ACTIONS,
            "Resource": "*"
        }),
        json!({
            "Sid": grant_sid,
            "Effect": "Allow",
            "Principal": { "AWS": role_arn },
            "Action": "kms:CreateGrant",
            "Resource": "*",
            "Condition": { "Bool": { "kms:GrantIsForAWSResource": "true" } }
        }),
    ];
    let mut statements = original.clone();
    statements.extend(added.iter().cloned());
    let object = document
        .as_object_mut()
        .ok_or(KeyPolicyError::NoStatements)?;
    object.insert("Statement".into(), Value::Array(statements));
    if !object.contains_key("Version") {
        object.insert("Version".into(), Value::String("2012-10-17".into()));
    }

    // Compact, as KMS stores it: the 32 KiB limit is on the text sent, and indentation would
    // refuse a policy KMS takes.
    let policy = serde_json::to_string(&document)
        .map_err(|e| KeyPolicyError::FailedValidation(e.to_string()))?;
    validate_patched(&policy, &original, &added, role_arn)?;
    Ok(KeyPolicyPatch::Patched {
        policy,
        added_sids: vec![use_sid, grant_sid],
    })
}

/// Re-reads what would be written and checks every promise `patch` makes.
fn validate_patched(
    policy: &str,
    original: &[Value],
    added: &[Value],
    role_arn: &str,
) -> Result<(), KeyPolicyError> {
    if policy.len() > MAX_POLICY_BYTES {
        return Err(KeyPolicyError::TooLarge {
            bytes: policy.len(),
        });
    }
    let fail = |why: &str| Err(KeyPolicyError::FailedValidation(why.to_string()));
    let reread = parse(policy)?;
    let statements = statements_of(&reread)?;
    if statements.len() != original.len() + added.len() {
        return fail("statement count is not the original count plus two");
    }
    if statements[..original.len()] != *original {
        return fail("an existing statement changed");
    }
    if statements[original.len()..] != *added {
        return fail("the added statements are not the two required ones");
    }
    for statement in &statements[original.len()..] {
        if principals_of(statement).contains(&"*") {
            return fail("an added statement has a wildcard principal");
        }
    }
    if assess_statements(&statements, role_arn) != Access::Granted {
        return fail("the patched policy still does not grant the role");
    }
    Ok(())
}

fn parse(policy_text: &str) -> Result<Value, KeyPolicyError> {
    serde_json::from_str(policy_text).map_err(|e| KeyPolicyError::NotJson(e.to_string()))
}

/// The statements of a policy; a single statement object counts as a list of one.
fn statements_of(document: &Value) -> Result<Vec<Value>, KeyPolicyError> {
    match document.get("Statement") {
        Some(Value::Array(list)) => Ok(list.clone()),
        Some(single @ Value::Object(_)) => Ok(vec![single.clone()]),
        _ => Err(KeyPolicyError::NoStatements),
    }
}

fn assess_statements(statements: &[Value], role_arn: &str) -> Access {
    for statement in statements {
        if effect(statement) != Some("Deny") || statement.get("Condition").is_some() {
            continue;
        }
        if !deny_reaches(statement, role_arn) {
            continue;
        }
        if let Some(action) = REQUIRED_OPERATIONS
            .iter()
            .find(|op| action_matches(statement, op))
        {
            return Access::Denied {
                sid: sid(statement).unwrap_or("(no Sid)").to_string(),
                action: (*action).to_string(),
            };
        }
    }
    let missing: Vec<&'static str> = REQUIRED_OPERATIONS
        .iter()
        .copied()
        .filter(|operation| {
            !statements.iter().any(|statement| {
                effect(statement) == Some("Allow")
                    && principal_matches(statement, role_arn)
                    && action_matches(statement, operation)
                    && condition_acceptable(statement, operation)
            })
        })
        .collect();
    if missing.is_empty() {
        Access::Granted
    } else {
        Access::Missing(missing)
    }
}

/// Principals named under `Principal`; the only valid bare string is the wildcard `"*"`.
fn principals_of(statement: &Value) -> Vec<&str> {
    aws_principals(statement.get("Principal"))
}

/// The account root in a key policy only delegates to IAM policies, and the service-linked role's
/// IAM policy does not cover customer managed keys, so only the role itself or `*` counts.
fn principal_matches(statement: &Value, role_arn: &str) -> bool {
    principals_of(statement)
        .iter()
        .any(|p| *p == "*" || *p == role_arn)
}

/// Whether a Deny statement applies to the role. `NotPrincipal` means everyone except the
/// principals it lists, so a Deny with a `NotPrincipal` that does not list the role (or `*`)
/// blocks the role as surely as one naming it.
fn deny_reaches(statement: &Value, role_arn: &str) -> bool {
    if statement.get("Principal").is_some() {
        return principal_matches(statement, role_arn);
    }
    match statement.get("NotPrincipal") {
        Some(excepted) => !aws_principals(Some(excepted))
            .iter()
            .any(|p| *p == "*" || *p == role_arn),
        None => false,
    }
}

/// A conditional allow only counts when it is the guide's own CreateGrant condition.
fn condition_acceptable(statement: &Value, operation: &str) -> bool {
    let Some(condition) = statement.get("Condition") else {
        return true;
    };
    if operation != "kms:CreateGrant" {
        return false;
    }
    let Some(operators) = condition.as_object() else {
        return false;
    };
    operators.len() == 1
        && operators
            .get("Bool")
            .and_then(Value::as_object)
            .is_some_and(|keys| keys.len() == 1 && is_true(keys.get("kms:GrantIsForAWSResource")))
}

fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
        Some(Value::Array(list)) => list.len() == 1 && is_true(list.first()),
        _ => false,
    }
}

fn unique_sid(statements: &[Value], wanted: &str) -> String {
    let taken = |wanted_sid: &str| statements.iter().any(|s| sid(s) == Some(wanted_sid));
    if !taken(wanted) {
        return wanted.to_string();
    }
    (2..)
        .map(|n| format!("{wanted}{n}"))
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| wanted.to_string())
}

/// The service-linked role Auto Scaling uses in `account` (partition from `partition`).
pub fn default_autoscaling_role(partition: &str, account: &str) -> String {
    format!(
        "arn:{partition}:iam::{account}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    )
}

/// Statements of `patched` that are not in `original`, for the audit trail and reports.
pub fn added_statements(original: &str, patched: &str) -> Vec<Map<String, Value>> {
    let before = parse(original)
        .ok()
        .and_then(|d| statements_of(&d).ok())
        .unwrap_or_default();
    parse(patched)
        .ok()
        .and_then(|d| statements_of(&d).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !before.contains(s))
        .filter_map(|s| s.as_object().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling";
    const LAB_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Principal": {
        "AWS": "arn:aws:iam::123456789012:root"
      },
      "Action": "kms:*",
      "Resource": "*"
    }
  ]
}"#;

    fn patched(policy: &str) -> (String, Vec<String>) {
        match patch(policy, ROLE) {
            Ok(KeyPolicyPatch::Patched { policy, added_sids }) => (policy, added_sids),
            other => panic!("expected a patch, got {other:?}"),
        }
    }

    #[test]
    fn the_lab_policy_lets_only_the_account_root_in() {
        assert_eq!(
            assess(LAB_POLICY, ROLE).unwrap(),
            Access::Missing(REQUIRED_OPERATIONS.to_vec())
        );
    }

    #[test]
    fn patching_the_lab_policy_adds_exactly_the_two_guide_statements() {
        let (policy, sids) = patched(LAB_POLICY);
        assert_eq!(sids, vec![USE_SID, GRANT_SID]);
        let document: Value = serde_json::from_str(&policy).unwrap();
        let statements = document["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 3);
        let original: Value = serde_json::from_str(LAB_POLICY).unwrap();
        assert_eq!(statements[0], original["Statement"][0]);
        assert_eq!(statements[1]["Principal"]["AWS"], ROLE);
        assert_eq!(statements[1]["Action"], json!(USE_ACTIONS));
        assert_eq!(statements[2]["Action"], "kms:CreateGrant");
        assert_eq!(
            statements[2]["Condition"]["Bool"]["kms:GrantIsForAWSResource"],
            "true"
        );
        assert_eq!(assess(&policy, ROLE).unwrap(), Access::Granted);
    }

    #[test]
    fn a_policy_that_already_grants_the_role_is_left_alone() {
        let (policy, _) = patched(LAB_POLICY);
        assert_eq!(
            patch(&policy, ROLE).unwrap(),
            KeyPolicyPatch::AlreadyGranted
        );
    }

    #[test]
    fn kms_star_for_the_role_counts_as_granted() {
        let policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": [ROLE]}, "Action": "kms:*", "Resource": "*"}]});
        assert_eq!(assess(&policy.to_string(), ROLE).unwrap(), Access::Granted);
    }

    #[test]
    fn a_use_statement_without_create_grant_is_still_missing_create_grant() {
        let policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": USE_ACTIONS, "Resource": "*"}]});
        assert_eq!(
            assess(&policy.to_string(), ROLE).unwrap(),
            Access::Missing(vec!["kms:CreateGrant"])
        );
        let (patched_policy, _) = patched(&policy.to_string());
        assert_eq!(assess(&patched_policy, ROLE).unwrap(), Access::Granted);
    }

    #[test]
    fn conditional_allows_other_than_the_guides_do_not_count() {
        let policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:*", "Resource": "*",
            "Condition": {"StringEquals": {"kms:ViaService": "ec2.us-west-2.amazonaws.com"}}}]});
        assert!(matches!(
            assess(&policy.to_string(), ROLE).unwrap(),
            Access::Missing(_)
        ));
    }

    #[test]
    fn an_explicit_deny_is_refused_not_patched() {
        let policy = json!({"Statement": [
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "NoDecrypt", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}
        ]});
        assert_eq!(
            patch(&policy.to_string(), ROLE).unwrap_err(),
            KeyPolicyError::ExplicitDeny {
                sid: "NoDecrypt".into(),
                action: "kms:Decrypt".into()
            }
        );
    }

    #[test]
    fn a_deny_to_everyone_but_named_principals_blocks_the_role() {
        // Found by the property tests: `NotPrincipal` was not read, so this policy was
        // "patched" with two allow statements that its Deny still overrides.
        let deny_all_but = |excepted: Value| {
            json!({"Statement": [
                {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
                {"Sid": "OnlyAdmins", "Effect": "Deny", "NotPrincipal": {"AWS": excepted}, "Action": "kms:*", "Resource": "*"}
            ]})
            .to_string()
        };
        let admins_only = deny_all_but(json!([
            "arn:aws:iam::123456789012:root",
            "arn:aws:iam::123456789012:role/KeyAdmin"
        ]));
        assert_eq!(
            patch(&admins_only, ROLE).unwrap_err(),
            KeyPolicyError::ExplicitDeny {
                sid: "OnlyAdmins".into(),
                action: "kms:Encrypt".into()
            }
        );
        // Excepting the role itself leaves the allow statements something to do.
        let role_excepted = deny_all_but(json!(["arn:aws:iam::123456789012:root", ROLE]));
        let (policy, _) = patched(&role_excepted);
        assert_eq!(assess(&policy, ROLE).unwrap(), Access::Granted);
    }

    #[test]
    fn a_single_statement_object_and_odd_fields_survive_unchanged() {
        let policy = json!({
            "Id": "key-consolepolicy-3",
            "Version": "2012-10-17",
            "Statement": {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}}
        });
        let (text, _) = patched(&policy.to_string());
        let document: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(document["Id"], "key-consolepolicy-3");
        assert_eq!(document["Statement"][0], policy["Statement"]);
        assert_eq!(document["Statement"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn taken_sids_get_a_suffix() {
        let policy = json!({"Statement": [
            {"Sid": USE_SID, "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:user/alice"}, "Action": "kms:Decrypt", "Resource": "*"}
        ]});
        let (_, sids) = patched(&policy.to_string());
        assert_eq!(sids, vec![format!("{USE_SID}2"), GRANT_SID.to_string()]);
    }

    #[test]
    fn invalid_documents_are_refused() {
        assert!(matches!(
            patch("{not json", ROLE),
            Err(KeyPolicyError::NotJson(_))
        ));
        assert_eq!(patch("{}", ROLE), Err(KeyPolicyError::NoStatements));
        assert_eq!(patch("[]", ROLE), Err(KeyPolicyError::NoStatements));
        assert_eq!(
            patch(r#"{"Statement": "nope"}"#, ROLE),
            Err(KeyPolicyError::NoStatements)
        );
    }

    #[test]
    fn an_oversized_result_is_refused() {
        let filler: Vec<Value> = (0..400)
            .map(|n| json!({"Sid": format!("S{n}"), "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:DescribeKey", "Resource": "*"}))
            .collect();
        let policy = json!({"Statement": filler});
        assert!(matches!(
            patch(&policy.to_string(), ROLE),
            Err(KeyPolicyError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_policy_is_sent_compact_so_the_limit_is_on_what_kms_gets() {
        let filler: Vec<Value> = (0..210)
            .map(|n| json!({"Sid": format!("S{n}"), "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:DescribeKey", "Resource": "*"}))
            .collect();
        let policy = json!({"Version": "2012-10-17", "Statement": filler});
        let pretty = serde_json::to_string_pretty(&policy).unwrap();
        assert!(
            pretty.len() > MAX_POLICY_BYTES,
            "pretty-printed it is over the limit"
        );
        let Ok(KeyPolicyPatch::Patched {
            policy: patched, ..
        }) = patch(&policy.to_string(), ROLE)
        else {
            panic!("a policy KMS would take is refused");
        };
        assert!(patched.len() <= MAX_POLICY_BYTES, "{}", patched.len());
        assert!(!patched.contains('\n'), "sent compact");
    }

    #[test]
    fn globbing_follows_iam_rules() {
        assert!(glob_matches("kms:*", "kms:Decrypt"));
        assert!(glob_matches("KMS:decrypt", "kms:Decrypt"));
        assert!(glob_matches("kms:ReEncrypt*", "kms:ReEncryptFrom"));
        assert!(glob_matches("kms:GenerateDataKey*", "kms:GenerateDataKey"));
        assert!(glob_matches("kms:Re?ncrypt*", "kms:ReEncryptTo"));
        assert!(glob_matches("*", "kms:CreateGrant"));
        assert!(!glob_matches("kms:Encrypt", "kms:ReEncryptTo"));
        assert!(!glob_matches(
            "kms:Gen*Key",
            "kms:GenerateDataKeyWithoutPlaintext"
        ));
        assert!(glob_matches(
            "kms:Gen*Key*",
            "kms:GenerateDataKeyWithoutPlaintext"
        ));
    }

    #[test]
    fn not_action_allows_everything_else() {
        let policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ROLE}, "NotAction": "kms:ScheduleKeyDeletion", "Resource": "*"}]});
        assert_eq!(assess(&policy.to_string(), ROLE).unwrap(), Access::Granted);
    }

    #[test]
    fn added_statements_lists_only_the_new_ones() {
        let (policy, _) = patched(LAB_POLICY);
        let added = added_statements(LAB_POLICY, &policy);
        assert_eq!(added.len(), 2);
        assert_eq!(added[0]["Sid"], USE_SID);
    }
}

#[cfg(test)]
mod proptests;
