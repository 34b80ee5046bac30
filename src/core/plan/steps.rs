//! One planner per fix: a finding and the evidence in, one exact step out, or why not.

use super::*;

pub(super) fn plan_key_policy(finding: &Finding) -> Result<Option<Step>, String> {
    let Subject::Key {
        key_arn,
        policy,
        service_linked_role,
        cross_account,
        explicit_deny,
        doubt,
    } = &finding.subject
    else {
        return Ok(None);
    };
    if *cross_account {
        let owner = key_arn.split(':').nth(4).unwrap_or("another account");
        return Err(format!(
            "Key {key_arn} belongs to account {owner}: nodemedic does not change another account's key policy. Its \
             owner must allow this account in the key policy, then create a grant for the service-linked role: \
             aws kms create-grant --key-id {key_arn} --grantee-principal {service_linked_role} --operations Encrypt \
             Decrypt ReEncryptFrom ReEncryptTo GenerateDataKey GenerateDataKeyWithoutPlaintext DescribeKey CreateGrant"
        ));
    }
    if let Some(deny) = explicit_deny {
        return Err(format!(
            "Key {key_arn}: {deny}. Adding allow statements cannot override an explicit deny; a human must decide \
             whether that statement should change."
        ));
    }
    let Some(previous) = policy else {
        return Err(format!(
            "The policy of key {key_arn} could not be read, so it cannot be patched safely."
        ));
    };
    match key_policy::patch(previous, Caller::for_key(service_linked_role, key_arn)) {
        Ok(KeyPolicyPatch::AlreadyGranted) => Ok(None),
        Ok(KeyPolicyPatch::Patched {
            policy,
            added_sids,
            undecided,
        }) => Ok(Some(Step {
            fix: FixKind::PatchKmsKeyPolicy,
            action: Action::PutKeyPolicy {
                key_id: key_arn.clone(),
                policy_name: "default".into(),
                policy,
                previous_policy: previous.clone(),
            },
            reason: format!(
                "Add statements {} so that {service_linked_role} can use key {key_arn} for encrypted volumes.",
                added_sids.join(" and ")
            ),
            needs_review: doubt.clone().or_else(|| {
                (!undecided.is_empty()).then(|| {
                    format!(
                        "the policy may already let the role in: {}",
                        undecided.join("; ")
                    )
                })
            }),
        })),
        Err(error @ KeyPolicyError::ExplicitDeny { .. }) => Err(format!("Key {key_arn}: {error}.")),
        Err(error) => Err(format!(
            "Key {key_arn}: {error}; the policy is left unchanged."
        )),
    }
}

pub(super) fn plan_nat_route(finding: &Finding, evidence: &Evidence) -> Result<Step, String> {
    let Subject::Subnet {
        subnet_id,
        route_table_id,
        availability_zone,
        vpc_id,
    } = &finding.subject
    else {
        return Err("internal: a route fix needs a subnet finding".into());
    };
    let network = evidence
        .network
        .as_ref()
        .ok_or_else(|| "No network evidence was collected; no route can be planned.".to_string())?;
    let route_table_id = route_table_id.clone().ok_or_else(|| {
        format!("Subnet {subnet_id} has no route table; no route can be planned.")
    })?;
    let table = network.route_tables.iter().find(|t| t.id == route_table_id);
    if table.is_some_and(|t| t.routes.iter().any(|r| r.is_default_ipv4())) {
        return Err(format!(
            "Route table {route_table_id} already has a 0.0.0.0/0 route; nodemedic never replaces an existing default route."
        ));
    }
    if table.is_some_and(|t| t.main) {
        return Err(format!(
            "Subnet {subnet_id} uses the VPC's main route table {route_table_id}; adding a default route there would \
             change every subnet without its own table. Associate {subnet_id} with its own route table first."
        ));
    }
    let (nat, why) = choose_nat_gateway(network, availability_zone.as_deref()).ok_or_else(|| {
        format!(
            "No available public NAT gateway in {vpc_id}: no route can be added. Create a NAT gateway in a public \
             subnet (aws ec2 create-nat-gateway --subnet-id <public-subnet> --allocation-id <eip>), or the VPC \
             endpoints ec2, ecr.api, ecr.dkr, s3 and sts."
        )
    })?;
    Ok(Step {
        fix: FixKind::AddNatRoute,
        action: Action::CreateRoute {
            route_table_id: route_table_id.clone(),
            destination_cidr_block: "0.0.0.0/0".into(),
            nat_gateway_id: nat.id.clone(),
        },
        reason: format!(
            "Route 0.0.0.0/0 from {route_table_id} (subnet {subnet_id}) to {}: {why}.",
            nat.id
        ),
        needs_review: None,
    })
}

pub(super) fn plan_route_replacement(
    finding: &Finding,
    evidence: &Evidence,
) -> Result<Step, String> {
    let Subject::DefaultRoute {
        subnet_id,
        route_table_id,
        current_target,
        availability_zone,
    } = &finding.subject
    else {
        return Err("internal: a route replacement needs a default-route finding".into());
    };
    let network = evidence
        .network
        .as_ref()
        .ok_or_else(|| "No network evidence was collected; no route can be planned.".to_string())?;
    if network
        .route_tables
        .iter()
        .any(|t| t.id == *route_table_id && t.main)
    {
        return Err(format!(
            "{}: route table {route_table_id} is the VPC's main table; replacing its default route would change every \
             subnet without its own table. {}",
            finding.cause,
            finding.remedy.clone().unwrap_or_default()
        ));
    }
    let same_zone = choose_nat_gateway(network, availability_zone.as_deref())
        .filter(|(nat, _)| nat.id != *current_target)
        .filter(|(nat, _)| {
            availability_zone.is_some()
                && network
                    .subnet(&nat.subnet_id)
                    .map(|s| Some(&s.availability_zone))
                    == Some(availability_zone.as_ref())
        });
    let (nat, why) = same_zone.ok_or_else(|| {
        format!(
            "{}: no available public NAT gateway in {} to replace {current_target} with; create one in a public subnet \
             of that zone, then: aws ec2 replace-route --route-table-id {route_table_id} --destination-cidr-block \
             0.0.0.0/0 --nat-gateway-id <nat>",
            finding.cause,
            availability_zone.as_deref().unwrap_or("the subnet's zone")
        )
    })?;
    Ok(Step {
        fix: FixKind::ReplaceDefaultRoute,
        action: Action::ReplaceRoute {
            route_table_id: route_table_id.clone(),
            destination_cidr_block: "0.0.0.0/0".into(),
            nat_gateway_id: nat.id.clone(),
            previous_target: current_target.clone(),
        },
        reason: format!(
            "Point 0.0.0.0/0 of {route_table_id} (subnet {subnet_id}) at {} instead of {current_target}: {why}.",
            nat.id
        ),
        needs_review: None,
    })
}

/// Picks the NAT gateway for a default route: available and public, then same zone, then one
/// the cluster's other node subnets already use, then by id for a stable answer.
pub fn choose_nat_gateway<'a>(
    network: &'a NetworkFacts,
    availability_zone: Option<&str>,
) -> Option<(&'a NatGatewayFacts, String)> {
    let used = network.nat_gateways_used_by_cluster();
    let zone_of = |nat: &NatGatewayFacts| {
        network
            .subnet(&nat.subnet_id)
            .map(|s| s.availability_zone.clone())
    };
    network
        .nat_gateways
        .iter()
        .filter(|nat| nat.state == "available" && nat.connectivity != "private")
        .map(|nat| {
            let same_zone =
                availability_zone.is_some() && zone_of(nat).as_deref() == availability_zone;
            let used_by_cluster = used.contains(nat.id.as_str());
            (nat, same_zone, used_by_cluster)
        })
        .min_by_key(|(nat, same_zone, used_by_cluster)| {
            (!same_zone, !used_by_cluster, nat.id.clone())
        })
        .map(|(nat, same_zone, used_by_cluster)| {
            let mut reasons = vec!["available, public".to_string()];
            match (same_zone, zone_of(nat)) {
                (true, Some(zone)) => reasons.push(format!("in the subnet's zone {zone}")),
                (false, Some(zone)) => reasons.push(format!(
                    "in zone {zone} (none available in the subnet's zone)"
                )),
                _ => {}
            }
            if used_by_cluster {
                reasons.push("already used by the cluster's node subnets".into());
            }
            (nat, reasons.join(", "))
        })
}

pub(super) fn plan_cycle(
    evidence: &Evidence,
    affected_subnets: &BTreeSet<String>,
) -> Result<Step, String> {
    let nodegroup = &evidence.nodegroup;
    let original = nodegroup.scaling;
    if original.desired == 0 {
        return Err(format!(
            "Cycle skipped: nodegroup {} has desired size 0; new instances launch with the fix when it scales up.",
            nodegroup.name
        ));
    }
    if !matches!(nodegroup.status.as_str(), "ACTIVE" | "DEGRADED") {
        return Err(format!(
            "Cycle skipped: nodegroup {} is {}, not ACTIVE or DEGRADED; nodemedic does not interfere with another update.",
            nodegroup.name, nodegroup.status
        ));
    }
    let (healthy, affected): (Vec<_>, Vec<_>) = evidence
        .group
        .iter()
        .flat_map(|group| group.instances.iter())
        .filter(|instance| instance.is_in_service_and_healthy())
        .partition(|instance| {
            !instance
                .subnet_id
                .as_ref()
                .is_some_and(|subnet| affected_subnets.contains(subnet))
        });
    if !healthy.is_empty() {
        let ids: Vec<&str> = healthy.iter().map(|i| i.id.as_str()).collect();
        let mut text = format!(
            "Cycle skipped: nodegroup {} has {} healthy instance(s) outside the affected subnets ({}) that scaling to 0 \
             would terminate.",
            nodegroup.name,
            ids.len(),
            ids.join(", ")
        );
        for instance in &affected {
            text.push_str(&format!(
                " Replace {} instead: aws autoscaling terminate-instance-in-auto-scaling-group --instance-id {} \
                 --no-should-decrement-desired-capacity.",
                instance.id, instance.id
            ));
        }
        return Err(text);
    }
    let scale_down = ScalingUpdate {
        min_size: (original.min > 0).then_some(0),
        desired_size: 0,
    };
    let restore = ScalingUpdate {
        min_size: (original.min > 0).then_some(original.min),
        desired_size: original.desired,
    };
    Ok(Step {
        fix: FixKind::CycleNodegroup,
        action: Action::CycleNodegroup {
            cluster: nodegroup.cluster.clone(),
            nodegroup: nodegroup.name.clone(),
            original,
            scale_down,
            restore,
        },
        reason: format!(
            "Scale {} to 0 and back to {} so that a new instance launches with the fix in place.",
            nodegroup.name, original.desired
        ),
        needs_review: None,
    })
}
