//! Links from resource ids in the evidence to the AWS console, so a reviewer can check what
//! nodemedic saw with their own eyes.

/// The AWS console page of a resource id or ARN nodemedic records, in `region`.
pub fn console_url(id: &str, region: &str) -> Option<String> {
    let vpc = |fragment: String| {
        format!(
            "https://{region}.console.aws.amazon.com/vpcconsole/home?region={region}#{fragment}"
        )
    };
    let ec2 = |fragment: String| {
        format!("https://{region}.console.aws.amazon.com/ec2/home?region={region}#{fragment}")
    };
    if let Some(arn) = id.strip_prefix("arn:") {
        let parts: Vec<&str> = arn.splitn(5, ':').collect();
        let [partition, service, arn_region, _account, resource] = parts[..] else {
            return None;
        };
        if partition != "aws" {
            // GovCloud and China have consoles of their own; no guessing.
            return None;
        }
        return match service {
            "kms" => {
                let key = resource.strip_prefix("key/")?;
                Some(format!(
                    "https://{arn_region}.console.aws.amazon.com/kms/home?region={arn_region}#/kms/keys/{key}"
                ))
            }
            "iam" => {
                let role = resource.strip_prefix("role/")?;
                let name = role.rsplit('/').next()?;
                Some(format!(
                    "https://console.aws.amazon.com/iam/home#/roles/details/{name}"
                ))
            }
            _ => None,
        };
    }
    let (prefix, _) = id.split_once('-')?;
    let rest = &id[prefix.len() + 1..];
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(match prefix {
        "subnet" => vpc(format!("SubnetDetails:subnetId={id}")),
        "rtb" => vpc(format!("RouteTableDetails:RouteTableId={id}")),
        "nat" => vpc(format!("NatGatewayDetails:natGatewayId={id}")),
        "vpc" => vpc(format!("VpcDetails:VpcId={id}")),
        "acl" => vpc(format!("NetworkAclDetails:networkAclId={id}")),
        "vpce" => vpc(format!("EndpointDetails:vpcEndpointId={id}")),
        "igw" => vpc(format!("InternetGatewayDetails:internetGatewayId={id}")),
        "dopt" => vpc(format!("DhcpOptionsDetails:DhcpOptionsId={id}")),
        "sg" => ec2(format!("SecurityGroup:groupId={id}")),
        "i" => ec2(format!("InstanceDetails:instanceId={id}")),
        "lt" => ec2(format!("LaunchTemplateDetails:launchTemplateId={id}")),
        "ami" => ec2(format!("ImageDetails:imageId={id}")),
        _ => return None,
    })
}

/// The console page of an EKS nodegroup.
pub fn nodegroup_url(region: &str, cluster: &str, nodegroup: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/eks/home?region={region}#/clusters/{}/nodegroups/{}",
        encode(cluster),
        encode(nodegroup)
    )
}

/// The console page of an Auto Scaling group.
pub fn auto_scaling_group_url(region: &str, group: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/ec2/home?region={region}#AutoScalingGroupDetails:id={}",
        encode(group)
    )
}

/// Percent-encodes everything but unreserved characters.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_link_to_their_console_pages() {
        assert_eq!(
            console_url("subnet-2c3f6e0de6ce31758", "us-west-2").as_deref(),
            Some(
                "https://us-west-2.console.aws.amazon.com/vpcconsole/home?region=us-west-2#SubnetDetails:subnetId=subnet-2c3f6e0de6ce31758"
            )
        );
        assert_eq!(
            console_url("i-ed01b774154b5efaa", "eu-west-1").as_deref(),
            Some(
                "https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#InstanceDetails:instanceId=i-ed01b774154b5efaa"
            )
        );
        assert_eq!(
            console_url(
                "arn:aws:kms:us-west-2:123456789012:key/163908b8-f5e4-46c6-a9f5-d41d53b60d5e",
                "eu-west-1"
            )
            .as_deref(),
            Some(
                "https://us-west-2.console.aws.amazon.com/kms/home?region=us-west-2#/kms/keys/163908b8-f5e4-46c6-a9f5-d41d53b60d5e"
            ),
            "a key's own region wins"
        );
        assert_eq!(
            console_url("arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling", "us-west-2").as_deref(),
            Some("https://console.aws.amazon.com/iam/home#/roles/details/AWSServiceRoleForAutoScaling")
        );
    }

    #[test]
    fn anything_else_gets_no_link() {
        for text in [
            "kms_key_policy_blocks_autoscaling",
            "sg-",
            "subnet-zz",
            "new_nodegroup_1",
            "arn:aws-cn:kms:cn-north-1:1:key/x",
            "arn:aws:s3:::bucket",
            "i-",
        ] {
            assert_eq!(console_url(text, "us-west-2"), None, "{text}");
        }
    }

    #[test]
    fn names_in_urls_are_encoded() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert!(nodegroup_url("us-west-2", "c", "n g").ends_with("/clusters/c/nodegroups/n%20g"));
    }
}
