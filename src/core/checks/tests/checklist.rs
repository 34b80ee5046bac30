//! The join checklist's network, identity and launch rules, each with its near misses.

use super::{blocking, causes};
use crate::core::checks::*;
use crate::core::evidence::fixtures::*;
use crate::core::evidence::*;

fn route_to(evidence: Evidence, target: &str, state: &str) -> Evidence {
    evidence.network(|n| {
        let table = n
            .route_tables
            .iter_mut()
            .find(|t| t.id == "rtb-node")
            .unwrap();
        table.routes.retain(|r| !r.is_default_ipv4());
        table.routes.push(default_route(target, state));
    })
}

#[test]
fn a_blackholed_default_route_is_named_with_its_dead_target() {
    let evidence = route_to(Evidence::healthy(), "nat-deleted", "blackhole");
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::DefaultRouteBlackhole);
    assert!(finding.summary.contains("nat-deleted"));
    assert!(
        matches!(finding.subject, Subject::DefaultRoute { ref current_target, .. } if current_target == "nat-deleted")
    );
}

#[test]
fn a_nat_gateway_that_is_not_available_is_named() {
    for state in ["pending", "failed", "deleting"] {
        let evidence = Evidence::healthy().network(|n| n.nat_gateways[0].state = state.into());
        assert_eq!(
            blocking(&evidence),
            vec![Cause::NatGatewayUnavailable],
            "{state}"
        );
    }
}

#[test]
fn a_nat_gateway_in_a_private_subnet_or_private_itself_reaches_nothing() {
    let in_private_subnet = Evidence::healthy().network(|n| {
        let public = n
            .route_tables
            .iter_mut()
            .find(|t| t.id == "rtb-public")
            .unwrap();
        public.routes.retain(|r| !r.is_default_ipv4());
    });
    assert_eq!(
        blocking(&in_private_subnet),
        vec![Cause::NatGatewayWithoutInternetRoute]
    );
    let private_nat =
        Evidence::healthy().network(|n| n.nat_gateways[0].connectivity = "private".into());
    assert_eq!(
        blocking(&private_nat),
        vec![Cause::NatGatewayWithoutInternetRoute]
    );
}

#[test]
fn a_private_only_cluster_without_endpoints_needs_endpoints_not_a_nat_route() {
    let evidence = route_to(Evidence::healthy(), "none", "active")
        .network(|n| {
            let table = n
                .route_tables
                .iter_mut()
                .find(|t| t.id == "rtb-node")
                .unwrap();
            table.routes.retain(|r| !r.is_default_ipv4());
        })
        .cluster(|c| {
            c.endpoint_public_access = false;
            c.endpoint_private_access = true;
        });
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::VpcEndpointMissing);
    assert!(
        finding
            .remedy
            .unwrap()
            .contains("com.amazonaws.us-west-2.ecr.dkr")
    );

    let with_endpoints = evidence.clone().network(|n| {
        n.endpoints = private_join_endpoints();
        n.security_groups.push(SecurityGroupFacts {
            id: "sg-endpoints".into(),
            name: "endpoints".into(),
            ingress: vec![sg_rule("tcp", Some((443, 443)), &["10.42.0.0/16"], &[])],
            egress: vec![],
        });
    });
    assert!(
        diagnose(&with_endpoints).is_healthy(),
        "{:?}",
        causes(&with_endpoints)
    );

    let s3_not_on_this_table = with_endpoints.network(|n| {
        n.endpoints
            .iter_mut()
            .find(|e| e.kind == "Gateway")
            .unwrap()
            .route_table_ids = vec!["rtb-other".into()];
    });
    let finding = diagnose(&s3_not_on_this_table).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::VpcEndpointMissing);
    assert!(finding.summary.ends_with("s3"), "{}", finding.summary);
}

#[test]
fn an_endpoint_security_group_without_https_from_the_nodes_blocks_them_even_with_a_nat() {
    let endpoints = |ingress: Vec<SecurityGroupRule>| {
        Evidence::healthy().network(move |n| {
            n.endpoints = private_join_endpoints();
            n.security_groups.push(SecurityGroupFacts {
                id: "sg-endpoints".into(),
                name: "endpoints".into(),
                ingress,
                egress: vec![],
            });
        })
    };
    let closed = endpoints(vec![sg_rule("tcp", Some((22, 22)), &["10.0.0.0/8"], &[])]);
    assert!(
        blocking(&closed)
            .iter()
            .all(|c| *c == Cause::VpcEndpointBlocksHttps)
            && !blocking(&closed).is_empty()
    );
    let by_cidr = endpoints(vec![sg_rule(
        "tcp",
        Some((443, 443)),
        &["10.42.96.0/19"],
        &[],
    )]);
    assert!(diagnose(&by_cidr).is_healthy());
    let by_group = endpoints(vec![sg_rule("tcp", Some((443, 443)), &[], &[CLUSTER_SG])]);
    assert!(diagnose(&by_group).is_healthy());
    let unreadable = Evidence::healthy().network(|n| n.endpoints = private_join_endpoints());
    assert!(
        diagnose(&unreadable).is_healthy(),
        "groups nodemedic could not read are not blamed"
    );
}

#[test]
fn vpc_dns_off_is_found_and_says_which_attribute() {
    let evidence = Evidence::healthy().network(|n| n.vpc.dns_hostnames = Some(false));
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::VpcDnsDisabled);
    assert_eq!(
        finding.subject,
        Subject::Vpc {
            vpc_id: "vpc-1".into(),
            dns_support_off: false,
            dns_hostnames_off: true
        }
    );
    assert!(finding.remedy.unwrap().contains("--enable-dns-hostnames"));
    let unknown = Evidence::healthy().network(|n| n.vpc.dns_support = None);
    assert!(
        diagnose(&unknown).is_healthy(),
        "an attribute not read is not blamed"
    );
}

#[test]
fn custom_dns_servers_block_a_private_only_cluster_and_warn_otherwise() {
    let custom =
        Evidence::healthy().network(|n| n.vpc.domain_name_servers = Some(vec!["10.0.0.2".into()]));
    let diagnosis = diagnose(&custom);
    assert!(diagnosis.is_healthy());
    assert_eq!(
        diagnosis.warnings().next().unwrap().cause,
        Cause::DhcpOptionsWithoutAmazonDns
    );
    let private_only = custom.cluster(|c| {
        c.endpoint_private_access = true;
        c.endpoint_public_access = false;
    });
    assert_eq!(
        blocking(&private_only),
        vec![Cause::DhcpOptionsWithoutAmazonDns]
    );
}

#[test]
fn a_public_subnet_that_gives_no_public_ip_is_found_unless_the_instance_has_one() {
    let public = route_to(Evidence::healthy(), "igw-1", "active");
    let finding = diagnose(&public).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::PublicSubnetWithoutPublicIp);
    assert_eq!(
        finding.subject,
        Subject::PublicSubnet {
            subnet_id: "subnet-node".into()
        }
    );
    let mut with_ip = public.clone();
    with_ip.instance = Some(InstanceFacts {
        id: "i-1".into(),
        state: "running".into(),
        subnet_id: Some("subnet-node".into()),
        public_ip: Some("54.1.2.3".into()),
        security_group_ids: vec![],
        launched_at: None,
        availability_zone: None,
        private_dns_name: None,
    });
    assert!(diagnose(&with_ip).is_healthy());
    let mapped = public.network(|n| {
        n.subnets
            .iter_mut()
            .for_each(|s| s.map_public_ip_on_launch = true)
    });
    assert!(diagnose(&mapped).is_healthy());
}

#[test]
fn a_full_subnet_and_a_subnet_of_another_vpc_are_found() {
    let full =
        Evidence::healthy().network(|n| n.subnets.iter_mut().for_each(|s| s.available_ips = 0));
    assert_eq!(blocking(&full), vec![Cause::SubnetOutOfAddresses]);
    let elsewhere = Evidence::healthy().network(|n| {
        n.subnets
            .iter_mut()
            .find(|s| s.id == "subnet-node")
            .unwrap()
            .vpc_id = "vpc-other".into();
    });
    assert_eq!(blocking(&elsewhere), vec![Cause::SubnetInOtherVpc]);
    let gone = Evidence::healthy().network(|n| n.subnet_ids = vec!["subnet-gone".into()]);
    assert_eq!(blocking(&gone), vec![Cause::SubnetNotFound]);
}

#[test]
fn a_public_endpoint_restricted_to_other_addresses_shuts_the_nodes_out() {
    let restricted =
        Evidence::healthy().cluster(|c| c.public_access_cidrs = vec!["203.0.113.0/24".into()]);
    let finding = diagnose(&restricted).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::PublicEndpointExcludesNodes);
    assert!(finding.summary.contains("52.10.10.10"));
    assert!(finding.remedy.unwrap().contains("52.10.10.10/32"));
    let admitted =
        Evidence::healthy().cluster(|c| c.public_access_cidrs = vec!["52.10.10.0/24".into()]);
    assert!(diagnose(&admitted).is_healthy());
    let private_too = restricted.cluster(|c| c.endpoint_private_access = true);
    assert!(
        diagnose(&private_too).is_healthy(),
        "nodes use the private endpoint then"
    );
}

#[test]
fn a_node_role_that_does_not_exist_or_lacks_policies_is_found() {
    let missing_role = Evidence::healthy().identity(|i| {
        i.role = RoleLookup::NotFound {
            name: "eks-node".into(),
        }
    });
    assert_eq!(blocking(&missing_role), vec![Cause::NodeRoleNotFound]);

    let without_cni = Evidence::healthy().identity(|i| {
        if let RoleLookup::Found {
            attached_policy_arns,
            ..
        } = &mut i.role
        {
            attached_policy_arns.retain(|a| !a.ends_with("AmazonEKS_CNI_Policy"));
        }
    });
    let finding = diagnose(&without_cni).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::NodeRoleMissingPolicy);
    assert_eq!(
        finding.subject,
        Subject::NodeRole {
            role_name: "eks-node".into(),
            missing_policy_arns: vec!["arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy".into()],
        }
    );
    let pull_only = Evidence::healthy().identity(|i| {
        if let RoleLookup::Found {
            attached_policy_arns,
            ..
        } = &mut i.role
        {
            attached_policy_arns.retain(|a| !a.ends_with("ReadOnly"));
            attached_policy_arns
                .push("arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly".into());
        }
    });
    assert!(
        diagnose(&pull_only).is_healthy(),
        "PullOnly is as good as ReadOnly"
    );
    let unreadable = Evidence::healthy().identity(|i| {
        i.role = RoleLookup::Unreadable {
            reason: "AccessDenied".into(),
        }
    });
    assert!(
        diagnose(&unreadable).is_healthy(),
        "what nodemedic may not read is not blamed"
    );
}

#[test]
fn a_missing_access_entry_matters_only_when_the_cluster_uses_access_entries_only() {
    let both = Evidence::healthy().identity(|i| i.access_entry = AccessEntryLookup::Absent);
    assert!(
        diagnose(&both).is_healthy(),
        "API_AND_CONFIG_MAP: aws-auth may admit the role (k8s.aws_auth judges both)"
    );
    let absent = both.cluster(|c| c.authentication_mode = Some("API".into()));
    let finding = diagnose(&absent).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::NodeRoleMissingAccessEntry);
    assert!(finding.remedy.unwrap().contains("--type EC2_LINUX"));
    let present = Evidence::healthy().identity(|i| {
        i.access_entry = AccessEntryLookup::Present {
            kind: "EC2_LINUX".into(),
        }
    });
    assert!(diagnose(&present).is_healthy());
}

#[test]
fn every_launch_failure_message_in_the_reference_is_classified() {
    let cases = [
        (
            "Instance became unhealthy while waiting for instance to be in InService state. Termination Reason: Client.InternalError: Client error on launch",
            LaunchFailure::Kms,
        ),
        (
            "Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state",
            LaunchFailure::Kms,
        ),
        (
            "Server.InternalError: Internal error on launch",
            LaunchFailure::Ec2InternalError,
        ),
        (
            "We currently do not have sufficient m5.large capacity in the Availability Zone you requested (us-east-1a). Our system will be working on provisioning additional capacity. Launching EC2 instance failed.",
            LaunchFailure::InsufficientCapacity,
        ),
        (
            "Could not launch On-Demand Instances. InsufficientInstanceCapacity - We currently do not have sufficient capacity. Launching EC2 instance failed.",
            LaunchFailure::InsufficientCapacity,
        ),
        (
            "Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity available that matches your request. Launching EC2 instance failed.",
            LaunchFailure::InsufficientCapacity,
        ),
        (
            "Could not launch Spot Instances. UnfulfillableCapacity - Unable to fulfill capacity due to your request configuration. Please adjust your request and try again. Launching EC2 instance failed.",
            LaunchFailure::InsufficientCapacity,
        ),
        (
            "Could not launch Spot Instances. InvalidFleetConfiguration - Your requested instance type (p3.8xlarge) is not supported in your requested Availability Zone (us-east-2c). Launching EC2 instance failed.",
            LaunchFailure::InstanceTypeUnavailable,
        ),
        (
            "There is no Spot capacity available that matches your request. Launching EC2 instance failed.",
            LaunchFailure::InsufficientCapacity,
        ),
        (
            "You have requested more vCPU capacity than your current vCPU limit of 32 allows for the instance bucket that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit. Launching EC2 instance failed.",
            LaunchFailure::QuotaExceeded,
        ),
        (
            "You have requested more instances (21) than your current instance limit of 20 allows for the specified instance type. Launching EC2 instance failed.",
            LaunchFailure::QuotaExceeded,
        ),
        (
            "20 instance(s) are already running. Launching EC2 instance failed.",
            LaunchFailure::QuotaExceeded,
        ),
        (
            "Max spot instance count exceeded. Launching EC2 instance failed.",
            LaunchFailure::QuotaExceeded,
        ),
        (
            "You've reached your quota for maximum Fleet Requests for this account. Launching EC2 instance failed.",
            LaunchFailure::QuotaExceeded,
        ),
        (
            "There are not enough free addresses in subnet 'subnet-66d3dd2c' to satisfy the requested number of instances. Launching EC2 instance failed.",
            LaunchFailure::SubnetOutOfAddresses,
        ),
        (
            "The security group sg-1234 does not exist. Launching EC2 instance failed.",
            LaunchFailure::SecurityGroupMissing,
        ),
        (
            "The key pair my-key does not exist. Launching EC2 instance failed.",
            LaunchFailure::KeyPairMissing,
        ),
        (
            "The requested configuration is currently not supported. Please check the documentation for supported configurations. Launching EC2 instance failed.",
            LaunchFailure::InstanceTypeUnavailable,
        ),
        (
            "The requested Availability Zone is no longer supported. Please retry your request by not specifying an Availability Zone or choosing us-east-1b. Launching EC2 instance failed.",
            LaunchFailure::InstanceTypeUnavailable,
        ),
        (
            "Your requested instance type (t2.nano) is not supported in your requested Availability Zone (us-east-1e). Please retry your request by not specifying an Availability Zone or choosing us-east-1a. Launching EC2 instance failed.",
            LaunchFailure::InstanceTypeUnavailable,
        ),
        (
            "Your Spot request price of 0.015 is lower than the minimum required Spot request fulfillment price of 0.0735. Launching EC2 instance failed.",
            LaunchFailure::SpotPriceTooLow,
        ),
        (
            "Invalid device name upload. Launching EC2 instance failed.",
            LaunchFailure::LaunchTemplateInvalid,
        ),
        (
            "Value (ephemeralx) for parameter virtualName is invalid. Expected format: 'ephemeralNUMBER'. Launching EC2 instance failed.",
            LaunchFailure::LaunchTemplateInvalid,
        ),
        (
            "EBS block device mappings not supported for instance-store AMIs.",
            LaunchFailure::LaunchTemplateInvalid,
        ),
        (
            "Placement groups may not be used with instances of type 'm1.large'. Launching EC2 instance failed.",
            LaunchFailure::LaunchTemplateInvalid,
        ),
        (
            "InvalidParameterValue: Address 10.0.0.5 does not fall within the subnet's address range. Launching EC2 instance failed.",
            LaunchFailure::LaunchTemplateInvalid,
        ),
        (
            "Instance failed to complete user's Lifecycle Action: Lifecycle Action with token abc was abandoned: Lifecycle Action Completed with ABANDON Result",
            LaunchFailure::LifecycleHookAbandoned,
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(classify_launch_failure(text), Some(expected), "{text}");
    }
    assert_eq!(
        classify_launch_failure("Something entirely new happened."),
        None
    );
}

#[test]
fn a_classified_launch_failure_becomes_its_cause_with_a_remedy() {
    let mut evidence = Evidence::lab_002().status_message(
        "You have requested more vCPU capacity than your current vCPU limit of 32 allows. Launching EC2 instance failed.",
    );
    evidence.keys.clear();
    let finding = diagnose(&evidence).primary().cloned().unwrap();
    assert_eq!(finding.cause, Cause::InstanceQuotaExceeded);
    assert!(finding.remedy.unwrap().contains("service-quotas"));
    let transient =
        Evidence::lab_002().status_message("Server.InternalError: Internal error on launch");
    let mut transient = transient;
    transient.keys.clear();
    let diagnosis = diagnose(&transient);
    assert_eq!(
        diagnosis.warnings().next().map(|f| f.cause),
        Some(Cause::Ec2InternalError)
    );
    assert_eq!(
        diagnosis.cause(),
        Some(Cause::Unknown),
        "a transient error alone explains nothing lasting"
    );
}

#[test]
fn launch_template_problems_are_found() {
    let mut missing = Evidence::lab_002();
    missing.keys.clear();
    missing.launch_template = Some(TemplateLookup::NotFound {
        reference: "lt-1 version 3".into(),
        reason: "InvalidLaunchTemplateId.NotFound".into(),
    });
    assert!(blocking(&missing).contains(&Cause::LaunchTemplateNotFound));

    let deleted_group = Evidence::healthy().template(|t| {
        t.security_group_ids = vec!["sg-gone".into()];
        t.missing_security_group_ids = vec!["sg-gone".into()];
    });
    assert!(blocking(&deleted_group).contains(&Cause::LaunchTemplateSecurityGroupMissing));
}

#[test]
fn a_custom_ami_needs_an_existing_image_and_bootstrap_user_data() {
    let custom = |user_data: Option<&str>| {
        let mut evidence = Evidence::healthy().template(|t| {
            t.image_id = Some("ami-custom".into());
            t.user_data = user_data.map(str::to_string);
        });
        evidence.image = Some(ImageLookup::Found {
            image_id: "ami-custom".into(),
            state: "available".into(),
            name: None,
            root_device_name: None,
            root_snapshot_gib: None,
        });
        evidence
    };
    assert_eq!(
        blocking(&custom(None)),
        vec![Cause::CustomAmiWithoutBootstrap]
    );
    assert_eq!(
        blocking(&custom(Some("#!/bin/bash\necho hello"))),
        vec![Cause::CustomAmiWithoutBootstrap]
    );
    assert!(
        diagnose(&custom(Some(
            "#!/bin/bash\n/etc/eks/bootstrap.sh eks-workshop"
        )))
        .is_healthy()
    );
    assert!(
        diagnose(&custom(Some(
            "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: eks-workshop\n    \
             apiServerEndpoint: https://x.eks.amazonaws.com\n    certificateAuthority: Y2E=\n    cidr: 10.100.0.0/16\n"
        )))
        .is_healthy()
    );
    assert!(
        diagnose(&custom(Some(
            "[settings.kubernetes]\ncluster-name = \"eks-workshop\""
        )))
        .is_healthy()
    );
    let mut gone = custom(Some("/etc/eks/bootstrap.sh eks-workshop"));
    gone.image = Some(ImageLookup::NotFound {
        image_id: "ami-custom".into(),
    });
    assert_eq!(blocking(&gone), vec![Cause::AmiNotFound]);
}
