//! Property tests of [`patch`] on generated key policies: statement lists with any Sids,
//! principals as a string, a list, `*`, a service or `NotPrincipal`, actions as a string or a
//! list with wildcards or `NotAction`, conditions, Deny statements, Version present or not.
//!
//! Whether a policy lets the Auto Scaling role in is judged twice: by the crate's own
//! [`assess`], and by [`reference`], a second, independent reading of the same rules written
//! from the IAM documentation. `patch` validates its output with `assess`, so only the second
//! reading can catch a rule `assess` gets wrong.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

use super::*;
use crate::core::proptest_support::config;

const ROLE: &str = "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling";
const KEY: &str = "arn:aws:kms:us-west-2:123456789012:key/1";

fn caller() -> Caller<'static> {
    Caller::for_key(ROLE, KEY)
}

/// Principals a key policy names, the Auto Scaling role and the wildcard among them.
const AWS_PRINCIPALS: [&str; 6] = [
    ROLE,
    "*",
    "arn:aws:iam::123456789012:root",
    "123456789012",
    "arn:aws:iam::123456789012:role/KeyAdmin",
    "arn:aws:iam::210987654321:root",
];

/// Action patterns: the guide's, wildcards that do and do not cover the operations, other
/// services, odd case.
const ACTIONS: [&str; 18] = [
    "kms:*",
    "*",
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:ReEncryptFrom",
    "kms:GenerateDataKey*",
    "kms:GenerateDataKey",
    "kms:DescribeKey",
    "kms:CreateGrant",
    "kms:Re?ncrypt*",
    "kms:Gen*Key",
    "KMS:DECRYPT",
    "kms:*Grant",
    "kms:List*",
    "kms:ScheduleKeyDeletion",
    "kms:Put*",
    "ec2:*",
];

fn sid() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        select(
            [
                USE_SID,
                GRANT_SID,
                "AllowAutoScalingServiceRole2",
                "Enable IAM User Permissions",
                ""
            ]
            .as_slice()
        )
        .prop_map(|s| json!(s)),
        "[A-Za-z0-9 ]{0,16}".prop_map(|s| json!(s)),
        any::<u8>().prop_map(|n| json!(n)),
    ])
}

/// A string, or a list of one or more.
fn one_or_many(pool: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        select(pool).prop_map(|s| json!(s)),
        prop::collection::vec(select(pool), 1..4).prop_map(|list| json!(list)),
    ]
}

fn principal() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("*")),
        one_or_many(AWS_PRINCIPALS.as_slice()).prop_map(|aws| json!({ "AWS": aws })),
        one_or_many(["autoscaling.amazonaws.com", "ec2.amazonaws.com"].as_slice())
            .prop_map(|service| json!({ "Service": service })),
        (
            one_or_many(AWS_PRINCIPALS.as_slice()),
            one_or_many(["autoscaling.amazonaws.com"].as_slice())
        )
            .prop_map(|(aws, service)| json!({ "AWS": aws, "Service": service })),
    ]
}

/// The conditions statements are generated with, and how each holds for EC2's request on behalf
/// of the role in us-west-2, read from the IAM and KMS condition-key documentation: on CreateGrant
/// and on every other operation; `None` where the request's value is not knowable.
fn conditions() -> Vec<(Value, Option<bool>, Option<bool>)> {
    let guide = |flag: Value| json!({ "Bool": { "kms:GrantIsForAWSResource": flag } });
    vec![
        // The guide's own, in each way JSON can say true: set only on grant operations.
        (guide(json!("true")), Some(true), Some(false)),
        (guide(json!(true)), Some(true), Some(false)),
        (guide(json!(["true"])), Some(true), Some(false)),
        (guide(json!("TRUE")), Some(true), Some(false)),
        (guide(json!("false")), Some(false), Some(false)),
        // EBS calls KMS through EC2 in the key's region, from the role's account.
        (
            json!({ "StringEquals": { "kms:ViaService": "ec2.us-west-2.amazonaws.com" } }),
            Some(true),
            Some(true),
        ),
        (
            json!({ "StringEquals": { "kms:ViaService": "rds.us-west-2.amazonaws.com" } }),
            Some(false),
            Some(false),
        ),
        (
            json!({ "StringEquals": { "kms:CallerAccount": "123456789012", "kms:ViaService": "ec2.us-west-2.amazonaws.com" } }),
            Some(true),
            Some(true),
        ),
        (
            json!({ "StringEquals": { "kms:CallerAccount": "210987654321" } }),
            Some(false),
            Some(false),
        ),
        // The organisation is not in what nodemedic reads.
        (
            json!({ "StringNotEquals": { "aws:PrincipalOrgID": "o-abc123" } }),
            None,
            None,
        ),
        // Unknown next to a part that fails is a failure; next to one that holds, unknown.
        (
            json!({ "Bool": { "kms:GrantIsForAWSResource": "true", "aws:SecureTransport": "true" } }),
            None,
            Some(false),
        ),
    ]
}

fn condition() -> impl Strategy<Value = Value> {
    select(
        conditions()
            .into_iter()
            .map(|(c, _, _)| c)
            .collect::<Vec<_>>(),
    )
}

fn statement() -> impl Strategy<Value = Value> {
    (
        sid(),
        prop_oneof![3 => Just("Allow"), 1 => Just("Deny")],
        any::<bool>(),
        principal(),
        any::<bool>(),
        one_or_many(ACTIONS.as_slice()),
        prop::option::of(condition()),
        prop::option::of(select(
            ["*", "arn:aws:kms:us-west-2:123456789012:key/1"].as_slice(),
        )),
    )
        .prop_map(
            |(sid, effect, not_principal, principal, not_action, actions, condition, resource)| {
                let mut statement = Map::new();
                if let Some(sid) = sid {
                    statement.insert("Sid".into(), sid);
                }
                statement.insert("Effect".into(), json!(effect));
                let principal_key = if not_principal {
                    "NotPrincipal"
                } else {
                    "Principal"
                };
                statement.insert(principal_key.into(), principal);
                let action_key = if not_action { "NotAction" } else { "Action" };
                statement.insert(action_key.into(), actions);
                statement.insert("Resource".into(), json!(resource.unwrap_or("*")));
                if let Some(condition) = condition {
                    statement.insert("Condition".into(), condition);
                }
                Value::Object(statement)
            },
        )
}

/// A key policy: Version present or not, an Id sometimes, one statement object or a list.
fn policy() -> impl Strategy<Value = Value> {
    (
        prop::option::of(select(["2012-10-17", "2008-10-17"].as_slice())),
        prop::option::of("key-[a-z0-9-]{1,20}"),
        prop::collection::vec(statement(), 0..8),
        any::<bool>(),
    )
        .prop_map(|(version, id, statements, single)| {
            let mut document = Map::new();
            if let Some(version) = version {
                document.insert("Version".into(), json!(version));
            }
            if let Some(id) = id {
                document.insert("Id".into(), json!(id));
            }
            let statements = match (single, statements.as_slice()) {
                (true, [only]) => only.clone(),
                _ => Value::Array(statements),
            };
            document.insert("Statement".into(), statements);
            Value::Object(document)
        })
}

/// A second reading of the rules, written from the IAM documentation rather than from `assess`.
/// Its assumptions are the crate's documented ones: only the role itself or `*` lets the role in
/// (an account principal delegates to IAM policies, which do not cover the key for a
/// service-linked role), but a Deny naming the role's account reaches the role; a condition
/// counts as the table in [`conditions`] says, and one nobody can evaluate leaves the answer in
/// doubt.
mod reference {
    use serde_json::Value;

    use super::{ROLE, conditions};

    pub const OPERATIONS: [&str; 8] = [
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:GenerateDataKey",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:DescribeKey",
        "kms:CreateGrant",
    ];

    fn strings(value: Option<&Value>) -> Vec<&str> {
        match value {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether a Principal or NotPrincipal element names the role (or everyone); with
    /// `account`, naming the role's account counts too.
    fn names_role(element: &Value, account: bool) -> bool {
        match element {
            Value::String(everyone) => everyone == "*",
            Value::Object(map) => strings(map.get("AWS")).iter().any(|p| {
                *p == "*"
                    || *p == ROLE
                    || (account && (*p == "123456789012" || *p == "arn:aws:iam::123456789012:root"))
            }),
            _ => false,
        }
    }

    /// Whether the statement is about the role. `NotPrincipal` means everyone but the principals
    /// listed: a Deny with it reaches the role unless it lists the role; an Allow with it is
    /// never counted (IAM advises against it, and an allow may not be assumed).
    fn about_role(statement: &Value, deny: bool) -> bool {
        if let Some(principal) = statement.get("Principal") {
            return names_role(principal, deny);
        }
        match statement.get("NotPrincipal") {
            Some(excepted) if deny => !names_role(excepted, false),
            _ => false,
        }
    }

    /// IAM wildcards, case-insensitive: `*` any run, `?` one character.
    fn matches(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.split_first(), text.split_first()) {
            (None, None) => true,
            (Some((b'*', rest)), _) => {
                matches(rest, text) || (!text.is_empty() && matches(pattern, &text[1..]))
            }
            (Some((p, prest)), Some((t, trest))) => {
                (*p == b'?' || p.eq_ignore_ascii_case(t)) && matches(prest, trest)
            }
            _ => false,
        }
    }

    fn covers(statement: &Value, operation: &str) -> bool {
        let hit = |patterns: Vec<&str>| {
            patterns
                .iter()
                .any(|p| matches(p.as_bytes(), operation.as_bytes()))
        };
        if statement.get("Action").is_some() {
            hit(strings(statement.get("Action")))
        } else if statement.get("NotAction").is_some() {
            !hit(strings(statement.get("NotAction")))
        } else {
            false
        }
    }

    /// Whether the statement's condition holds for `operation`; `None`: nobody can tell.
    fn holds(statement: &Value, operation: &str) -> Option<bool> {
        let Some(condition) = statement.get("Condition") else {
            return Some(true);
        };
        let (_, on_grant, otherwise) = conditions()
            .into_iter()
            .find(|(listed, _, _)| listed == condition)
            .expect("only listed conditions are generated");
        if operation == "kms:CreateGrant" {
            on_grant
        } else {
            otherwise
        }
    }

    fn effect(statement: &Value) -> Option<&str> {
        statement.get("Effect").and_then(Value::as_str)
    }

    fn reaching<'a>(
        statements: &'a [Value],
        wanted: &'a str,
        deny: bool,
    ) -> impl Iterator<Item = (&'a Value, &'static str)> {
        statements.iter().flat_map(move |s| {
            OPERATIONS
                .iter()
                .filter(move |op| effect(s) == Some(wanted) && about_role(s, deny) && covers(s, op))
                .map(move |op| (s, *op))
        })
    }

    /// A Deny that certainly reaches the role for one of the operations.
    pub fn denied(statements: &[Value]) -> bool {
        reaching(statements, "Deny", true).any(|(s, op)| holds(s, op) == Some(true))
    }

    /// A Deny whose condition nobody can evaluate reaches the role.
    pub fn may_deny(statements: &[Value]) -> bool {
        reaching(statements, "Deny", true).any(|(s, op)| holds(s, op).is_none())
    }

    fn allowed(statements: &[Value], operation: &str, with: Option<bool>) -> bool {
        reaching(statements, "Allow", false).any(|(s, op)| op == operation && holds(s, op) == with)
    }

    /// Every operation certainly allowed (a Deny may still apply).
    pub fn allows_every_operation(statements: &[Value]) -> bool {
        OPERATIONS
            .iter()
            .all(|op| allowed(statements, op, Some(true)))
    }

    /// The role may already use the key: every operation not certainly allowed may be, through
    /// a condition, or a Deny is in doubt.
    pub fn may_already_use(statements: &[Value]) -> bool {
        may_deny(statements)
            || OPERATIONS
                .iter()
                .all(|op| allowed(statements, op, Some(true)) || allowed(statements, op, None))
    }
}

fn statements(document: &Value) -> Vec<Value> {
    match document.get("Statement") {
        Some(Value::Array(list)) => list.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => Vec::new(),
    }
}

/// The statements `patch` promises to add, under the Sids it reports.
fn expected_additions(sids: &[String]) -> Vec<Value> {
    vec![
        json!({
            "Sid": sids[0], "Effect": "Allow", "Principal": { "AWS": ROLE },
            "Action": USE_ACTIONS, "Resource": "*"
        }),
        json!({
            "Sid": sids[1], "Effect": "Allow", "Principal": { "AWS": ROLE },
            "Action": "kms:CreateGrant", "Resource": "*",
            "Condition": { "Bool": { "kms:GrantIsForAWSResource": "true" } }
        }),
    ]
}

/// Every promise `patch` makes, for one policy.
fn check_patch(original: &Value) -> Result<(), TestCaseError> {
    let text = original.to_string();
    let before = statements(original);
    match patch(&text, caller()) {
        Ok(KeyPolicyPatch::AlreadyGranted) => {
            // Allow statements cannot change a Deny in doubt, so nothing is added then either.
            prop_assert!(
                !reference::denied(&before) && reference::allows_every_operation(&before),
                "AlreadyGranted, but the policy does not grant the role"
            );
            let certain = !reference::may_deny(&before);
            prop_assert_eq!(certain, assess(&text, caller(), &[]) == Ok(Access::Granted));
        }
        Ok(KeyPolicyPatch::Patched {
            policy,
            added_sids,
            undecided,
        }) => {
            prop_assert!(
                !reference::denied(&before) && !reference::allows_every_operation(&before),
                "patched a policy that already allows the role, or that denies it"
            );
            // The property the auto mode rests on: a key the role may already use through a
            // condition (or that a Deny in doubt may close) is only patched for a human to
            // review; a patch offered as certain is one the role certainly needs.
            prop_assert_eq!(
                undecided.is_empty(),
                !reference::may_already_use(&before),
                "undecided {:?} for\n{}",
                undecided,
                text
            );
            prop_assert!(policy.len() <= 32 * 1024, "{} bytes", policy.len());
            let document: Value =
                serde_json::from_str(&policy).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let after = document
                .get("Statement")
                .and_then(Value::as_array)
                .cloned()
                .ok_or_else(|| TestCaseError::fail("no Statement list"))?;
            prop_assert_eq!(after.len(), before.len() + 2);
            prop_assert_eq!(
                &after[..before.len()],
                &before[..],
                "an existing statement moved or changed"
            );
            prop_assert_eq!(added_sids.len(), 2);
            prop_assert_ne!(&added_sids[0], &added_sids[1]);
            for sid in &added_sids {
                prop_assert!(
                    !before
                        .iter()
                        .any(|s| s.get("Sid").and_then(Value::as_str) == Some(sid)),
                    "Sid {} was already taken",
                    sid
                );
            }
            prop_assert_eq!(&after[before.len()..], &expected_additions(&added_sids)[..]);
            for added in &after[before.len()..] {
                prop_assert_eq!(&added["Principal"], &json!({ "AWS": ROLE }));
            }
            // Everything but the statement list is as it was; a Version is added when missing.
            for (key, value) in original.as_object().into_iter().flatten() {
                if key != "Statement" {
                    prop_assert_eq!(document.get(key), Some(value));
                }
            }
            if original.get("Version").is_none() {
                prop_assert_eq!(&document["Version"], "2012-10-17");
            }
            prop_assert!(
                !reference::denied(&after) && reference::allows_every_operation(&after),
                "patched, but the patched policy does not allow every operation:\n{}",
                policy
            );
            prop_assert_eq!(patch(&policy, caller()), Ok(KeyPolicyPatch::AlreadyGranted));
        }
        Err(KeyPolicyError::ExplicitDeny { .. }) => {
            prop_assert!(
                reference::denied(&before),
                "refused for a Deny that does not apply"
            );
        }
        Err(KeyPolicyError::TooLarge { bytes }) => prop_assert!(bytes > 32 * 1024),
        Err(other) => {
            return Err(TestCaseError::fail(format!(
                "a well-formed policy was refused: {other}"
            )));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn patching_keeps_every_promise(original in policy()) {
        check_patch(&original)?;
    }

    #[test]
    fn patching_a_policy_with_the_lab_root_statement_keeps_every_promise(
        mut original in policy(),
        at in any::<prop::sample::Index>(),
    ) {
        // The lab's statement, somewhere in the list: the case nodemedic meets most.
        let root = json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "kms:*", "Resource": "*"});
        let mut list = statements(&original);
        let position = at.index(list.len() + 1);
        list.insert(position, root);
        original["Statement"] = Value::Array(list);
        check_patch(&original)?;
    }

    #[test]
    fn any_text_is_answered_without_panicking(text in any::<String>()) {
        let _ = assess(&text, caller(), &[]);
        let _ = patch(&text, caller());
    }

    #[test]
    fn any_json_document_is_answered_without_panicking(
        statement_list in prop::collection::vec(
            prop_oneof![
                statement(),
                any::<String>().prop_map(Value::String),
                Just(Value::Null),
                Just(json!({"Effect": "Allow", "Principal": {"AWS": 42}, "Action": [null, 7]})),
                Just(json!({"Effect": ["Allow"], "Principal": ["*"], "Action": {"a": "kms:*"}})),
            ],
            0..6,
        ),
    ) {
        let document = json!({ "Statement": statement_list });
        let _ = patch(&document.to_string(), caller());
        let _ = assess(&document.to_string(), caller(), &[]);
    }
}
