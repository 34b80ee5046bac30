//! The catalog of cause codes: stable names that appear in audit records, metrics labels, JSON
//! output and docs/catalog.md. Renaming one is a breaking change.

use serde::{Deserialize, Serialize};

macro_rules! causes {
    ($( $variant:ident => $code:literal, $area:literal, $title:literal, $evidence:literal, $remedy:literal; )+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Cause {
            $( $variant, )+
        }

        impl Cause {
            pub const ALL: &'static [Cause] = &[ $( Cause::$variant, )+ ];

            pub fn code(self) -> &'static str {
                match self { $( Cause::$variant => $code, )+ }
            }

            pub fn doc(self) -> CauseDoc {
                match self {
                    $( Cause::$variant => CauseDoc { cause: self, area: $area, title: $title, evidence: $evidence, remedy: $remedy }, )+
                }
            }
        }
    };
}

/// What a cause code means and what fixes it.
pub struct CauseDoc {
    pub cause: Cause,
    /// network, identity, launch, nodegroup, cluster (what its API shows) or instance (its console).
    pub area: &'static str,
    pub title: &'static str,
    pub evidence: &'static str,
    pub remedy: &'static str,
}

causes! {
    ClusterNotActive => "cluster_not_active", "nodegroup",
        "The cluster is not ACTIVE: it is being created, being deleted, or failed",
        "DescribeCluster: status is CREATING, DELETING or FAILED.",
        "No automatic fix. Wait for a CREATING cluster; a FAILED or DELETING cluster cannot take nodes: recreate it (`aws eks describe-cluster --name <cluster>` shows why).";
    ClusterUpdating => "cluster_updating", "nodegroup",
        "The cluster's control plane is being updated (warning)",
        "DescribeCluster: status is UPDATING; or, with the whole checklist, ListUpdates and DescribeUpdate (on the last five ids listed) show an update InProgress.",
        "Wait for the update to finish (`aws eks list-updates --name <cluster>`); nodes may fail to join while the control plane changes.";
    ClusterRoleInvalid => "cluster_role_invalid", "identity",
        "The cluster's IAM role is missing, does not trust EKS, or lacks AmazonEKSClusterPolicy",
        "DescribeCluster roleArn; GetRole (NoSuchEntity, or an AssumeRolePolicyDocument without an Allow of sts:AssumeRole for eks.amazonaws.com) and ListAttachedRolePolicies without AmazonEKSClusterPolicy.",
        "`attach_cluster_role_policy` (needs approval) when the role exists and trusts EKS and only AmazonEKSClusterPolicy is missing: AttachRolePolicy. A trust policy is the owner's to write and a missing role is not nodemedic's to create: their commands are in the report.";
    NodegroupCreateFailed => "nodegroup_create_failed", "nodegroup",
        "The nodegroup is CREATE_FAILED or DEGRADED and no health issue names why",
        "DescribeNodegroup: status is CREATE_FAILED or DEGRADED, and no health issue or other check explains it.",
        "No automatic fix. Read `aws eks describe-nodegroup --cluster-name <cluster> --nodegroup-name <nodegroup>` and the Auto Scaling group's activities; delete and recreate a CREATE_FAILED nodegroup once the cause is fixed.";
    AmiTypeUnsupported => "ami_type_unsupported", "nodegroup",
        "The nodegroup runs Amazon Linux 2 on Kubernetes 1.33 or later",
        "DescribeNodegroup amiType AL2_* (or, for a custom AMI, an AMI name of the AL2 EKS family) and DescribeCluster version 1.33 or later.",
        "No automatic fix. Create an AL2023 (or Bottlerocket) nodegroup and move the workloads to it.";
    NodeVersionSkew => "node_version_skew", "nodegroup",
        "The nodes' Kubernetes version is newer than the control plane, or older than the supported skew",
        "DescribeNodegroup version (or the version in a custom EKS AMI's name) against DescribeCluster version: newer, or more than 3 minors older (2 before Kubernetes 1.28).",
        "No automatic fix. `aws eks update-nodegroup-version` to the control plane's version (or create the nodegroup at it).";
    KmsKeyUnusable => "kms_key_unusable", "launch",
        "The launch template's KMS key is disabled, pending deletion or missing",
        "DescribeKey on each key the launch template's block device mappings name: KeyState is not Enabled, or the key does not exist.",
        "No automatic fix: no key policy change can help. Enable the key (`aws kms enable-key`), cancel its deletion (`aws kms cancel-key-deletion`), or point the launch template at another key.";
    KmsKeyPolicyBlocksAutoscaling => "kms_key_policy_blocks_autoscaling", "launch",
        "The KMS key policy does not let AWSServiceRoleForAutoScaling use the key",
        "The launch template encrypts a volume with a customer managed key that is Enabled, and the key policy (GetKeyPolicy) has no statement allowing the Auto Scaling service-linked role the encrypt/decrypt/re-encrypt/generate-data-key/describe actions and CreateGrant. Launches fail with Client.InvalidKMSKey.InvalidState or Client.InternalError: Client error on launch.",
        "`patch_kms_key_policy`: add the two statements of the EC2 Auto Scaling EBS-encryption guide for the service-linked role, keep every existing statement, then `cycle_nodegroup`. A key owned by another account is not changed: its owner must grant access.";
    SubnetNoEgressRoute => "subnet_no_egress_route", "network",
        "The node subnet has no route to the internet and no VPC endpoints for a private join",
        "The route table of the node's subnet (explicit association, else the VPC main table) has no 0.0.0.0/0 route, the cluster endpoint is public, and the VPC lacks at least one of the ec2, ecr.api, ecr.dkr, s3 and sts endpoints.",
        "`add_nat_route`: CreateRoute 0.0.0.0/0 to an available public NAT gateway of the VPC (same zone and already used by the cluster preferred), then `cycle_nodegroup`. With no NAT gateway there is no automatic fix: create one, or the VPC endpoints.";
    DefaultRouteBlackhole => "default_route_blackhole", "network",
        "The node subnet's default route points at a deleted NAT or internet gateway",
        "The 0.0.0.0/0 route of the node subnet's route table is in state blackhole.",
        "`replace_default_route` (needs approval): ReplaceRoute 0.0.0.0/0 to an available public NAT gateway in the subnet's zone, then `cycle_nodegroup`. Without one: `aws ec2 replace-route` to a working gateway.";
    NatGatewayUnavailable => "nat_gateway_unavailable", "network",
        "The node subnet's default route uses a NAT gateway that is not available",
        "The 0.0.0.0/0 route targets a NAT gateway whose state is pending, failed, deleting or deleted.",
        "`replace_default_route` (needs approval) to an available NAT gateway in the subnet's zone; otherwise wait for the NAT gateway or create a new one.";
    NatGatewayWithoutInternetRoute => "nat_gateway_without_internet_route", "network",
        "The NAT gateway cannot reach the internet",
        "The NAT gateway the node subnet routes to is private, or sits in a subnet whose route table has no active 0.0.0.0/0 route to an internet gateway.",
        "No automatic fix (routing the NAT gateway's subnet to the internet makes it public). Move the NAT gateway to a public subnet, or add `0.0.0.0/0 -> igw` to its subnet's route table.";
    VpcEndpointMissing => "vpc_endpoint_missing", "network",
        "A private-only cluster's nodes lack the VPC endpoints they need to join",
        "The cluster endpoint is private only, the node subnet has no default route, and at least one of the ec2, ecr.api, ecr.dkr, sts interface endpoints or the s3 gateway endpoint (associated with the subnet's route table) is missing.",
        "No automatic fix (interface endpoints cost money and need security groups). Create the missing endpoints with private DNS enabled: `aws ec2 create-vpc-endpoint --vpc-endpoint-type Interface --service-name com.amazonaws.<region>.<service> ...`.";
    VpcEndpointBlocksHttps => "vpc_endpoint_blocks_https", "network",
        "A VPC endpoint's security group does not admit HTTPS from the nodes",
        "An interface endpoint the nodes need has security groups without an ingress rule for TCP 443 from the node subnet's CIDR or the nodes' security groups.",
        "No automatic fix. Allow 443 from the nodes: `aws ec2 authorize-security-group-ingress --group-id <endpoint-sg> --protocol tcp --port 443 --cidr <node-subnet-cidr>`.";
    VpcDnsDisabled => "vpc_dns_disabled", "network",
        "The VPC has DNS resolution or DNS hostnames turned off",
        "DescribeVpcAttribute: enableDnsSupport or enableDnsHostnames is false. Nodes cannot register without both.",
        "`enable_vpc_dns` (needs approval): ModifyVpcAttribute to turn the attribute on.";
    DhcpOptionsWithoutAmazonDns => "dhcp_options_without_amazon_dns", "network",
        "The VPC's DHCP options do not use AmazonProvidedDNS",
        "The DHCP options set's domain-name-servers does not include AmazonProvidedDNS. Blocking when the cluster endpoint is private only (nodes cannot resolve it); a warning otherwise.",
        "No automatic fix (DNS servers are a deliberate choice). Create DHCP options with `domain-name-servers=AmazonProvidedDNS` and associate them, or forward the cluster's private zone from your DNS servers.";
    SecurityGroupBlocksCluster => "security_group_blocks_cluster", "network",
        "Security groups block HTTPS or kubelet traffic between nodes and the control plane",
        "Evaluating the rules of the nodes' security groups (the instance's, the launch template's, or the cluster security group) and the control plane's: nodes must send TCP 443 to the control plane, the control plane must accept it, and nodes must accept TCP 10250 from the control plane.",
        "No automatic fix. Add the missing rule, e.g. `aws ec2 authorize-security-group-ingress --group-id <cluster-sg> --protocol tcp --port 443 --source-group <node-sg>`.";
    NetworkAclBlocksTraffic => "network_acl_blocks_traffic", "network",
        "The node subnet's network ACL denies HTTPS or the return traffic",
        "Evaluating the subnet's network ACL in rule order: outbound TCP 443 to the internet, inbound TCP 1025-65535 (return traffic), and inbound TCP 10250 from the VPC must be allowed.",
        "No automatic fix. Add allow entries numbered before the deny, e.g. `aws ec2 create-network-acl-entry --network-acl-id <acl> --ingress --rule-number 90 --protocol tcp --port-range From=1025,To=65535 --cidr-block 0.0.0.0/0 --rule-action allow`.";
    PublicSubnetWithoutPublicIp => "public_subnet_without_public_ip", "network",
        "A public node subnet does not assign public IP addresses",
        "The subnet's route table sends 0.0.0.0/0 to an internet gateway, and MapPublicIpOnLaunch is false (EKS: Ec2SubnetInvalidConfiguration).",
        "`enable_subnet_public_ip` (needs approval): ModifySubnetAttribute MapPublicIpOnLaunch=true. Or route the subnet through a NAT gateway instead.";
    SubnetOutOfAddresses => "subnet_out_of_addresses", "network",
        "The node subnet has no free IP addresses",
        "DescribeSubnets: AvailableIpAddressCount is 0 (or the launch failed with \"not enough free addresses\").",
        "No automatic fix. Add subnets in other zones to the nodegroup, or a secondary CIDR to the VPC.";
    SubnetLowOnAddresses => "subnet_low_on_addresses", "network",
        "The node subnets have fewer free IP addresses than the nodegroup may need (warning)",
        "DescribeSubnets: a node subnet has fewer than 5 free addresses, or the nodegroup's subnets together have fewer than its max size minus the nodes it already has.",
        "Add subnets with free addresses to the nodegroup, or a secondary CIDR to the VPC (`aws ec2 associate-vpc-cidr-block`).";
    VpcEndpointPrivateDnsDisabled => "vpc_endpoint_private_dns_disabled", "network",
        "An interface VPC endpoint the nodes need has private DNS turned off",
        "A node subnet without a default route relies on the ec2, ecr.api, ecr.dkr and sts interface endpoints; one of them is available but PrivateDnsEnabled is false, so the service's public name does not resolve to it.",
        "`enable_endpoint_private_dns` (needs approval): ModifyVpcEndpoint PrivateDnsEnabled=true on each such endpoint; by hand, `aws ec2 modify-vpc-endpoint --vpc-endpoint-id <id> --private-dns-enabled` (the VPC needs DNS support and hostnames on).";
    S3EndpointPolicyBlocksEcr => "s3_endpoint_policy_blocks_ecr", "network",
        "The S3 gateway endpoint's policy does not let nodes pull image layers from ECR",
        "The node subnet's route table uses an S3 gateway endpoint whose policy does not allow s3:GetObject on arn:aws:s3:::prod-<region>-starport-layer-bucket/* (ECR's image layers); a warning when it only blocks the Amazon Linux package repositories of the region.",
        "No automatic fix: an endpoint policy is the owner's narrowing, and nodemedic never widens access an owner narrowed. Add a statement to the endpoint policy allowing s3:GetObject on arn:aws:s3:::prod-<region>-starport-layer-bucket/* (`aws ec2 modify-vpc-endpoint --vpc-endpoint-id <id> --policy-document file://policy.json`).";
    SubnetInOtherVpc => "subnet_in_other_vpc", "network",
        "The node subnet is not in the cluster's VPC",
        "The subnet's VpcId differs from the cluster's resourcesVpcConfig.vpcId.",
        "No automatic fix. Recreate the nodegroup with subnets of the cluster's VPC.";
    PublicEndpointExcludesNodes => "public_endpoint_excludes_nodes", "network",
        "The public cluster endpoint does not admit the nodes' egress address",
        "The endpoint is public only, publicAccessCidrs is restricted, and the public IP of the NAT gateway the node subnet routes through is outside every allowed CIDR.",
        "No automatic fix. Add the NAT gateway's address to publicAccessCidrs, or enable private endpoint access: `aws eks update-cluster-config --name <cluster> --resources-vpc-config endpointPrivateAccess=true`.";
    NodeRoleMissingPolicy => "node_role_missing_policy", "identity",
        "The node IAM role lacks a managed policy nodes need",
        "ListAttachedRolePolicies on the nodegroup's node role: AmazonEKSWorkerNodePolicy, AmazonEKS_CNI_Policy or AmazonEC2ContainerRegistryReadOnly (or PullOnly) is not attached.",
        "`attach_node_role_policy` (needs approval): AttachRolePolicy for each missing managed policy.";
    NodeRoleTrustInvalid => "node_role_trust_invalid", "identity",
        "The node role's trust policy does not let EC2 assume it",
        "GetRole: the AssumeRolePolicyDocument has no Allow of sts:AssumeRole for ec2.amazonaws.com, denies it, or allows it only under a principal condition (aws:PrincipalOrgID, aws:PrincipalAccount, ...) that never holds for a service.",
        "No automatic fix: a trust policy is the owner's narrowing, and nodemedic never widens access an owner narrowed. `aws iam update-assume-role-policy` with an Allow of sts:AssumeRole for ec2.amazonaws.com.";
    InstanceProfileInvalid => "instance_profile_invalid", "identity",
        "The instance profile the nodes launch with is missing or does not hold the node role",
        "The Auto Scaling group's launch template (DescribeLaunchTemplateVersions) names no IamInstanceProfile, or GetInstanceProfile reports NoSuchEntity for it, or its Roles do not include the nodegroup's node role.",
        "`add_role_to_instance_profile` (needs approval) when the profile exists and holds no role. A profile holding another role may serve something else, and a deleted one is not nodemedic's to recreate: their commands are in the report (`aws iam add-role-to-instance-profile`, after `remove-role-from-instance-profile`; a profile holds one role).";
    NodeRoleMissingAccessEntry => "node_role_missing_access_entry", "identity",
        "The node role has no access entry on a cluster that authenticates with access entries only",
        "The cluster's accessConfig.authenticationMode is API and DescribeAccessEntry finds no entry for the node role.",
        "`create_access_entry` (needs approval): CreateAccessEntry with type EC2_LINUX for the node role.";
    NodeRoleNotFound => "node_role_not_found", "identity",
        "The node IAM role or instance profile does not exist",
        "GetRole reports NoSuchEntity for the nodegroup's node role, or EKS reports IamNodeRoleNotFound / IamInstanceProfileNotFound.",
        "No automatic fix. Recreate the role with the same name and the three managed policies (an access entry must then be recreated too: the role id changed).";
    ClusterAccessDenied => "cluster_access_denied", "identity",
        "Nodes cannot authenticate or are not authorized with the Kubernetes API server",
        "EKS health issue AccessDenied.",
        "No automatic fix. Check the aws-auth ConfigMap mapping or access entry of the node role, and the eks:node-manager ClusterRole and binding.";
    InsufficientCapacity => "insufficient_capacity", "launch",
        "EC2 has no capacity for the requested instance type in the zone",
        "The launch failure says InsufficientInstanceCapacity, \"do not have sufficient ... capacity\", \"no Spot capacity\" or UnfulfillableCapacity.",
        "No automatic fix. Allow more instance types or zones in the nodegroup, or retry later.";
    InstanceQuotaExceeded => "instance_quota_exceeded", "launch",
        "An EC2 quota stops the launch",
        "The launch failure mentions the vCPU limit, instance limit, Spot instance count or Fleet request quota (or EKS reports InstanceLimitExceeded).",
        "No automatic fix. Request a quota increase: `aws service-quotas request-service-quota-increase --service-code ec2 ...`.";
    LaunchTemplateNotFound => "launch_template_not_found", "launch",
        "The nodegroup's launch template does not exist",
        "DescribeLaunchTemplateVersions reports the template or version missing, or EKS reports Ec2LaunchTemplateNotFound.",
        "No automatic fix. Recreate the launch template (EKS may require recreating the nodegroup).";
    LaunchTemplateInvalid => "launch_template_invalid", "launch",
        "The launch template asks for something EC2 refuses",
        "The launch failure names an invalid parameter, device name or configuration, or EKS reports Ec2LaunchTemplateInvalidConfiguration.",
        "No automatic fix. Correct the launch template and update the nodegroup to the new version.";
    LaunchTemplateSecurityGroupMissing => "launch_template_security_group_missing", "launch",
        "A security group the launch template names was deleted",
        "DescribeSecurityGroups finds none of the ids the launch template lists, or the launch failure says the security group does not exist.",
        "No automatic fix. Create a launch template version with existing security groups and update the nodegroup.";
    LaunchTemplateKeyPairMissing => "launch_template_key_pair_missing", "launch",
        "The key pair the launch template names does not exist",
        "The launch failure says the key pair does not exist.",
        "No automatic fix. Create the key pair or remove it from the launch template.";
    AmiNotFound => "ami_not_found", "launch",
        "The launch template's AMI does not exist or is not shared",
        "DescribeImages finds no image for the launch template's ImageId, or EKS reports AmiIdNotFound.",
        "No automatic fix. Point the launch template at an available AMI.";
    RootVolumeTooSmall => "root_volume_too_small", "launch",
        "The nodes' root volume is smaller than the AMI's snapshot, or under 20 GiB (warning)",
        "The launch template's mapping of the AMI's root device (or the nodegroup's diskSize) sets a VolumeSize below the AMI's root snapshot (DescribeImages), which EC2 refuses, or below 20 GiB.",
        "No automatic fix. A launch template version with a larger root VolumeSize (30 GiB or more), then update the nodegroup to it.";
    UserDataTooLarge => "user_data_too_large", "launch",
        "The launch template's user data is larger than EC2's 16 KiB",
        "DescribeLaunchTemplateVersions: the user data, base64-decoded, is over 16,384 bytes.",
        "No automatic fix. Move configuration to S3 and download it at boot, or gzip the user data.";
    UserDataFormatMismatch => "user_data_format_mismatch", "launch",
        "A custom AMI's user data is for another AMI family",
        "The launch template's AMI is an AL2023 EKS AMI and its user data calls bootstrap.sh (or an AL2 AMI with only a nodeadm NodeConfig); MIME multipart and gzip are read as EC2 would.",
        "No automatic fix. AL2023: a MIME part application/node.eks.aws with a NodeConfig; AL2: /etc/eks/bootstrap.sh <cluster>.";
    BootstrapClusterNameMismatch => "bootstrap_cluster_name_mismatch", "launch",
        "A custom AMI's bootstrap names another cluster",
        "The cluster name passed to bootstrap.sh, or spec.cluster.name of the NodeConfig, is not the nodegroup's cluster (case-sensitive).",
        "No automatic fix. A launch template version whose user data names this cluster.";
    BootstrapArgsMissing => "bootstrap_args_missing", "launch",
        "A custom AMI's bootstrap lacks what it needs to find the cluster",
        "A NodeConfig without spec.cluster apiServerEndpoint, certificateAuthority or cidr (nodeadm requires them), or, on a private-only cluster, bootstrap.sh without --apiserver-endpoint and --b64-cluster-ca.",
        "No automatic fix. Pass the endpoint, CA and service CIDR from `aws eks describe-cluster` in the user data.";
    InstanceStuckPending => "instance_stuck_pending", "launch",
        "The node's instance is still pending more than five minutes after its launch",
        "DescribeInstances: the instance a launch or join check names is in state pending, launched more than 5 minutes before the trigger.",
        "No automatic fix. Read the instance's StateReason; terminate it so the group launches another.";
    ImdsHopLimitTooLow => "imds_hop_limit_too_low", "launch",
        "IMDSv2 is required with a hop limit of 1: pods cannot reach instance metadata (warning)",
        "The launch template's MetadataOptions set HttpTokens required and HttpPutResponseHopLimit 1, so a token response dies one hop short of any container not on the host network.",
        "A launch template version with HttpPutResponseHopLimit 2 (`--metadata-options HttpTokens=required,HttpPutResponseHopLimit=2`), unless no pod needs instance metadata (IRSA or Pod Identity everywhere).";
    CustomAmiWithoutBootstrap => "custom_ami_without_bootstrap", "launch",
        "A custom-AMI launch template has no bootstrap user data",
        "The launch template names an AMI (so EKS adds no bootstrap) and its user data is missing or calls neither /etc/eks/bootstrap.sh nor nodeadm (NodeConfig) nor Bottlerocket settings.",
        "No automatic fix. Add user data that bootstraps the node (bootstrap.sh or a nodeadm NodeConfig) to a new launch template version.";
    InstanceTypeUnavailable => "instance_type_unavailable", "launch",
        "The instance type does not exist or is not offered in the zone",
        "The launch failure says the type is not supported in the zone, or EKS reports Ec2InstanceTypeDoesNotExist.",
        "No automatic fix. Choose instance types offered in the nodegroup's zones.";
    SpotPriceTooLow => "spot_price_too_low", "launch",
        "The Spot maximum price is below the current price",
        "The launch failure says the Spot request price is lower than the minimum required.",
        "No automatic fix. Raise or remove the maximum price.";
    LifecycleHookAbandoned => "lifecycle_hook_abandoned", "launch",
        "A launch lifecycle hook abandoned the instance",
        "The launch failure says the lifecycle action was completed with ABANDON.",
        "No automatic fix. Check the hook's handler.";
    Ec2InternalError => "ec2_internal_error", "launch",
        "EC2 reported a transient internal error",
        "The launch failure says Server.InternalError.",
        "Nothing to do: Auto Scaling retries. Open a support case if it persists.";
    NodeCreationFailure => "node_creation_failure", "nodegroup",
        "Instances failed to join and no AWS-side cause was found",
        "EKS reports NodeCreationFailure (or a launched instance is past its join deadline) and every network, identity and launch check passed.",
        "No automatic fix. Check the aws-auth ConfigMap or access entries, the kubelet logs on the instance (`journalctl -u kubelet`), and the bootstrap arguments.";
    ClusterUnreachable => "cluster_unreachable", "nodegroup",
        "EKS or the nodes cannot reach the Kubernetes API server",
        "EKS health issue ClusterUnreachable.",
        "No automatic fix. Check the cluster endpoint access settings and the network path from the nodes.";
    AutoscalingGroupMissing => "autoscaling_group_missing", "nodegroup",
        "The nodegroup's Auto Scaling group is gone",
        "EKS health issue AutoScalingGroupNotFound.",
        "No automatic fix. Recreate the nodegroup.";
    AutoscalingGroupModified => "autoscaling_group_modified", "nodegroup",
        "The nodegroup's Auto Scaling group was changed outside EKS",
        "EKS health issue AutoScalingGroupInvalidConfiguration.",
        "No automatic fix. Revert the out-of-band change to the Auto Scaling group.";
    AutoscalingOptInRequired => "autoscaling_opt_in_required", "nodegroup",
        "The account is not opted in to Auto Scaling",
        "EKS health issue AutoScalingGroupOptInRequired.",
        "No automatic fix. Complete the account's opt-in.";
    ClusterSecurityGroupMissing => "cluster_security_group_missing", "nodegroup",
        "The cluster security group was deleted",
        "EKS health issue Ec2SecurityGroupNotFound.",
        "No automatic fix. The cluster must be recreated.";
    LaunchTemplateVersionMismatch => "launch_template_version_mismatch", "nodegroup",
        "The launch template version differs from the one EKS created",
        "EKS health issue Ec2LaunchTemplateVersionMismatch.",
        "No automatic fix. Revert the launch template to the version EKS created.";
    LaunchTemplateLimitExceeded => "launch_template_limit_exceeded", "nodegroup",
        "A launch template or version limit is reached",
        "EKS health issue Ec2LaunchTemplateMaxLimitExceeded or Ec2LaunchTemplateVersionMaxLimitExceeded.",
        "No automatic fix. Delete unused launch templates or versions.";
    SubnetNotFound => "subnet_not_found", "nodegroup",
        "A nodegroup subnet does not exist",
        "EKS health issue Ec2SubnetNotFound.",
        "No automatic fix. Recreate the nodegroup with existing subnets.";
    SubnetMissingIpv6 => "subnet_missing_ipv6", "nodegroup",
        "An IPv6 cluster's subnet does not assign IPv6 addresses",
        "EKS health issue Ec2SubnetMissingIpv6Assignment.",
        "No automatic fix. Enable AssignIpv6AddressOnCreation on the subnet.";
    SubnetListTooLong => "subnet_list_too_long", "nodegroup",
        "The nodegroup names too many subnets",
        "EKS health issue Ec2SubnetListTooLong.",
        "No automatic fix. Use fewer subnets.";
    AwsApiLimit => "aws_api_limit", "nodegroup",
        "An AWS API limit or throttle stops EKS",
        "EKS health issue IamLimitExceeded, IamThrottling, AutoScalingGroupRateLimitExceeded or LimitExceeded.",
        "No automatic fix. Reduce concurrent changes or request a limit increase; EKS retries.";
    EksInternalFailure => "eks_internal_failure", "nodegroup",
        "EKS reports an internal failure",
        "EKS health issue InternalFailure.",
        "No automatic fix. Retry; open a support case if it persists.";
    KubernetesLabelInvalid => "kubernetes_label_invalid", "nodegroup",
        "A nodegroup label is not a valid Kubernetes label",
        "EKS health issue KubernetesLabelInvalid.",
        "No automatic fix. Correct the label with UpdateNodegroupConfig.";
    NodegroupCleanupBlocked => "nodegroup_cleanup_blocked", "nodegroup",
        "EKS cannot clean up or drain part of the nodegroup (not a join failure)",
        "EKS health issue NodeTerminationFailure, PodEvictionFailure, Ec2SecurityGroupDeletionFailure or Ec2LaunchTemplateDeletionFailure.",
        "No automatic fix. Remove the dependency or the PodDisruptionBudget that blocks it.";
    InstanceRefreshInProgress => "instance_refresh_in_progress", "nodegroup",
        "An instance refresh is running on the Auto Scaling group",
        "EKS health issue AutoScalingGroupInstanceRefreshActive.",
        "Wait for the refresh to finish or cancel it.";
    AwsAuthMissingNodeRole => "aws_auth_missing_node_role", "cluster",
        "The node role is neither in the aws-auth ConfigMap nor in an EC2_LINUX access entry",
        "DescribeCluster accessConfig.authenticationMode is CONFIG_MAP or API_AND_CONFIG_MAP; DescribeAccessEntry finds no EC2_LINUX entry for the node role (API_AND_CONFIG_MAP); kube-system/aws-auth mapRoles has no entry for the role with the groups system:bootstrappers and system:nodes.",
        "On API_AND_CONFIG_MAP: `create_access_entry` (needs approval): CreateAccessEntry of type EC2_LINUX for the node role. On CONFIG_MAP: add the role to mapRoles (`eksctl create iamidentitymapping --cluster <cluster> --arn <role arn> --group system:bootstrappers --group system:nodes --username 'system:node:{{EC2PrivateDNSName}}'`). nodemedic never writes aws-auth.";
    AwsAuthRoleArnHasPath => "aws_auth_role_arn_has_path", "cluster",
        "aws-auth maps the node role by an ARN with an IAM path, or by an instance-profile ARN",
        "kube-system/aws-auth mapRoles: the rolearn naming the node role includes its path (role/path/Name) or is an instance-profile ARN; the authenticator compares the pathless role ARN and never matches either.",
        "No automatic fix (nodemedic never writes aws-auth). Write the role ARN without its path: arn:<partition>:iam::<account>:role/<RoleName>.";
    AwsAuthMalformed => "aws_auth_malformed", "cluster",
        "The aws-auth ConfigMap's mapRoles is not valid YAML or not a list of mappings",
        "kube-system/aws-auth data.mapRoles does not parse as a YAML list of mappings; the authenticator then keeps no role mapping at all, so every node is Unauthorized.",
        "No automatic fix (nodemedic never writes aws-auth). `kubectl -n kube-system edit configmap aws-auth` and correct mapRoles (the parse error is in the finding).";
    NodeCsrDenied => "node_csr_denied", "cluster",
        "A kubelet certificate signing request of the nodegroup's nodes was denied or failed",
        "certificates.k8s.io/v1 CertificateSigningRequests requested by system:node:<a node of the nodegroup> with a Denied or Failed condition.",
        "No automatic fix. Read the condition's reason; `kubectl certificate approve <csr>` once the cause (a policy denying it, SANs EKS cannot verify) is fixed, or replace the node.";
    AwsNodeTaintNotTolerated => "aws_node_taint_not_tolerated", "cluster",
        "The nodegroup's taints are not tolerated by the aws-node DaemonSet, so the VPC CNI never starts",
        "DescribeNodegroup taints with effect NO_SCHEDULE or NO_EXECUTE that no toleration of kube-system/aws-node's pod template tolerates.",
        "No automatic fix. Add a toleration to aws-node (the add-on's configuration values `tolerations`), or remove the taint from the nodegroup.";
    NodeBootError => "node_boot_error", "instance",
        "The node's console output shows why it did not register",
        "EC2 GetConsoleOutput of an instance that runs but has no Node: lines of bootstrap.sh, nodeadm or cloud-init with a timeout to the endpoint, a DNS failure, Unauthorized, an x509 error, a cluster not found, a nodeadm configuration error or a failed cloud-init module.",
        "No automatic fix from the log itself; the quoted lines point at the cause (a line that confirms an AWS-side finding is attached to it).";
    NodeNotReady => "node_not_ready", "cluster",
        "The node registered but is not Ready",
        "The Node of an instance of the nodegroup has condition Ready False or Unknown; its reason and message are quoted (for example the CNI not initialized).",
        "No automatic fix. Read the condition's message: a CNI that did not start (aws-node), a kubelet that stopped posting status, a full disk.";
    NodeNotRegistered => "node_not_registered", "cluster",
        "An instance of the nodegroup ran past the join deadline without registering a Node",
        "DescribeInstances: the instance is running and launched more than join.deadline_secs before the cluster's API was read; no Node carries its providerID aws:///<zone>/<instance-id>.",
        "No automatic fix by itself: the other checks of the incident (identity, network, boot log) name the cause.";
    Unknown => "unknown", "nodegroup",
        "No rule matched",
        "The nodegroup failed and no rule explains it; the raw failure text and all evidence are recorded.",
        "Read the recorded failure text and evidence (`nodemedic audit show ID`).";
}

impl Cause {
    pub fn from_code(code: &str) -> Option<Cause> {
        Cause::ALL
            .iter()
            .copied()
            .find(|cause| cause.code() == code)
    }

    /// Order among findings of one incident: causes no fix can help come first (fixing anything
    /// else would not make nodes join), then the order of the checklist.
    pub fn rank(self) -> usize {
        let fixable = matches!(
            self,
            Cause::KmsKeyPolicyBlocksAutoscaling
                | Cause::SubnetNoEgressRoute
                | Cause::DefaultRouteBlackhole
                | Cause::NatGatewayUnavailable
                | Cause::VpcDnsDisabled
                | Cause::PublicSubnetWithoutPublicIp
                | Cause::NodeRoleMissingPolicy
                | Cause::NodeRoleMissingAccessEntry
                | Cause::AwsAuthMissingNodeRole
        );
        let position = Cause::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or(usize::MAX);
        match self {
            Cause::Unknown | Cause::NodeCreationFailure => 10_000 + position,
            // Symptoms: a node that did not register or is not Ready is explained by the
            // other findings, and its boot log by the AWS-side ones it corroborates.
            Cause::NodeNotRegistered | Cause::NodeNotReady => 5_000 + position,
            Cause::NodeBootError => 4_000 + position,
            _ if fixable => 1_000 + position,
            _ => position,
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}
