//! The key-policy check when access is not certain: no KMS failure seen yet, conditions,
//! grants. nodemedic must never widen access an owner narrowed, so doubt goes to a human.

use serde_json::json;

use super::*;
use crate::core::guard::{self, History, Mode, Policy, Site};
use crate::core::plan::{FixKind, plan};

/// Every operation the role needs, as grants name them.
fn all_operations() -> [&'static str; 8] {
    crate::core::key_policy::REQUIRED_OPERATIONS.map(|op| op.trim_start_matches("kms:"))
}

/// The `aws/ebs` key policy's statement, in a customer managed key.
fn ebs_shaped(via: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "ThroughEbs", "Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"],
         "Resource": "*",
         "Condition": {"StringEquals": {"kms:CallerAccount": "123456789012", "kms:ViaService": via}}}
    ]})
    .to_string()
}

fn org_only() -> String {
    json!({"Statement": [
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "OrgOnly", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}}
    ]})
    .to_string()
}

fn key_findings(evidence: &Evidence) -> Vec<Finding> {
    diagnose(evidence)
        .findings
        .into_iter()
        .filter(|f| f.cause == Cause::KmsKeyPolicyBlocksAutoscaling)
        .collect()
}

/// What the guard decides, in auto mode, for the plan's key-policy step.
fn auto_decision(evidence: &Evidence) -> Option<guard::Decision> {
    let plan = plan(&diagnose(evidence), evidence);
    let step = plan
        .steps
        .iter()
        .find(|s| s.fix == FixKind::PatchKmsKeyPolicy)?;
    let tags = Default::default();
    let site = Site {
        account: ACCOUNT,
        region: "us-west-2",
        cluster: "c",
        nodegroup: "n",
        nodegroup_tags: &tags,
        touched: &[],
    };
    let now = crate::core::time::Timestamp::EPOCH;
    Some(guard::decide(
        &Policy::with_mode(Mode::Auto),
        step,
        &site,
        &History::default(),
        now,
    ))
}

#[test]
fn the_aws_ebs_shape_is_granted_with_or_without_a_failure() {
    for evidence in [
        Evidence::lab_002().key_policy(&ebs_shaped("ec2.us-west-2.amazonaws.com")),
        Evidence::lab_002()
            .before_any_launch()
            .key_policy(&ebs_shaped("ec2.us-west-2.amazonaws.com")),
    ] {
        assert_eq!(key_findings(&evidence), Vec::new());
        assert_eq!(auto_decision(&evidence), None, "nothing to patch");
    }
    // Through another service the role is not let in, and the launch failure confirms it.
    let rds = Evidence::lab_002().key_policy(&ebs_shaped("rds.us-west-2.amazonaws.com"));
    assert!(key_findings(&rds)[0].blocking);
    assert_eq!(
        auto_decision(&rds),
        Some(guard::Decision::Apply { approved_by: None })
    );
}

#[test]
fn a_grant_to_the_role_is_access_and_a_constrained_one_is_doubt() {
    let granted = Evidence::lab_002()
        .before_any_launch()
        .key_grant(&all_operations(), false);
    assert_eq!(key_findings(&granted), Vec::new());
    let constrained = Evidence::lab_002()
        .before_any_launch()
        .key_grant(&all_operations(), true);
    let findings = key_findings(&constrained);
    assert_eq!(findings.len(), 1);
    assert!(
        !findings[0].blocking,
        "granted or unknown is never a blocking cause"
    );
    assert!(
        findings[0].explanation.contains("grant-1"),
        "{}",
        findings[0].explanation
    );
}

#[test]
fn a_conditional_allow_nodemedic_cannot_decide_is_never_blocking_without_a_failure() {
    let evidence = Evidence::lab_002()
        .before_any_launch()
        .key_policy(&org_only());
    let findings = key_findings(&evidence);
    assert_eq!(findings.len(), 1);
    assert!(!findings[0].blocking);
    assert!(findings[0].explanation.contains("aws:PrincipalOrgID"));
    assert_eq!(auto_decision(&evidence), None, "nothing planned");
}

#[test]
fn with_a_failure_seen_a_policy_in_doubt_is_patched_only_with_approval() {
    let evidence = Evidence::lab_002().key_policy(&org_only());
    let findings = key_findings(&evidence);
    assert!(findings[0].blocking);
    let decision = auto_decision(&evidence).expect("a planned patch");
    assert!(decision.awaits_approval(), "{decision:?}");
    let guard::Decision::Hold { reason, .. } = decision else {
        unreachable!()
    };
    assert!(reason.contains("OrgOnly"), "{reason}");
}

#[test]
fn a_certain_gap_without_a_failure_is_blocking_but_waits_for_approval() {
    // The CloudTrail preflight: nothing has failed yet, the policy certainly lacks the role.
    let evidence = Evidence::lab_002().before_any_launch();
    let findings = key_findings(&evidence);
    assert!(findings[0].blocking);
    let decision = auto_decision(&evidence).expect("a planned patch");
    assert!(decision.awaits_approval(), "{decision:?}");
    // The lab itself, with the failure seen and a certain evaluation, is fixed in auto mode.
    assert_eq!(
        auto_decision(&Evidence::lab_002()),
        Some(guard::Decision::Apply { approved_by: None })
    );
}

#[test]
fn a_deny_through_the_account_is_reported_and_never_patched() {
    let policy = json!({"Statement": [
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "NoGrantsHere", "Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:CreateGrant", "Resource": "*"}
    ]})
    .to_string();
    let evidence = Evidence::lab_002().key_policy(&policy);
    assert!(matches!(
        &key_findings(&evidence)[0].subject,
        Subject::Key { explicit_deny: Some(deny), .. } if deny.contains("NoGrantsHere")
    ));
    assert_eq!(
        auto_decision(&evidence),
        None,
        "an allow cannot beat a deny"
    );
}

#[test]
fn a_policy_with_duplicate_keys_is_refused_with_the_reason() {
    let policy = r#"{"Statement": [{"Sid": "Deny", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}],
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"}]}"#;
    let evidence = Evidence::lab_002().key_policy(policy);
    let plan = plan(&diagnose(&evidence), &evidence);
    assert!(
        plan.steps
            .iter()
            .all(|s| s.fix != FixKind::PatchKmsKeyPolicy)
    );
    assert!(
        plan.notes.iter().any(|n| n.text.contains("duplicate key")),
        "{:?}",
        plan.notes
    );
}
