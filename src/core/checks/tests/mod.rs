mod aws_side;
mod bootstrap;
mod checklist;
mod firewall;
mod health;
mod kms;
mod kubernetes;

use super::*;
use crate::core::evidence::fixtures::*;
use crate::core::evidence::{Evidence, RouteTableFacts};

/// Every finding's cause, blocking or not.
pub(super) fn causes(evidence: &Evidence) -> Vec<Cause> {
    diagnose(evidence)
        .findings
        .iter()
        .map(|f| f.cause)
        .collect()
}

#[test]
fn lab_002_is_a_key_policy_that_locks_out_autoscaling() {
    let diagnosis = diagnose(&Evidence::lab_002());
    assert_eq!(
        diagnosis.cause(),
        Some(Cause::KmsKeyPolicyBlocksAutoscaling)
    );
    let finding = diagnosis.primary().unwrap();
    assert!(finding.summary.contains(KEY_ARN));
    assert!(finding.explanation.contains("AWSServiceRoleForAutoScaling"));
    assert!(
        finding
            .evidence
            .iter()
            .any(|f| f.observed.contains("InvalidKMSKey")),
        "the launch failure text is part of the evidence: {:?}",
        finding.evidence
    );
    match &finding.subject {
        Subject::Key {
            key_arn,
            cross_account,
            service_linked_role,
            explicit_deny,
            policy,
            doubt,
        } => {
            assert_eq!(
                doubt, &None,
                "a KMS failure was seen and the policy is certain"
            );
            assert_eq!(key_arn, KEY_ARN);
            assert!(!cross_account);
            assert_eq!(service_linked_role, ROLE);
            assert_eq!(explicit_deny, &None);
            assert_eq!(policy.as_deref(), Some(ROOT_ONLY_POLICY));
        }
        other => panic!("unexpected subject {other:?}"),
    }
}

#[test]
fn the_generic_client_error_on_launch_also_points_at_the_key() {
    let evidence = Evidence::lab_002().status_message(
        "Instance became unhealthy while waiting for instance to be in InService state. Termination Reason: Client.InternalError: Client error on launch",
    );
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::KmsKeyPolicyBlocksAutoscaling);
    assert!(
        finding
            .evidence
            .iter()
            .any(|f| f.observed.contains("Client error on launch"))
    );
}

#[test]
fn a_key_already_granted_to_the_role_is_not_blamed() {
    let granted = granted_policy();
    let evidence = Evidence::lab_002().key_policy(&granted);
    assert_eq!(causes(&evidence), vec![Cause::Unknown]);
    let diagnosis = diagnose(&evidence);
    assert!(
        diagnosis
            .primary()
            .unwrap()
            .summary
            .contains("InvalidKMSKey"),
        "unknown keeps the raw message"
    );
}

#[test]
fn a_disabled_or_deleted_key_is_unusable_not_a_policy_problem() {
    for state in [
        "Disabled",
        "PendingDeletion",
        "PendingImport",
        "Unavailable",
    ] {
        let evidence = Evidence::lab_002().key_state(state);
        assert_eq!(
            causes(&evidence),
            vec![Cause::KmsKeyUnusable],
            "state {state}"
        );
        assert!(
            diagnose(&evidence)
                .primary()
                .unwrap()
                .summary
                .contains(state)
        );
    }
}

#[test]
fn a_missing_key_is_unusable() {
    let evidence = Evidence::lab_002().key_missing();
    let diagnosis = diagnose(&evidence);
    assert_eq!(diagnosis.cause(), Some(Cause::KmsKeyUnusable));
    assert!(matches!(
        &diagnosis.primary().unwrap().subject,
        Subject::UnusableKey { state, .. } if state == "missing"
    ));
}

#[test]
fn a_cross_account_key_is_suspected_from_the_failure_and_marked_cross_account() {
    let evidence = Evidence::lab_002().key_owned_by("444455556666");
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::KmsKeyPolicyBlocksAutoscaling);
    assert!(finding.explanation.contains("444455556666"));
    assert!(matches!(
        finding.subject,
        Subject::Key {
            cross_account: true,
            ..
        }
    ));
}

#[test]
fn an_unreadable_cross_account_key_without_a_kms_failure_is_not_blamed() {
    let evidence = Evidence::lab_002()
        .key_owned_by("444455556666")
        .status_message("We currently do not have sufficient t3.medium capacity in the Availability Zone you requested (us-west-2a).");
    assert_eq!(
        causes(&evidence),
        vec![Cause::InsufficientCapacity],
        "the failure text, not the key, explains it"
    );
}

#[test]
fn an_explicit_deny_is_reported_with_the_statement() {
    let policy = r#"{"Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"},{"Sid":"NoGrants","Effect":"Deny","Principal":"*","Action":"kms:CreateGrant","Resource":"*"}]}"#;
    let finding = diagnose(&Evidence::lab_002().key_policy(policy))
        .primary()
        .cloned()
        .unwrap();
    assert_eq!(finding.cause, Cause::KmsKeyPolicyBlocksAutoscaling);
    assert!(
        matches!(finding.subject, Subject::Key { explicit_deny: Some(ref d), .. } if d.contains("NoGrants"))
    );
}

#[test]
fn an_aws_managed_key_is_never_blamed() {
    let mut evidence = Evidence::lab_002();
    if let crate::core::evidence::KeyLookup::Found(metadata) = &mut evidence.keys[0].lookup {
        metadata.manager = "AWS".into();
    }
    assert_eq!(causes(&evidence), vec![Cause::Unknown]);
}

#[test]
fn an_unusable_key_outranks_a_policy_problem_on_another_key() {
    let mut evidence = Evidence::lab_002();
    let mut second = evidence.keys[0].clone();
    second.reference = "alias/other".into();
    second.lookup = crate::core::evidence::KeyLookup::NotFound {
        reason: "NotFoundException".into(),
    };
    evidence.keys.push(second);
    assert_eq!(
        causes(&evidence),
        vec![Cause::KmsKeyUnusable, Cause::KmsKeyPolicyBlocksAutoscaling]
    );
}

#[test]
fn lab_000_is_a_subnet_without_egress() {
    let diagnosis = diagnose(&Evidence::lab_000());
    assert_eq!(diagnosis.cause(), Some(Cause::SubnetNoEgressRoute));
    let finding = diagnosis.primary().unwrap();
    assert!(finding.evidence.iter().any(|f| f.resource == "rtb-new"));
    assert!(finding.evidence.iter().any(|f| f.resource == "i-new"));
    assert_eq!(
        finding.subject,
        Subject::Subnet {
            subnet_id: "subnet-new".into(),
            route_table_id: Some("rtb-new".into()),
            vpc_id: "vpc-1".into(),
            availability_zone: Some("us-west-2a".into()),
        }
    );
}

#[test]
fn a_subnet_that_joins_through_vpc_endpoints_only_is_not_no_egress() {
    let evidence = Evidence::lab_000().network(|n| n.endpoints = private_join_endpoints());
    assert!(diagnose(&evidence).is_healthy());
}

#[test]
fn one_missing_endpoint_is_enough_to_block_a_private_join() {
    let evidence = Evidence::lab_000().network(|n| {
        n.endpoints = private_join_endpoints();
        n.endpoints.retain(|e| !e.service_name.ends_with(".sts"));
    });
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::SubnetNoEgressRoute);
    assert!(finding.explanation.contains("sts"));
    assert!(!finding.explanation.contains("ecr.api"));
}

#[test]
fn endpoints_of_another_region_or_not_available_do_not_count() {
    let evidence = Evidence::lab_000().network(|n| {
        n.endpoints = private_join_endpoints();
        n.endpoints[0].state = "pending".into();
        n.endpoints[1].service_name = "com.amazonaws.eu-west-1.ecr.api".into();
    });
    assert_eq!(causes(&evidence), vec![Cause::SubnetNoEgressRoute]);
}

#[test]
fn a_subnet_with_an_active_default_route_is_healthy() {
    for target in ["nat-a", "igw-1", "tgw-1"] {
        let evidence = Evidence::lab_000().network(|n| {
            let table = n
                .route_tables
                .iter_mut()
                .find(|t| t.id == "rtb-new")
                .unwrap();
            table.routes.push(default_route(target, "active"));
            // A subnet routed to an internet gateway is public: its instances need public IPs.
            n.subnets
                .iter_mut()
                .find(|s| s.id == "subnet-new")
                .unwrap()
                .map_public_ip_on_launch = true;
        });
        assert!(
            diagnose(&evidence).is_healthy(),
            "default route to {target}"
        );
    }
}

#[test]
fn a_subnet_without_explicit_association_uses_the_main_table() {
    let evidence = Evidence::lab_000().network(|n| {
        n.route_tables.retain(|t| t.id != "rtb-new");
    });
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert!(matches!(
        finding.subject,
        Subject::Subnet { route_table_id: Some(ref id), .. } if id == "rtb-main"
    ));
    let healthy = Evidence::lab_000().network(|n| {
        n.route_tables.retain(|t| t.id != "rtb-new");
        let main: &mut RouteTableFacts = n.route_tables.iter_mut().find(|t| t.main).unwrap();
        main.routes.push(default_route("nat-a", "active"));
    });
    assert!(diagnose(&healthy).is_healthy());
}

#[test]
fn an_unmatched_failure_is_unknown_with_the_raw_message() {
    let evidence = Evidence::lab_002()
        .status_message("Something new happened. Launching EC2 instance failed.");
    let mut evidence = evidence;
    evidence.keys.clear();
    let diagnosis = diagnose(&evidence);
    assert_eq!(diagnosis.cause(), Some(Cause::Unknown));
    assert!(
        diagnosis
            .primary()
            .unwrap()
            .summary
            .contains("Something new happened")
    );
    assert_eq!(diagnosis.primary().unwrap().subject, Subject::None);
}

#[test]
fn a_healthy_successful_launch_has_no_findings() {
    let evidence = Evidence::lab_000().network(|n| {
        let table = n
            .route_tables
            .iter_mut()
            .find(|t| t.id == "rtb-new")
            .unwrap();
        table.routes.push(default_route("nat-a", "active"));
    });
    let diagnosis = diagnose(&evidence);
    assert!(diagnosis.is_healthy());
    assert_eq!(diagnosis.cause(), None);
}

#[test]
fn every_cause_has_a_unique_code_and_documentation() {
    let mut codes: Vec<&str> = Cause::ALL.iter().map(|c| c.code()).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), Cause::ALL.len());
    for cause in Cause::ALL {
        assert_eq!(Cause::from_code(cause.code()), Some(*cause));
        let doc = cause.doc();
        assert!(!doc.title.is_empty() && !doc.evidence.is_empty() && !doc.remedy.is_empty());
        assert_eq!(
            serde_json::to_value(cause).unwrap(),
            serde_json::Value::String(cause.code().into())
        );
    }
}

#[test]
fn a_key_nodemedic_may_not_describe_is_suspected_only_when_launches_fail_on_kms() {
    let mut evidence = Evidence::lab_002();
    evidence.keys[0].reference = "arn:aws:kms:us-west-2:444455556666:key/abc".into();
    evidence.keys[0].lookup = crate::core::evidence::KeyLookup::Unreadable {
        reason: "AccessDeniedException: not authorized".into(),
    };
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::KmsKeyPolicyBlocksAutoscaling);
    assert!(matches!(
        finding.subject,
        Subject::Key {
            cross_account: true,
            policy: None,
            ..
        }
    ));
    assert!(finding.explanation.contains("444455556666"));
    let quiet =
        evidence.status_message("There is no Spot capacity available that matches your request.");
    assert_eq!(causes(&quiet), vec![Cause::InsufficientCapacity]);
}

/// Causes of the blocking findings.
pub(super) fn blocking(evidence: &Evidence) -> Vec<Cause> {
    diagnose(evidence).blocking().map(|f| f.cause).collect()
}

#[test]
fn the_healthy_fixture_is_healthy_with_no_warnings() {
    let diagnosis = diagnose(&Evidence::healthy());
    assert!(diagnosis.findings.is_empty(), "{:#?}", diagnosis.findings);
}
