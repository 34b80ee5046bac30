//! Reading and patching a KMS key policy for the Auto Scaling service-linked role, following the
//! EC2 Auto Scaling guide "Required AWS KMS key policy for use with encrypted volumes".
//! Pure: policy text in, an assessment or a validated new policy out.

use serde_json::{Map, Value, json};

mod conditions;

pub use self::conditions::{Caller, Truth};
use crate::core::evidence::KeyGrant;
pub use crate::core::policy_document::glob_matches;
use crate::core::policy_document::{action_matches, aws_principals, effect, parse_strict, sid};

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
pub const REQUIRED_OPERATIONS: [&str; 8] = [
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

/// Whether a policy (and the key's grants) let the role use the key for EBS encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Granted,
    /// Operations nothing allows, with certainty.
    Missing(Vec<&'static str>),
    /// A Deny statement that certainly applies blocks the role.
    Denied {
        sid: String,
        action: String,
    },
    /// The role may be let in, or kept out, through conditions the evaluator cannot decide or a
    /// grant with constraints: "granted or unknown", for a human to judge.
    Undecided {
        /// Operations not allowed with certainty.
        missing: Vec<&'static str>,
        reasons: Vec<String>,
    },
}

/// The outcome of patching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPolicyPatch {
    AlreadyGranted,
    Patched {
        policy: String,
        added_sids: Vec<String>,
        /// Why the policy might already let the role in (or still keep it out): the patch then
        /// needs a human's approval.
        undecided: Vec<String>,
    },
}

/// Reads a policy document and the key's grants and says whether the role may use the key.
pub fn assess(
    policy_text: &str,
    caller: Caller<'_>,
    grants: &[KeyGrant],
) -> Result<Access, KeyPolicyError> {
    let document = parse(policy_text)?;
    let statements = statements_of(&document)?;
    Ok(assess_statements(&statements, caller, grants))
}

/// Adds the guide's two statements for the role when the policy does not already grant it,
/// keeping every existing statement unchanged and in order.
pub fn patch(policy_text: &str, caller: Caller<'_>) -> Result<KeyPolicyPatch, KeyPolicyError> {
    let role_arn = caller.role_arn;
    let mut document = parse(policy_text)?;
    let original = statements_of(&document)?;
    let undecided = match assess_statements(&original, caller, &[]) {
        Access::Granted => return Ok(KeyPolicyPatch::AlreadyGranted),
        Access::Denied { sid, action } => return Err(KeyPolicyError::ExplicitDeny { sid, action }),
        Access::Missing(_) => Vec::new(),
        Access::Undecided { missing, .. } if missing.is_empty() => {
            // Every operation is allowed; only a conditional Deny is in doubt, which allow
            // statements cannot change.
            return Ok(KeyPolicyPatch::AlreadyGranted);
        }
        Access::Undecided { reasons, .. } => reasons,
    };

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
    validate_patched(&policy, &original, &added, caller)?;
    Ok(KeyPolicyPatch::Patched {
        policy,
        added_sids: vec![use_sid, grant_sid],
        undecided,
    })
}

/// Re-reads what would be written and checks every promise `patch` makes.
fn validate_patched(
    policy: &str,
    original: &[Value],
    added: &[Value],
    caller: Caller<'_>,
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
    match assess_statements(&statements, caller, &[]) {
        Access::Granted => Ok(()),
        // A Deny in doubt stays in doubt; every operation must now be allowed.
        Access::Undecided { missing, .. } if missing.is_empty() => Ok(()),
        _ => fail("the patched policy still does not grant the role"),
    }
}

/// Parses the policy, refusing duplicate keys: a second `"Statement"` would hide the first.
fn parse(policy_text: &str) -> Result<Value, KeyPolicyError> {
    parse_strict(policy_text).map_err(KeyPolicyError::NotJson)
}

/// The statements of a policy; a single statement object counts as a list of one.
fn statements_of(document: &Value) -> Result<Vec<Value>, KeyPolicyError> {
    match document.get("Statement") {
        Some(Value::Array(list)) => Ok(list.clone()),
        Some(single @ Value::Object(_)) => Ok(vec![single.clone()]),
        _ => Err(KeyPolicyError::NoStatements),
    }
}

fn name_of(statement: &Value) -> &str {
    sid(statement).unwrap_or("(no Sid)")
}

fn assess_statements(statements: &[Value], caller: Caller<'_>, grants: &[KeyGrant]) -> Access {
    let mut deny_doubts = Vec::new();
    for statement in statements {
        if effect(statement) != Some("Deny") || !deny_reaches(statement, caller.role_arn) {
            continue;
        }
        let mut in_doubt = None;
        for operation in REQUIRED_OPERATIONS
            .iter()
            .filter(|op| action_matches(statement, op))
        {
            match caller.evaluate(statement.get("Condition"), operation) {
                Truth::Met => {
                    return Access::Denied {
                        sid: name_of(statement).to_string(),
                        action: (*operation).to_string(),
                    };
                }
                Truth::Unknown(why) => {
                    in_doubt.get_or_insert_with(|| {
                        format!(
                            "statement {} may deny {operation} ({why})",
                            name_of(statement)
                        )
                    });
                }
                Truth::NotMet => {}
            }
        }
        deny_doubts.extend(in_doubt);
    }
    let mut allow_doubts = Vec::new();
    let mut missing = Vec::new();
    let mut certainly_missing = false;
    for operation in REQUIRED_OPERATIONS {
        let mut maybe = None;
        let by_statement = statements
            .iter()
            .filter(|s| {
                effect(s) == Some("Allow")
                    && principal_matches(s, caller.role_arn)
                    && action_matches(s, operation)
            })
            .any(|s| match caller.evaluate(s.get("Condition"), operation) {
                Truth::Met => true,
                Truth::NotMet => false,
                Truth::Unknown(why) => {
                    maybe.get_or_insert_with(|| {
                        format!("statement {} may allow {operation} ({why})", name_of(s))
                    });
                    false
                }
            });
        let by_grant = grants
            .iter()
            .filter(|g| g.grantee_principal == caller.role_arn && grant_covers(g, operation))
            .any(|g| {
                if g.constrained {
                    maybe.get_or_insert_with(|| {
                        format!(
                            "grant {} allows {operation} under an encryption context constraint",
                            g.grant_id
                        )
                    });
                }
                !g.constrained
            });
        if by_statement || by_grant {
            continue;
        }
        missing.push(operation);
        match maybe {
            Some(reason) => allow_doubts.push(reason),
            None => certainly_missing = true,
        }
    }
    match (
        missing.is_empty(),
        deny_doubts.is_empty(),
        certainly_missing,
    ) {
        (true, true, _) => Access::Granted,
        // One operation is certainly not allowed, so the role cannot use the key whatever the
        // conditions say, and nothing may deny: adding the statements is what it takes.
        (false, true, true) => Access::Missing(missing),
        _ => Access::Undecided {
            missing,
            reasons: deny_doubts.into_iter().chain(allow_doubts).collect(),
        },
    }
}

/// Grants name operations without the `kms:` prefix.
fn grant_covers(grant: &KeyGrant, operation: &str) -> bool {
    let bare = operation.trim_start_matches("kms:");
    grant.operations.iter().any(|op| op == bare)
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

/// The principals a Deny naming an account reaches: every principal of that account, the role
/// among them. The account may be named by its root ARN or by its bare id.
fn names_roles_account(principal: &str, role_arn: &str) -> bool {
    let mut role = role_arn.split(':');
    let (Some(partition), Some(account)) = (role.nth(1), role.nth(2)) else {
        return false;
    };
    !account.is_empty()
        && (principal == account || principal == format!("arn:{partition}:iam::{account}:root"))
}

/// Whether a Deny statement applies to the role: it names the role, `*` or the role's account.
/// `NotPrincipal` means everyone except the principals it lists, so a Deny with a `NotPrincipal`
/// that does not list the role (or `*`) blocks the role as surely as one naming it.
fn deny_reaches(statement: &Value, role_arn: &str) -> bool {
    if statement.get("Principal").is_some() {
        return principals_of(statement)
            .iter()
            .any(|p| *p == "*" || *p == role_arn || names_roles_account(p, role_arn));
    }
    match statement.get("NotPrincipal") {
        Some(excepted) => !aws_principals(Some(excepted))
            .iter()
            .any(|p| *p == "*" || *p == role_arn),
        None => false,
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
mod tests;

#[cfg(test)]
mod proptests;
