use super::*;
use crate::core::checks::diagnose;
use crate::core::evidence::{AccessEntryLookup, Evidence, ProfileLookup, RoleLookup};

fn result(evidence: &Evidence, check: CheckId) -> CheckResult {
    diagnose(evidence)
        .checks
        .into_iter()
        .find(|result| result.check == check)
        .expect("every check has a result")
}

#[test]
fn every_cause_belongs_to_exactly_one_check() {
    for cause in Cause::ALL {
        let owners: Vec<CheckId> = CheckId::ALL
            .iter()
            .copied()
            .filter(|check| check.causes().contains(cause))
            .collect();
        assert_eq!(owners.len(), 1, "{cause}: {owners:?}");
        assert_eq!(CheckId::of(*cause), owners[0]);
    }
}

#[test]
fn check_ids_are_unique_dotted_and_name_real_nj_checks() {
    let mut ids: Vec<&str> = CheckId::ALL.iter().map(|check| check.id()).collect();
    for id in &ids {
        let (area, name) = id.split_once('.').expect("area.name");
        assert!(
            [
                "eks", "iam", "kms", "launch", "net", "instance", "ami", "k8s"
            ]
            .contains(&area),
            "{id}"
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{id}"
        );
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), CheckId::ALL.len());
    for check in CheckId::ALL {
        for nj in check.nj() {
            let number: u8 = nj
                .strip_prefix("NJ")
                .and_then(|n| n.parse().ok())
                .expect(nj);
            assert!((1..=64).contains(&number), "{check}: {nj}");
        }
        assert_eq!(CheckId::from_id(check.id()), Some(*check));
    }
}

#[test]
fn a_check_id_is_its_dotted_name_in_json() {
    let json = serde_json::to_value(CheckId::DefaultRoute).expect("json");
    assert_eq!(json, "net.default_route");
    let back: CheckId = serde_json::from_value(json).expect("back");
    assert_eq!(back, CheckId::DefaultRoute);
    assert!(serde_json::from_value::<CheckId>("net.nothing".into()).is_err());
}

#[test]
fn a_healthy_nodegroup_passes_or_skips_every_check_with_a_reason() {
    let diagnosis = diagnose(&Evidence::healthy());
    assert_eq!(diagnosis.checks.len(), CheckId::ALL.len());
    for result in &diagnosis.checks {
        match result.result {
            CheckStatus::Pass => assert!(result.skipped.is_none(), "{result:?}"),
            CheckStatus::Skipped => assert!(result.skipped.is_some(), "{result:?}"),
            _ => panic!("{result:?}"),
        }
    }
    assert_eq!(
        result(&Evidence::healthy(), CheckId::DefaultRoute).result,
        CheckStatus::Pass
    );
}

#[test]
fn a_failed_check_carries_its_causes_evidence_and_remedy() {
    let kms = result(&Evidence::lab_002(), CheckId::VolumeKeys);
    assert_eq!(kms.result, CheckStatus::Fail);
    assert_eq!(kms.causes, vec![Cause::KmsKeyPolicyBlocksAutoscaling]);
    assert!(!kms.evidence.is_empty());
    assert!(kms.remedy.is_some());

    let route = result(&Evidence::lab_000(), CheckId::DefaultRoute);
    assert_eq!(route.result, CheckStatus::Fail);
    assert_eq!(route.causes, vec![Cause::SubnetNoEgressRoute]);
}

#[test]
fn what_a_trigger_did_not_collect_is_skipped_as_not_collected() {
    let mut evidence = Evidence::lab_002();
    evidence.network = None;
    evidence.identity = None;
    let route = result(&evidence, CheckId::DefaultRoute);
    assert_eq!(route.result, CheckStatus::Skipped);
    assert!(
        matches!(route.skipped, Some(Skip::NotCollected(_))),
        "{route:?}"
    );
    let role = result(&evidence, CheckId::NodeRolePolicies);
    assert!(
        matches!(role.skipped, Some(Skip::NotCollected(_))),
        "{role:?}"
    );
}

#[test]
fn a_denied_call_skips_its_check_and_never_passes_it() {
    let evidence = Evidence::healthy()
        .cluster(|c| c.authentication_mode = Some("API".into()))
        .identity(|identity| {
            identity.role = RoleLookup::Unreadable {
                reason: "AccessDenied: iam:GetRole".into(),
            };
            identity.access_entry = AccessEntryLookup::Unreadable {
                reason: "AccessDenied: eks:DescribeAccessEntry".into(),
            };
            identity.instance_profile = Some(ProfileLookup::Unreadable {
                reason: "iam:GetInstanceProfile eks-ng: AccessDenied".into(),
            });
        });
    for check in [
        CheckId::NodeRolePolicies,
        CheckId::NodeAccessEntry,
        CheckId::InstanceProfile,
    ] {
        let denied = result(&evidence, check);
        assert_eq!(denied.result, CheckStatus::Skipped, "{denied:?}");
        assert!(
            matches!(&denied.skipped, Some(Skip::PermissionDenied(why)) if why.contains("AccessDenied")),
            "{denied:?}"
        );
    }
}

#[test]
fn a_warning_makes_its_check_warn() {
    let evidence = Evidence::healthy().health_issue(
        "AutoScalingGroupInstanceRefreshActive",
        "an instance refresh is running",
        &[],
    );
    let health = result(&evidence, CheckId::NodegroupHealth);
    assert_eq!(health.result, CheckStatus::Warn);
    assert_eq!(health.causes, vec![Cause::InstanceRefreshInProgress]);
}

#[test]
fn every_nj_check_is_run_or_said_not_to_be() {
    for number in 1..=64 {
        let nj = format!("NJ{number}");
        let run = CheckId::ALL
            .iter()
            .any(|check| check.nj().contains(&nj.as_str()));
        let unseen = NOT_CHECKED.iter().filter(|n| n.nj == nj).count();
        assert!(
            run ^ (unseen == 1) && unseen <= 1,
            "{nj}: run by a check {run}, listed as not checked {unseen} time(s)"
        );
    }
}
