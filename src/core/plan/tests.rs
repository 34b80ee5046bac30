use super::*;
use crate::core::checks::diagnose;
use crate::core::evidence::fixtures::*;
use crate::core::evidence::{Evidence, NatGatewayFacts, SubnetFacts};

fn plan_for(evidence: &Evidence) -> Plan {
    plan(&diagnose(evidence), evidence)
}

fn kinds(plan: &Plan) -> Vec<FixKind> {
    plan.steps.iter().map(|s| s.fix).collect()
}

fn note_for(plan: &Plan, fix: Option<FixKind>) -> String {
    plan.notes
        .iter()
        .find(|n| n.fix == fix)
        .map(|n| n.text.clone())
        .unwrap_or_else(|| panic!("no note for {fix:?} in {:?}", plan.notes))
}

#[test]
fn lab_002_patches_the_key_policy_then_cycles() {
    let plan = plan_for(&Evidence::lab_002());
    assert_eq!(
        kinds(&plan),
        vec![FixKind::PatchKmsKeyPolicy, FixKind::CycleNodegroup]
    );
    match &plan.steps[0].action {
        Action::PutKeyPolicy {
            key_id,
            policy_name,
            policy,
            previous_policy,
        } => {
            assert_eq!(key_id, KEY_ARN);
            assert_eq!(policy_name, "default");
            assert_eq!(previous_policy, ROOT_ONLY_POLICY);
            assert!(grants_role(policy));
        }
        other => panic!("unexpected {other:?}"),
    }
    match &plan.steps[1].action {
        Action::CycleNodegroup {
            cluster,
            nodegroup,
            original,
            scale_down,
            restore,
        } => {
            assert_eq!(
                (cluster.as_str(), nodegroup.as_str()),
                ("eks-workshop", "new_nodegroup_1")
            );
            assert_eq!(
                *original,
                Scaling {
                    min: 0,
                    max: 1,
                    desired: 1
                }
            );
            assert_eq!(
                *scale_down,
                ScalingUpdate {
                    min_size: None,
                    desired_size: 0
                }
            );
            assert_eq!(
                *restore,
                ScalingUpdate {
                    min_size: None,
                    desired_size: 1
                }
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
}

#[test]
fn a_cycle_lowers_min_only_when_it_is_above_zero_and_restores_it() {
    let plan = plan_for(&Evidence::lab_002().scaling(2, 4, 3));
    let Action::CycleNodegroup {
        scale_down,
        restore,
        ..
    } = &plan.steps[1].action
    else {
        panic!("expected a cycle")
    };
    assert_eq!(
        *scale_down,
        ScalingUpdate {
            min_size: Some(0),
            desired_size: 0
        }
    );
    assert_eq!(
        *restore,
        ScalingUpdate {
            min_size: Some(2),
            desired_size: 3
        }
    );
    let calls = plan.steps[1].action.api_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0].parameters["scalingConfig"],
        json!({"minSize": 0, "desiredSize": 0})
    );
    assert_eq!(
        calls[1].parameters["scalingConfig"],
        json!({"minSize": 2, "desiredSize": 3})
    );
}

#[test]
fn a_disabled_key_gets_no_fix_and_a_remedy() {
    let plan = plan_for(&Evidence::lab_002().key_state("Disabled"));
    assert!(plan.is_empty());
    assert!(note_for(&plan, None).contains("aws kms enable-key"));
}

#[test]
fn an_already_granted_key_gets_no_change() {
    let granted = granted_policy();
    let plan = plan_for(&Evidence::lab_002().key_policy(&granted));
    assert!(plan.is_empty());
    assert!(
        !plan
            .notes
            .iter()
            .any(|n| n.fix == Some(FixKind::PatchKmsKeyPolicy))
    );
}

#[test]
fn a_cross_account_key_is_not_changed_and_the_grant_is_explained() {
    let plan = plan_for(&Evidence::lab_002().key_owned_by("444455556666"));
    assert!(plan.is_empty());
    let note = note_for(&plan, Some(FixKind::PatchKmsKeyPolicy));
    assert!(note.contains("444455556666"));
    assert!(note.contains("aws kms create-grant"));
}

#[test]
fn an_explicit_deny_is_not_overridden() {
    let policy = r#"{"Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"},{"Sid":"NoGrants","Effect":"Deny","Principal":"*","Action":"kms:CreateGrant","Resource":"*"}]}"#;
    let plan = plan_for(&Evidence::lab_002().key_policy(policy));
    assert!(plan.is_empty());
    assert!(note_for(&plan, Some(FixKind::PatchKmsKeyPolicy)).contains("NoGrants"));
}

#[test]
fn an_unusable_key_stops_the_cycle_of_another_fix() {
    let mut evidence = Evidence::lab_002();
    let mut second = evidence.keys[0].clone();
    second.reference = "alias/gone".into();
    second.lookup = crate::core::evidence::KeyLookup::NotFound {
        reason: "NotFoundException".into(),
    };
    evidence.keys.push(second);
    let plan = plan_for(&evidence);
    assert_eq!(kinds(&plan), vec![FixKind::PatchKmsKeyPolicy]);
    assert!(note_for(&plan, Some(FixKind::CycleNodegroup)).contains("unusable"));
}

#[test]
fn lab_000_adds_the_route_to_the_clusters_nat_then_cycles() {
    let plan = plan_for(&Evidence::lab_000());
    assert_eq!(
        kinds(&plan),
        vec![FixKind::AddNatRoute, FixKind::CycleNodegroup]
    );
    assert_eq!(
        plan.steps[0].action,
        Action::CreateRoute {
            route_table_id: "rtb-new".into(),
            destination_cidr_block: "0.0.0.0/0".into(),
            nat_gateway_id: "nat-a".into(),
        }
    );
    assert!(plan.steps[0].reason.contains("us-west-2a"));
    assert!(plan.steps[0].reason.contains("already used by the cluster"));
    assert_eq!(
        plan.steps[0].action.api_calls()[0].parameters,
        json!({"RouteTableId": "rtb-new", "DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-a"})
    );
}

fn with_nats(nats: &[(&str, &str, &str, &str)]) -> Evidence {
    Evidence::lab_000().network(|n| {
        n.nat_gateways = nats
            .iter()
            .map(|(id, subnet, state, connectivity)| NatGatewayFacts {
                id: id.to_string(),
                subnet_id: subnet.to_string(),
                state: state.to_string(),
                connectivity: connectivity.to_string(),
                public_ips: vec![],
            })
            .collect();
        n.subnets.push(SubnetFacts {
            vpc_id: "vpc-1".into(),
            id: "subnet-public-b".into(),
            availability_zone: "us-west-2b".into(),
            cidr: "10.42.32.0/19".into(),
            available_ips: 100,
            map_public_ip_on_launch: true,
            tags: Default::default(),
        });
    })
}

fn chosen_nat(evidence: &Evidence) -> String {
    match &plan_for(evidence).steps[0].action {
        Action::CreateRoute { nat_gateway_id, .. } => nat_gateway_id.clone(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_same_zone_wins_over_another_zone() {
    let evidence = with_nats(&[
        ("nat-0-other-zone", "subnet-public-b", "available", "public"),
        ("nat-z-same-zone", "subnet-public-a", "available", "public"),
    ]);
    assert_eq!(chosen_nat(&evidence), "nat-z-same-zone");
}

#[test]
fn within_a_zone_the_nat_the_cluster_uses_wins() {
    let evidence = with_nats(&[
        ("nat-0-unused", "subnet-public-a", "available", "public"),
        ("nat-a", "subnet-public-a", "available", "public"),
    ]);
    assert_eq!(chosen_nat(&evidence), "nat-a");
}

#[test]
fn another_zone_is_used_when_the_subnets_zone_has_none() {
    let evidence = with_nats(&[("nat-b", "subnet-public-b", "available", "public")]);
    let plan = plan_for(&evidence);
    assert_eq!(chosen_nat(&evidence), "nat-b");
    assert!(
        plan.steps[0]
            .reason
            .contains("none available in the subnet's zone")
    );
}

#[test]
fn unavailable_and_private_nat_gateways_are_never_chosen() {
    let evidence = with_nats(&[
        ("nat-deleted", "subnet-public-a", "deleted", "public"),
        ("nat-pending", "subnet-public-a", "pending", "public"),
        ("nat-private", "subnet-public-a", "available", "private"),
    ]);
    let plan = plan_for(&evidence);
    assert!(plan.is_empty(), "{:?}", plan.steps);
    assert!(
        note_for(&plan, Some(FixKind::AddNatRoute)).contains("No available public NAT gateway")
    );
}

#[test]
fn no_nat_gateway_means_no_fix_and_no_cycle() {
    let evidence = with_nats(&[]);
    let plan = plan_for(&evidence);
    assert!(plan.is_empty());
    assert!(note_for(&plan, Some(FixKind::AddNatRoute)).contains("aws ec2 create-nat-gateway"));
    assert!(
        !plan
            .notes
            .iter()
            .any(|n| n.fix == Some(FixKind::CycleNodegroup))
    );
}

#[test]
fn the_main_route_table_is_not_changed_for_one_subnet() {
    let evidence = Evidence::lab_000().network(|n| n.route_tables.retain(|t| t.id != "rtb-new"));
    let plan = plan_for(&evidence);
    assert!(plan.is_empty());
    assert!(note_for(&plan, Some(FixKind::AddNatRoute)).contains("main route table"));
}

#[test]
fn healthy_capacity_elsewhere_skips_the_cycle_and_says_what_to_do() {
    let evidence = Evidence::lab_000().instance("i-healthy", "subnet-private-a", "InService");
    let plan = plan_for(&evidence);
    assert_eq!(kinds(&plan), vec![FixKind::AddNatRoute]);
    let note = note_for(&plan, Some(FixKind::CycleNodegroup));
    assert!(note.contains("i-healthy"));
    assert!(note.contains("terminate-instance-in-auto-scaling-group --instance-id i-new"));
}

#[test]
fn instances_not_in_service_are_not_healthy_capacity() {
    let evidence = Evidence::lab_000().instance("i-pending", "subnet-private-a", "Pending");
    assert_eq!(
        kinds(&plan_for(&evidence)),
        vec![FixKind::AddNatRoute, FixKind::CycleNodegroup]
    );
}

#[test]
fn a_nodegroup_already_updating_or_at_zero_is_not_cycled() {
    let plan = plan_for(&Evidence::lab_002().nodegroup_status("UPDATING"));
    assert_eq!(kinds(&plan), vec![FixKind::PatchKmsKeyPolicy]);
    assert!(note_for(&plan, Some(FixKind::CycleNodegroup)).contains("UPDATING"));
    let plan = plan_for(&Evidence::lab_002().scaling(0, 1, 0));
    assert_eq!(kinds(&plan), vec![FixKind::PatchKmsKeyPolicy]);
    assert!(note_for(&plan, Some(FixKind::CycleNodegroup)).contains("desired size 0"));
}

#[test]
fn a_healthy_world_has_an_empty_plan() {
    let evidence = Evidence::lab_000().network(|n| {
        n.route_tables
            .iter_mut()
            .find(|t| t.id == "rtb-new")
            .unwrap()
            .routes
            .push(default_route("nat-a", "active"));
    });
    let plan = plan_for(&evidence);
    assert!(plan.is_empty() && plan.notes.is_empty());
}

#[test]
fn the_plan_id_is_a_content_address() {
    let a = plan_for(&Evidence::lab_002());
    let b = plan_for(&Evidence::lab_002());
    assert_eq!(a.id, b.id);
    let c = plan_for(&Evidence::lab_002().scaling(0, 2, 2));
    assert_ne!(a.id, c.id, "different parameters, different plan");
    assert!(a.id.starts_with("plan-") && a.id.len() == 21);

    let mut elsewhere = Evidence::lab_002();
    elsewhere.trigger.region = "eu-west-1".into();
    assert_ne!(
        a.id,
        plan_for(&elsewhere).id,
        "an approval binds to one region"
    );
    let mut other_account = Evidence::lab_002();
    other_account.trigger.account = "210987654321".into();
    assert_ne!(a.id, plan_for(&other_account).id, "and to one account");

    let flapped = plan_for(&Evidence::lab_002().nodegroup_status("ACTIVE"));
    assert_eq!(
        a.id, flapped.id,
        "a DEGRADED/ACTIVE flap does not make a plan stale"
    );
    let edited = Evidence::lab_002().key_policy(
        &crate::core::evidence::fixtures::ROOT_ONLY_POLICY.replace("kms:*", "kms:Describe*"),
    );
    assert_ne!(a.id, plan_for(&edited).id, "an edited key policy does");
}

#[test]
fn every_fix_kind_has_a_unique_code() {
    let mut codes: Vec<&str> = FixKind::ALL.iter().map(|f| f.code()).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), FixKind::ALL.len());
    for fix in FixKind::ALL {
        assert_eq!(serde_json::to_value(fix).unwrap(), json!(fix.code()));
    }
}

fn replace_target(evidence: &Evidence) -> Option<String> {
    plan_for(evidence)
        .steps
        .iter()
        .find_map(|s| match &s.action {
            Action::ReplaceRoute { nat_gateway_id, .. } => Some(nat_gateway_id.clone()),
            _ => None,
        })
}

fn blackholed(evidence: Evidence) -> Evidence {
    evidence.network(|n| {
        let table = n
            .route_tables
            .iter_mut()
            .find(|t| t.id == "rtb-node")
            .unwrap();
        table.routes.retain(|r| !r.is_default_ipv4());
        table.routes.push(default_route("nat-deleted", "blackhole"));
    })
}

#[test]
fn a_blackholed_route_is_replaced_with_an_available_nat_in_the_same_zone() {
    let plan = plan_for(&blackholed(Evidence::healthy()));
    assert_eq!(
        kinds(&plan),
        vec![FixKind::ReplaceDefaultRoute, FixKind::CycleNodegroup]
    );
    assert_eq!(
        plan.steps[0].action,
        Action::ReplaceRoute {
            route_table_id: "rtb-node".into(),
            destination_cidr_block: "0.0.0.0/0".into(),
            nat_gateway_id: "nat-a".into(),
            previous_target: "nat-deleted".into(),
        }
    );
    assert!(FixKind::ReplaceDefaultRoute.needs_approval_by_default());
}

#[test]
fn a_blackholed_route_is_not_pointed_at_another_zone() {
    let evidence = blackholed(Evidence::healthy()).network(|n| {
        n.subnets
            .iter_mut()
            .find(|s| s.id == "subnet-public-a")
            .unwrap()
            .availability_zone = "us-west-2b".into();
    });
    assert_eq!(replace_target(&evidence), None);
    let plan = plan_for(&evidence);
    assert!(
        plan.notes[0]
            .text
            .contains("no available public NAT gateway in us-west-2a")
    );
}

#[test]
fn vpc_dns_is_fixed_one_attribute_per_call() {
    let evidence = Evidence::healthy().network(|n| {
        n.vpc.dns_support = Some(false);
        n.vpc.dns_hostnames = Some(false);
    });
    let plan = plan_for(&evidence);
    assert_eq!(
        kinds(&plan),
        vec![
            FixKind::EnableVpcDns,
            FixKind::EnableVpcDns,
            FixKind::CycleNodegroup
        ]
    );
    let calls: Vec<_> = plan.steps[..2]
        .iter()
        .flat_map(|s| s.action.api_calls())
        .collect();
    assert_eq!(
        calls[0].parameters,
        json!({"VpcId": "vpc-1", "EnableDnsSupport": {"Value": true}})
    );
    assert_eq!(
        calls[1].parameters,
        json!({"VpcId": "vpc-1", "EnableDnsHostnames": {"Value": true}})
    );
}

#[test]
fn identity_gaps_get_attach_and_access_entry_steps() {
    let evidence = Evidence::healthy()
        .cluster(|c| c.authentication_mode = Some("API".into()))
        .identity(|i| {
            i.access_entry = crate::core::evidence::AccessEntryLookup::Absent;
            if let crate::core::evidence::RoleLookup::Found {
                attached_policy_arns,
                ..
            } = &mut i.role
            {
                attached_policy_arns.clear();
            }
        });
    let plan = plan_for(&evidence);
    assert_eq!(
        kinds(&plan),
        vec![
            FixKind::AttachNodeRolePolicy,
            FixKind::AttachNodeRolePolicy,
            FixKind::AttachNodeRolePolicy,
            FixKind::CreateAccessEntry,
            FixKind::CycleNodegroup
        ]
    );
    assert_eq!(
        plan.steps[3].action.api_calls()[0].parameters,
        json!({"clusterName": "eks-workshop", "principalArn": NODE_ROLE, "type": "EC2_LINUX"})
    );
}

#[test]
fn a_public_subnet_without_public_ips_gets_the_attribute_turned_on() {
    let evidence = Evidence::healthy().network(|n| {
        let table = n
            .route_tables
            .iter_mut()
            .find(|t| t.id == "rtb-node")
            .unwrap();
        table.routes.retain(|r| !r.is_default_ipv4());
        table.routes.push(default_route("igw-1", "active"));
    });
    let plan = plan_for(&evidence);
    assert_eq!(
        kinds(&plan),
        vec![FixKind::EnableSubnetPublicIp, FixKind::CycleNodegroup]
    );
}

#[test]
fn the_cycle_waits_until_every_blocking_cause_has_a_fix() {
    let evidence = Evidence::lab_000()
        .identity(|_| {})
        .network(|n| n.vpc.dns_support = Some(true));
    let mut evidence = evidence;
    evidence
        .nodegroup
        .health_issues
        .push(crate::core::evidence::HealthIssue {
            code: "ClusterUnreachable".into(),
            message: "timeout".into(),
            resource_ids: vec![],
        });
    let plan = plan_for(&evidence);
    assert_eq!(
        kinds(&plan),
        vec![FixKind::AddNatRoute],
        "the route is still planned"
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.fix == Some(FixKind::CycleNodegroup)
                && n.text.contains("cluster_unreachable")),
        "{:?}",
        plan.notes
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.text.starts_with("cluster_unreachable: no automatic fix"))
    );
}

#[test]
fn only_the_original_lab_fixes_apply_without_approval() {
    let auto: Vec<FixKind> = FixKind::ALL
        .into_iter()
        .filter(|f| !f.needs_approval_by_default())
        .collect();
    assert_eq!(
        auto,
        vec![
            FixKind::AddNatRoute,
            FixKind::PatchKmsKeyPolicy,
            FixKind::CycleNodegroup
        ]
    );
}

#[test]
fn the_plan_id_changes_when_the_state_it_rests_on_changes() {
    let before = plan_for(&Evidence::lab_000());
    let edited = Evidence::lab_000().network(|n| {
        n.route_tables
            .iter_mut()
            .find(|t| t.id == "rtb-new")
            .unwrap()
            .routes
            .push(crate::core::evidence::fixtures::route(
                "10.99.0.0/16",
                "pcx-1",
            ));
    });
    let after = plan_for(&edited);
    assert_eq!(before.steps, after.steps, "the same calls");
    assert_ne!(before.id, after.id, "but another world");
    assert!(before.rests_on.iter().any(|r| r.resource == "rtb-new"));
}

#[test]
fn a_cluster_role_missing_only_its_policy_gets_it_attached_and_nothing_else_does() {
    let missing = Evidence::healthy().cluster_role("eks.amazonaws.com", &[]);
    let plan = plan_for(&missing);
    assert_eq!(kinds(&plan)[0], FixKind::AttachClusterRolePolicy);
    assert_eq!(
        plan.steps[0].action.api_calls()[0].parameters,
        json!({"RoleName": "eks-cluster", "PolicyArn": "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"})
    );
    assert!(FixKind::AttachClusterRolePolicy.needs_approval_by_default());
    // A trust policy is the owner's to write: a role that does not trust EKS gets no step.
    let untrusting = Evidence::healthy().cluster_role("ec2.amazonaws.com", &[]);
    assert!(
        !kinds(&plan_for(&untrusting)).contains(&FixKind::AttachClusterRolePolicy),
        "{:?}",
        kinds(&plan_for(&untrusting))
    );
}

#[test]
fn an_endpoint_answering_no_name_gets_private_dns_turned_on() {
    use crate::core::evidence::fixtures::private_join_endpoints;
    let evidence = Evidence::healthy().network(|n| {
        if let Some(table) = n.route_tables.iter_mut().find(|t| t.id == "rtb-node") {
            table.routes.retain(|r| !r.is_default_ipv4());
        }
        n.endpoints = private_join_endpoints();
        for endpoint in &mut n.endpoints {
            if endpoint.service_name.ends_with(".sts") {
                endpoint.private_dns_enabled = false;
            }
        }
        n.security_groups
            .push(crate::core::evidence::SecurityGroupFacts {
                id: "sg-endpoints".into(),
                name: "endpoints".into(),
                ingress: vec![crate::core::evidence::fixtures::sg_rule(
                    "tcp",
                    Some((443, 443)),
                    &["10.42.0.0/16"],
                    &[],
                )],
                egress: vec![],
            });
    });
    let plan = plan_for(&evidence);
    assert_eq!(
        kinds(&plan),
        [FixKind::EnableEndpointPrivateDns, FixKind::CycleNodegroup]
    );
    assert_eq!(
        plan.steps[0].action.api_calls()[0].parameters,
        json!({"VpcEndpointId": "vpce-4", "PrivateDnsEnabled": true})
    );
    assert!(FixKind::EnableEndpointPrivateDns.needs_approval_by_default());
}

#[test]
fn an_empty_instance_profile_gets_the_node_role_and_a_taken_one_does_not() {
    use crate::core::evidence::ProfileLookup;
    let with = |roles: Vec<String>| {
        Evidence::healthy().identity(|i| {
            i.instance_profile = Some(ProfileLookup::Found {
                template: "lt-eks version 1".into(),
                name: "eks-ng-profile".into(),
                role_arns: roles,
                tags: Default::default(),
            })
        })
    };
    let plan = plan_for(&with(vec![]));
    assert_eq!(kinds(&plan)[0], FixKind::AddRoleToInstanceProfile);
    assert_eq!(
        plan.steps[0].action.api_calls()[0].parameters,
        json!({"InstanceProfileName": "eks-ng-profile", "RoleName": "eks-node"})
    );
    assert!(FixKind::AddRoleToInstanceProfile.needs_approval_by_default());
    let taken = plan_for(&with(vec!["arn:aws:iam::123456789012:role/web".into()]));
    assert!(
        !kinds(&taken).contains(&FixKind::AddRoleToInstanceProfile),
        "{:?}",
        kinds(&taken)
    );
}
