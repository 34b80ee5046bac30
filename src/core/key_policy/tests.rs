//! Unit tests of the key-policy evaluator and patcher.

use super::*;

const ROLE: &str = "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling";
const KEY: &str = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-1234-abcd-1234-1234abcd1234";

fn caller() -> Caller<'static> {
    Caller::for_key(ROLE, KEY)
}
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
    match patch(policy, caller()) {
        Ok(KeyPolicyPatch::Patched {
            policy,
            added_sids,
            undecided,
        }) => {
            assert_eq!(undecided, Vec::<String>::new(), "a certain evaluation");
            (policy, added_sids)
        }
        other => panic!("expected a patch, got {other:?}"),
    }
}

#[test]
fn the_lab_policy_lets_only_the_account_root_in() {
    assert_eq!(
        assess(LAB_POLICY, caller(), &[]).unwrap(),
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
    assert_eq!(assess(&policy, caller(), &[]).unwrap(), Access::Granted);
}

#[test]
fn a_policy_that_already_grants_the_role_is_left_alone() {
    let (policy, _) = patched(LAB_POLICY);
    assert_eq!(
        patch(&policy, caller()).unwrap(),
        KeyPolicyPatch::AlreadyGranted
    );
}

#[test]
fn kms_star_for_the_role_counts_as_granted() {
    let policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": [ROLE]}, "Action": "kms:*", "Resource": "*"}]});
    assert_eq!(
        assess(&policy.to_string(), caller(), &[]).unwrap(),
        Access::Granted
    );
}

#[test]
fn a_use_statement_without_create_grant_is_still_missing_create_grant() {
    let policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": USE_ACTIONS, "Resource": "*"}]});
    assert_eq!(
        assess(&policy.to_string(), caller(), &[]).unwrap(),
        Access::Missing(vec!["kms:CreateGrant"])
    );
    let (patched_policy, _) = patched(&policy.to_string());
    assert_eq!(
        assess(&patched_policy, caller(), &[]).unwrap(),
        Access::Granted
    );
}

#[test]
fn the_aws_ebs_shape_lets_the_role_in_and_is_never_patched() {
    // The `aws/ebs` key policy's statement, copied into a customer managed key: everyone in the
    // account, through EC2. Auto Scaling's launches meet both conditions.
    let ebs = json!({"Statement": [{"Sid": "Allow access through EBS for all principals in the account that are authorized to use EBS",
        "Effect": "Allow", "Principal": {"AWS": "*"},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:CallerAccount": "123456789012", "kms:ViaService": "ec2.us-west-2.amazonaws.com"}}}]});
    assert_eq!(
        assess(&ebs.to_string(), caller(), &[]).unwrap(),
        Access::Granted
    );
    assert_eq!(
        patch(&ebs.to_string(), caller()).unwrap(),
        KeyPolicyPatch::AlreadyGranted
    );
    // Through another service it does not.
    let rds = ebs.to_string().replace("ec2.us-west-2", "rds.us-west-2");
    assert!(matches!(
        assess(&rds, caller(), &[]).unwrap(),
        Access::Missing(_)
    ));
}

#[test]
fn a_condition_nodemedic_cannot_evaluate_is_undecided_and_patched_only_for_review() {
    let policy = json!({"Statement": [{"Sid": "OrgOnly", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}}]});
    let Access::Undecided { missing, reasons } =
        assess(&policy.to_string(), caller(), &[]).unwrap()
    else {
        panic!("an undecidable condition is not a verdict");
    };
    assert_eq!(missing, REQUIRED_OPERATIONS.to_vec());
    assert!(
        reasons[0].contains("OrgOnly") && reasons[0].contains("aws:PrincipalOrgID"),
        "{reasons:?}"
    );
    let Ok(KeyPolicyPatch::Patched { undecided, .. }) = patch(&policy.to_string(), caller()) else {
        panic!("a patch for a human to approve");
    };
    assert!(!undecided.is_empty());
}

#[test]
fn a_grant_to_the_role_is_as_good_as_a_statement() {
    let grant = |operations: &[&str], constrained| KeyGrant {
        grant_id: "g-1".into(),
        grantee_principal: ROLE.into(),
        operations: operations.iter().map(|o| o.to_string()).collect(),
        constrained,
    };
    let all = REQUIRED_OPERATIONS.map(|op| op.trim_start_matches("kms:"));
    assert_eq!(
        assess(LAB_POLICY, caller(), &[grant(&all, false)]).unwrap(),
        Access::Granted
    );
    assert!(matches!(
        assess(LAB_POLICY, caller(), &[grant(&all, true)]).unwrap(),
        Access::Undecided { reasons, .. } if reasons[0].contains("g-1")
    ));
    assert_eq!(
        assess(LAB_POLICY, caller(), &[grant(&all[..7], false)]).unwrap(),
        Access::Missing(vec!["kms:CreateGrant"])
    );
    let someone_else = KeyGrant {
        grantee_principal: "arn:aws:iam::123456789012:role/other".into(),
        ..grant(&all, false)
    };
    assert!(matches!(
        assess(LAB_POLICY, caller(), &[someone_else]).unwrap(),
        Access::Missing(_)
    ));
}

#[test]
fn a_deny_through_the_account_principal_blocks_the_role() {
    for account in [
        json!("arn:aws:iam::123456789012:root"),
        json!("123456789012"),
    ] {
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "NoDecrypt", "Effect": "Deny", "Principal": {"AWS": account}, "Action": "kms:Decrypt", "Resource": "*"}
        ]});
        assert_eq!(
            assess(&policy.to_string(), caller(), &[]).unwrap(),
            Access::Denied {
                sid: "NoDecrypt".into(),
                action: "kms:Decrypt".into()
            }
        );
    }
    let other_account = json!({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::210987654321:root"}, "Action": "kms:*", "Resource": "*"}
    ]});
    assert_eq!(
        assess(&other_account.to_string(), caller(), &[]).unwrap(),
        Access::Granted
    );
}

#[test]
fn a_conditional_deny_is_undecided_unless_its_condition_is_known() {
    let deny = |condition: Value| {
        json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "Guarded", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": condition}
        ]})
        .to_string()
    };
    let unknown = deny(json!({"StringNotEquals": {"aws:SourceVpce": "vpce-1"}}));
    assert!(matches!(
        assess(&unknown, caller(), &[]).unwrap(),
        Access::Undecided { missing, reasons } if missing.is_empty() && reasons[0].contains("Guarded")
    ));
    let met = deny(json!({"StringEquals": {"kms:ViaService": "ec2.us-west-2.amazonaws.com"}}));
    assert!(matches!(
        assess(&met, caller(), &[]).unwrap(),
        Access::Denied { .. }
    ));
    let not_met = deny(json!({"StringEquals": {"kms:ViaService": "rds.us-west-2.amazonaws.com"}}));
    assert_eq!(assess(&not_met, caller(), &[]).unwrap(), Access::Granted);
}

#[test]
fn duplicate_keys_are_refused_never_patched() {
    // serde_json alone would keep the second Statement and drop the Deny.
    let policy = r#"{"Version": "2012-10-17",
        "Statement": [{"Sid": "NoDecrypt", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}],
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"}]}"#;
    let refused = patch(policy, caller()).unwrap_err();
    assert!(
        matches!(&refused, KeyPolicyError::NotJson(why) if why.contains("duplicate key")),
        "{refused}"
    );
    assert!(assess(policy, caller(), &[]).is_err());
}

#[test]
fn an_explicit_deny_is_refused_not_patched() {
    let policy = json!({"Statement": [
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "NoDecrypt", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}
    ]});
    assert_eq!(
        patch(&policy.to_string(), caller()).unwrap_err(),
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
        patch(&admins_only, caller()).unwrap_err(),
        KeyPolicyError::ExplicitDeny {
            sid: "OnlyAdmins".into(),
            action: "kms:Encrypt".into()
        }
    );
    // Excepting the role itself leaves the allow statements something to do.
    let role_excepted = deny_all_but(json!(["arn:aws:iam::123456789012:root", ROLE]));
    let (policy, _) = patched(&role_excepted);
    assert_eq!(assess(&policy, caller(), &[]).unwrap(), Access::Granted);
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
        patch("{not json", caller()),
        Err(KeyPolicyError::NotJson(_))
    ));
    assert_eq!(patch("{}", caller()), Err(KeyPolicyError::NoStatements));
    assert_eq!(patch("[]", caller()), Err(KeyPolicyError::NoStatements));
    assert_eq!(
        patch(r#"{"Statement": "nope"}"#, caller()),
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
        patch(&policy.to_string(), caller()),
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
    }) = patch(&policy.to_string(), caller())
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
    assert_eq!(
        assess(&policy.to_string(), caller(), &[]).unwrap(),
        Access::Granted
    );
}

#[test]
fn added_statements_lists_only_the_new_ones() {
    let (policy, _) = patched(LAB_POLICY);
    let added = added_statements(LAB_POLICY, &policy);
    assert_eq!(added.len(), 2);
    assert_eq!(added[0]["Sid"], USE_SID);
}
