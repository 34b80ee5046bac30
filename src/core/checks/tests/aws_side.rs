//! The checks added for the whole AWS-side checklist: cluster and nodegroup status, addresses,
//! endpoint DNS and endpoint policies, each with a near miss that must pass.

use super::causes;
use crate::core::checks::*;
use crate::core::evidence::SecurityGroupFacts;
use crate::core::evidence::fixtures::{private_join_endpoints, sg_rule};
use crate::core::evidence::{Evidence, ImageLookup, ProfileLookup, RoleLookup};

/// The node subnet without a default route, reaching AWS through the private-join endpoints.
fn private_join(evidence: Evidence) -> Evidence {
    evidence.network(|network| {
        if let Some(table) = network.route_tables.iter_mut().find(|t| t.id == "rtb-node") {
            table.routes.retain(|r| !r.is_default_ipv4());
        }
        network.endpoints = private_join_endpoints();
        network.security_groups.push(SecurityGroupFacts {
            id: "sg-endpoints".into(),
            name: "endpoints".into(),
            ingress: vec![sg_rule("tcp", Some((443, 443)), &["10.42.0.0/16"], &[])],
            egress: vec![],
        });
    })
}

fn node_subnet(evidence: Evidence, free: i32) -> Evidence {
    evidence.network(|n| {
        if let Some(subnet) = n.subnets.iter_mut().find(|s| s.id == "subnet-node") {
            subnet.available_ips = free;
        }
    })
}

#[test]
fn a_cluster_that_is_not_active_blocks_and_an_updating_one_warns() {
    for status in ["CREATING", "DELETING", "FAILED"] {
        let evidence = Evidence::healthy().cluster(|c| c.status = status.into());
        let diagnosis = diagnose(&evidence);
        assert_eq!(diagnosis.cause(), Some(Cause::ClusterNotActive), "{status}");
        assert_eq!(
            diagnosis.findings[0].cause,
            Cause::ClusterNotActive,
            "nothing else matters first"
        );
    }
    let updating = diagnose(&Evidence::healthy().cluster(|c| c.status = "UPDATING".into()));
    assert!(updating.is_healthy());
    assert_eq!(
        updating.warnings().map(|f| f.cause).collect::<Vec<_>>(),
        vec![Cause::ClusterUpdating]
    );
    assert!(causes(&Evidence::healthy()).is_empty(), "ACTIVE passes");
}

#[test]
fn a_failed_nodegroup_without_health_issues_is_named_and_one_with_issues_is_not() {
    let failed = Evidence::healthy().nodegroup_status("CREATE_FAILED");
    assert_eq!(
        diagnose(&failed).cause(),
        Some(Cause::NodegroupCreateFailed)
    );
    // A health issue names the cause; the status adds nothing.
    let explained = Evidence::healthy()
        .nodegroup_status("DEGRADED")
        .health_issue("Ec2SubnetNotFound", "subnet gone", &["subnet-x"]);
    assert!(!causes(&explained).contains(&Cause::NodegroupCreateFailed));
    // Lab 002 after its fix: DEGRADED until a launch succeeds, with the old issue, and healthy.
    let mut fixed = Evidence::lab_002();
    fixed.keys.clear();
    assert!(!causes(&fixed).contains(&Cause::NodegroupCreateFailed));
}

#[test]
fn a_subnet_with_few_addresses_warns_and_a_roomy_one_passes() {
    let few = node_subnet(Evidence::healthy(), 3);
    let diagnosis = diagnose(&few);
    assert!(diagnosis.is_healthy());
    assert_eq!(
        diagnosis.warnings().map(|f| f.cause).collect::<Vec<_>>(),
        vec![Cause::SubnetLowOnAddresses]
    );
    let short = node_subnet(Evidence::healthy().scaling(1, 40, 1), 11);
    assert_eq!(
        causes(&short),
        vec![Cause::SubnetLowOnAddresses],
        "11 free addresses for up to 40 nodes"
    );
    let roomy = node_subnet(Evidence::healthy().scaling(1, 40, 1), 8000);
    assert!(causes(&roomy).is_empty());
    let full = node_subnet(Evidence::healthy(), 0);
    assert_eq!(
        causes(&full),
        vec![Cause::SubnetOutOfAddresses],
        "zero stays blocking"
    );
}

#[test]
fn an_interface_endpoint_with_private_dns_off_blocks_a_private_join() {
    let healthy = private_join(Evidence::healthy());
    assert!(causes(&healthy).is_empty(), "{:?}", causes(&healthy));
    let off = private_join(Evidence::healthy()).network(|n| {
        for endpoint in &mut n.endpoints {
            if endpoint.service_name.ends_with(".sts") {
                endpoint.private_dns_enabled = false;
            }
        }
    });
    let diagnosis = diagnose(&off);
    assert_eq!(
        diagnosis.cause(),
        Some(Cause::VpcEndpointPrivateDnsDisabled)
    );
    let finding = diagnosis.primary().expect("finding");
    assert!(
        finding
            .remedy
            .as_deref()
            .is_some_and(|r| r.contains("--private-dns-enabled"))
    );
    // With a default route the endpoint's DNS does not matter.
    let routed = Evidence::healthy().network(|n| {
        n.endpoints = private_join_endpoints();
        for endpoint in &mut n.endpoints {
            endpoint.private_dns_enabled = false;
        }
    });
    assert!(causes(&routed).is_empty());
}

#[test]
fn an_s3_endpoint_policy_that_leaves_out_ecr_blocks_and_one_that_allows_it_passes() {
    let with_policy = |policy: &str| {
        let policy = policy.to_string();
        private_join(Evidence::healthy()).network(move |n| {
            for endpoint in &mut n.endpoints {
                if endpoint.kind == "Gateway" {
                    endpoint.policy = Some(policy.clone());
                }
            }
        })
    };
    let own_bucket = with_policy(
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::my-bucket/*"]}]}"#,
    );
    let diagnosis = diagnose(&own_bucket);
    assert_eq!(diagnosis.cause(), Some(Cause::S3EndpointPolicyBlocksEcr));
    let check = diagnosis
        .checks
        .iter()
        .find(|c| c.check == CheckId::S3EndpointPolicy)
        .expect("check");
    assert_eq!(check.result, CheckStatus::Fail);
    let allows = with_policy(
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":["arn:aws:s3:::prod-us-west-2-starport-layer-bucket/*","arn:aws:s3:::al2023-repos-us-west-2-de612dc2/*"]}]}"#,
    );
    assert!(causes(&allows).is_empty(), "{:?}", causes(&allows));
    let layers_only = with_policy(
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::prod-us-west-2-starport-layer-bucket/*"}]}"#,
    );
    let diagnosis = diagnose(&layers_only);
    assert!(diagnosis.is_healthy(), "the package repositories only warn");
    assert_eq!(
        diagnosis.warnings().map(|f| f.cause).collect::<Vec<_>>(),
        vec![Cause::S3EndpointPolicyBlocksEcr]
    );
}

#[test]
fn amazon_linux_2_is_refused_from_kubernetes_1_33_and_allowed_before() {
    let al2 = |cluster_version: &str| {
        let version = cluster_version.to_string();
        let mut evidence = Evidence::healthy().cluster(|c| c.version = Some(version.clone()));
        evidence.nodegroup.ami_type = Some("AL2_x86_64".into());
        evidence.nodegroup.version = Some(cluster_version.into());
        evidence
    };
    assert_eq!(
        diagnose(&al2("1.33")).cause(),
        Some(Cause::AmiTypeUnsupported)
    );
    assert!(causes(&al2("1.32")).is_empty());
    assert!(causes(&Evidence::healthy()).is_empty(), "AL2023 on 1.33");
}

#[test]
fn a_custom_ami_is_judged_by_its_eks_name_and_skipped_without_one() {
    let custom = |name: &str| {
        let mut evidence = Evidence::healthy().template(|t| {
            t.image_id = Some("ami-custom".into());
            t.user_data = Some("#!/bin/bash\n/etc/eks/bootstrap.sh eks-workshop".into());
        });
        evidence.nodegroup.ami_type = Some("CUSTOM".into());
        evidence.nodegroup.version = Some("1.33".into());
        evidence.image = Some(ImageLookup::Found {
            image_id: "ami-custom".into(),
            state: "available".into(),
            name: Some(name.into()),
            root_device_name: None,
            root_snapshot_gib: None,
        });
        evidence
    };
    let al2 = custom("amazon-eks-node-1.29-v20240117");
    assert_eq!(
        causes(&al2),
        vec![Cause::AmiTypeUnsupported, Cause::NodeVersionSkew],
        "AL2, and built for 1.29"
    );
    let own = diagnose(&custom("golden-image-2025-11"));
    let skew = own
        .checks
        .iter()
        .find(|c| c.check == CheckId::VersionSkew)
        .expect("check");
    assert_eq!(skew.result, CheckStatus::Skipped);
    assert!(matches!(skew.skipped, Some(Skip::NotApplicable(_))));
}

#[test]
fn nodes_newer_than_the_control_plane_or_beyond_the_skew_are_refused() {
    let nodes_at = |version: &str| {
        let mut evidence = Evidence::healthy();
        evidence.nodegroup.version = Some(version.into());
        evidence
    };
    assert_eq!(
        diagnose(&nodes_at("1.34")).cause(),
        Some(Cause::NodeVersionSkew)
    );
    assert_eq!(
        diagnose(&nodes_at("1.29")).cause(),
        Some(Cause::NodeVersionSkew)
    );
    assert!(
        causes(&nodes_at("1.30")).is_empty(),
        "three behind is supported"
    );
    assert!(causes(&nodes_at("1.33")).is_empty());
}

#[test]
fn a_root_volume_under_its_snapshot_blocks_and_a_small_one_warns() {
    let sized = |size: i32, custom: bool| {
        let mut evidence = Evidence::healthy().template(|t| {
            t.volumes = vec![crate::core::evidence::VolumeFacts {
                device_name: if custom { "/dev/sda1" } else { "/dev/xvda" }.into(),
                encrypted: false,
                kms_key_id: None,
                size_gib: Some(size),
            }];
            if custom {
                t.image_id = Some("ami-custom".into());
                t.user_data = Some("#!/bin/bash\n/etc/eks/bootstrap.sh eks-workshop".into());
            }
        });
        if custom {
            evidence.nodegroup.ami_type = Some("CUSTOM".into());
            evidence.image = Some(ImageLookup::Found {
                image_id: "ami-custom".into(),
                state: "available".into(),
                name: None,
                root_device_name: Some("/dev/sda1".into()),
                root_snapshot_gib: Some(15),
            });
        }
        evidence
    };
    assert_eq!(
        diagnose(&sized(10, true)).cause(),
        Some(Cause::RootVolumeTooSmall)
    );
    let small = diagnose(&sized(16, true));
    assert!(small.is_healthy(), "at least the snapshot: launches work");
    assert_eq!(
        small.warnings().map(|f| f.cause).collect::<Vec<_>>(),
        vec![Cause::RootVolumeTooSmall]
    );
    assert_eq!(causes(&sized(10, false)), vec![Cause::RootVolumeTooSmall]);
    assert!(diagnose(&sized(10, false)).warnings().next().is_some());
    assert!(causes(&sized(30, true)).is_empty());
    assert!(causes(&sized(30, false)).is_empty());
}

#[test]
fn imdsv2_with_one_hop_warns_and_two_hops_pass() {
    let with = |tokens: &str, hops: i32| {
        let tokens = tokens.to_string();
        Evidence::healthy().template(move |t| {
            t.metadata_options = Some(crate::core::evidence::MetadataOptions {
                http_tokens: Some(tokens.clone()),
                hop_limit: Some(hops),
            });
        })
    };
    let one = diagnose(&with("required", 1));
    assert!(one.is_healthy());
    assert_eq!(
        one.warnings().map(|f| f.cause).collect::<Vec<_>>(),
        vec![Cause::ImdsHopLimitTooLow]
    );
    assert!(causes(&with("required", 2)).is_empty());
    assert!(
        causes(&with("optional", 1)).is_empty(),
        "IMDSv1 needs no token"
    );
}

#[test]
fn a_cluster_role_without_eks_trust_or_the_cluster_policy_is_invalid() {
    use crate::core::evidence::RoleLookup;
    let with_role = |role: RoleLookup| {
        let mut evidence = Evidence::healthy();
        evidence.cluster_role = Some(role);
        evidence
    };
    let eks_trust = r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let found = |trust: &str, policies: &[&str]| RoleLookup::Found {
        name: "eks-cluster".into(),
        attached_policy_arns: policies
            .iter()
            .map(|p| format!("arn:aws:iam::aws:policy/{p}"))
            .collect(),
        tags: Default::default(),
        trust_policy: Some(trust.into()),
    };
    let good = with_role(found(eks_trust, &["AmazonEKSClusterPolicy"]));
    assert!(causes(&good).is_empty());
    let no_policy = with_role(found(eks_trust, &[]));
    assert_eq!(
        diagnose(&no_policy).cause(),
        Some(Cause::ClusterRoleInvalid)
    );
    let ec2_trust = with_role(found(
        crate::core::evidence::fixtures::EC2_TRUST,
        &["AmazonEKSClusterPolicy"],
    ));
    assert_eq!(
        diagnose(&ec2_trust).cause(),
        Some(Cause::ClusterRoleInvalid)
    );
    let gone = with_role(RoleLookup::NotFound {
        name: "eks-cluster".into(),
    });
    assert_eq!(diagnose(&gone).cause(), Some(Cause::ClusterRoleInvalid));
    let unreadable = diagnose(&with_role(RoleLookup::Unreadable {
        reason: "AccessDenied".into(),
    }));
    assert!(unreadable.is_healthy());
    let check = unreadable
        .checks
        .iter()
        .find(|c| c.check == CheckId::ClusterRole)
        .expect("check");
    assert!(matches!(check.skipped, Some(Skip::PermissionDenied(_))));
}

#[test]
fn a_launch_template_with_settings_eks_forbids_is_invalid() {
    let evidence = Evidence::healthy().template(|t| {
        t.forbidden_settings = vec!["IamInstanceProfile=arn:aws:iam::1:instance-profile/x".into()];
    });
    let diagnosis = diagnose(&evidence);
    assert_eq!(diagnosis.cause(), Some(Cause::LaunchTemplateInvalid));
    let check = diagnosis
        .checks
        .iter()
        .find(|c| c.check == CheckId::LaunchTemplate)
        .expect("check");
    assert_eq!(check.result, CheckStatus::Fail);
    assert!(causes(&Evidence::healthy().template(|_| {})).is_empty());
}

#[test]
fn an_instance_pending_past_five_minutes_is_stuck_and_a_young_one_is_not() {
    let pending_for = |minutes: i64| {
        let mut evidence = Evidence::healthy();
        evidence.instance = Some(crate::core::evidence::InstanceFacts {
            id: "i-slow".into(),
            state: "pending".into(),
            subnet_id: Some("subnet-node".into()),
            public_ip: None,
            security_group_ids: vec![],
            launched_at: Some(evidence.trigger.time - time::Duration::minutes(minutes)),
            availability_zone: None,
            private_dns_name: None,
        });
        evidence
    };
    assert_eq!(
        diagnose(&pending_for(12)).cause(),
        Some(Cause::InstanceStuckPending)
    );
    assert!(causes(&pending_for(2)).is_empty());
}

fn with_profile(lookup: ProfileLookup) -> Evidence {
    Evidence::healthy().identity(|identity| identity.instance_profile = Some(lookup))
}

#[test]
fn an_instance_profile_that_is_gone_empty_or_absent_is_invalid() {
    let gone = with_profile(ProfileLookup::NotFound {
        template: "lt-eks version 1".into(),
        name: "eks-ng-profile".into(),
    });
    let empty = with_profile(ProfileLookup::Found {
        template: "lt-eks version 1".into(),
        name: "eks-ng-profile".into(),
        role_arns: vec![],
        tags: Default::default(),
    });
    let other = with_profile(ProfileLookup::Found {
        template: "lt-eks version 1".into(),
        name: "eks-ng-profile".into(),
        role_arns: vec!["arn:aws:iam::123456789012:role/web".into()],
        tags: Default::default(),
    });
    let absent = with_profile(ProfileLookup::NotInTemplate {
        template: "lt-mine version 3".into(),
    });
    for (evidence, says) in [
        (gone, "does not exist"),
        (empty, "holds no role"),
        (other, "holds arn:aws:iam::123456789012:role/web"),
        (absent, "gives no instance profile"),
    ] {
        let diagnosis = diagnose(&evidence);
        assert_eq!(
            diagnosis.cause(),
            Some(Cause::InstanceProfileInvalid),
            "{says}"
        );
        let finding = diagnosis.primary().unwrap();
        assert!(finding.summary.contains(says), "{}", finding.summary);
        assert!(
            finding.remedy.as_deref().unwrap_or("").starts_with("aws ")
                || finding.remedy.as_deref().unwrap_or("").starts_with("Point")
        );
    }
    let other = with_profile(ProfileLookup::Found {
        template: "lt-eks version 1".into(),
        name: "eks-ng-profile".into(),
        role_arns: vec!["arn:aws:iam::123456789012:role/web".into()],
        tags: Default::default(),
    });
    let remedy = diagnose(&other).primary().unwrap().remedy.clone().unwrap();
    assert!(
        remedy.contains("remove-role-from-instance-profile --instance-profile-name eks-ng-profile --role-name web && aws iam add-role-to-instance-profile"),
        "a profile holds one role: {remedy}"
    );
}

#[test]
fn a_profile_holding_the_node_role_under_a_path_passes() {
    let evidence = with_profile(ProfileLookup::Found {
        template: "lt-eks version 1".into(),
        name: "eks-ng-profile".into(),
        role_arns: vec!["arn:aws:iam::123456789012:role/nodes/eks-node".into()],
        tags: Default::default(),
    });
    assert!(diagnose(&evidence).is_healthy());
    let check = diagnose(&evidence)
        .checks
        .into_iter()
        .find(|c| c.check == CheckId::InstanceProfile)
        .unwrap();
    assert_eq!(check.result, CheckStatus::Pass, "{check:?}");
}

#[test]
fn a_deleted_node_role_is_the_cause_not_its_empty_profile() {
    let evidence = with_profile(ProfileLookup::Found {
        template: "lt-eks version 1".into(),
        name: "eks-ng-profile".into(),
        role_arns: vec![],
        tags: Default::default(),
    })
    .identity(|identity| {
        identity.role = RoleLookup::NotFound {
            name: "eks-node".into(),
        }
    });
    let diagnosis = diagnose(&evidence);
    assert_eq!(diagnosis.cause(), Some(Cause::NodeRoleNotFound));
    assert!(
        !diagnosis
            .blocking()
            .any(|f| f.cause == Cause::InstanceProfileInvalid)
    );
}

#[test]
fn an_update_in_progress_on_an_active_cluster_warns_and_names_it() {
    use crate::core::evidence::ClusterUpdate;
    let evidence = Evidence::healthy().cluster(|c| {
        c.updates_in_progress = Some(vec![ClusterUpdate {
            id: "u-1".into(),
            kind: "EndpointAccessUpdate".into(),
            created_at: Some("2026-11-30T10:00:00Z".into()),
        }])
    });
    let diagnosis = diagnose(&evidence);
    assert!(diagnosis.is_healthy(), "a warning, not a blocking cause");
    let warning = diagnosis.warnings().next().expect("a warning");
    assert_eq!(warning.cause, Cause::ClusterUpdating);
    assert!(
        warning.summary.contains("u-1 (EndpointAccessUpdate)"),
        "{}",
        warning.summary
    );
    assert!(
        warning
            .evidence
            .iter()
            .any(|f| f.observed.contains("InProgress since 2026-11-30T10:00:00Z"))
    );
    // Near miss: updates read, none in progress.
    let quiet = diagnose(&Evidence::healthy());
    assert_eq!(quiet.warnings().count(), 0);
    let check = quiet
        .checks
        .iter()
        .find(|c| c.check == CheckId::ClusterStatus)
        .unwrap();
    assert_eq!(check.result, CheckStatus::Pass);
}
