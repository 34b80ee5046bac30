//! What a launch uses: the nodegroup's own launch template (and its user data), its AMI, and the
//! KMS keys its volumes name, with their policies and tags.

use std::collections::BTreeSet;

use base64::Engine;

use super::*;
use crate::core::key_policy::{self, Access, Caller};

/// User data beyond this is not needed to recognise a bootstrap call.
pub(super) const USER_DATA_LIMIT: usize = 16 * 1024;

pub(super) async fn launch_template(
    clients: &AwsClients,
    template: &TemplateRef,
    calls: &mut CallLog,
) -> Result<Option<TemplateLookup>, AwsError> {
    let version = template
        .version
        .clone()
        .unwrap_or_else(|| "$Default".into());
    let mut request = clients
        .ec2
        .describe_launch_template_versions()
        .versions(&version);
    let reference = match (&template.id, &template.name) {
        (Some(id), _) => {
            request = request.launch_template_id(id);
            id.clone()
        }
        (None, Some(name)) => {
            request = request.launch_template_name(name);
            name.clone()
        }
        (None, None) => return Ok(None),
    };
    calls.record("ec2:DescribeLaunchTemplateVersions");
    let output = match request
        .send()
        .await
        .op("ec2:DescribeLaunchTemplateVersions")
    {
        Err(error) if error.code.starts_with("InvalidLaunchTemplate") => {
            return Ok(Some(TemplateLookup::NotFound {
                reference: format!("{reference} version {version}"),
                reason: format!("{}: {}", error.code, error.message),
            }));
        }
        other => other?,
    };
    let Some(found) = output.launch_template_versions().first() else {
        return Ok(Some(TemplateLookup::NotFound {
            reference: format!("{reference} version {version}"),
            reason: "DescribeLaunchTemplateVersions returned no version".into(),
        }));
    };
    let data = found.launch_template_data();
    let volumes = data
        .map(|d| d.block_device_mappings())
        .unwrap_or_default()
        .iter()
        .filter_map(|mapping| {
            let ebs = mapping.ebs()?;
            Some(VolumeFacts {
                device_name: mapping.device_name().unwrap_or_default().to_string(),
                encrypted: ebs.encrypted().unwrap_or(false),
                kms_key_id: ebs.kms_key_id().map(str::to_string),
                size_gib: ebs.volume_size(),
            })
        })
        .collect();
    let mut security_group_ids: Vec<String> = data
        .map(|d| d.security_group_ids().to_vec())
        .unwrap_or_default();
    for interface in data.map(|d| d.network_interfaces()).unwrap_or_default() {
        security_group_ids.extend(interface.groups().iter().cloned());
    }
    security_group_ids.dedup();
    Ok(Some(TemplateLookup::Found(LaunchTemplateFacts {
        id: found.launch_template_id().unwrap_or_default().to_string(),
        version: found
            .version_number()
            .map(|v| v.to_string())
            .unwrap_or(version),
        volumes,
        image_id: data
            .and_then(|d| d.image_id())
            .filter(|i| !i.is_empty())
            .map(str::to_string),
        user_data: data.and_then(|d| d.user_data()).map(decode_user_data),
        user_data_bytes: data.and_then(|d| d.user_data()).map(user_data_bytes),
        forbidden_settings: data.map(forbidden_settings).unwrap_or_default(),
        metadata_options: data
            .and_then(|d| d.metadata_options())
            .map(|m| MetadataOptions {
                http_tokens: m.http_tokens().map(|t| t.as_str().to_string()),
                hop_limit: m.http_put_response_hop_limit(),
            }),
        security_group_ids,
        missing_security_group_ids: Vec::new(),
        key_name: data.and_then(|d| d.key_name()).map(str::to_string),
    })))
}

/// What EKS refuses in a managed nodegroup's launch template ("Launch template configuration
/// basics" of the EKS user guide).
fn forbidden_settings(data: &aws_sdk_ec2::types::ResponseLaunchTemplateData) -> Vec<String> {
    let mut found: Vec<String> = data
        .network_interfaces()
        .iter()
        .filter_map(|interface| interface.subnet_id())
        .map(|subnet| format!("NetworkInterfaces.SubnetId={subnet}"))
        .collect();
    if let Some(profile) = data
        .iam_instance_profile()
        .and_then(|p| p.arn().or(p.name()))
    {
        found.push(format!("IamInstanceProfile={profile}"));
    }
    if let Some(market) = data.instance_market_options().and_then(|m| m.market_type()) {
        found.push(format!(
            "InstanceMarketOptions.MarketType={}",
            market.as_str()
        ));
    }
    if data
        .hibernation_options()
        .and_then(|h| h.configured())
        .unwrap_or(false)
    {
        found.push("HibernationOptions.Configured=true".into());
    }
    if let Some(behaviour) = data.instance_initiated_shutdown_behavior()
        && behaviour.as_str() == "terminate"
    {
        found.push("InstanceInitiatedShutdownBehavior=terminate".into());
    }
    found
}

/// Launch template user data is base64 of what EC2 hands the instance.
fn raw_user_data(encoded: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap_or_else(|_| encoded.as_bytes().to_vec())
}

/// The size EC2 limits: the user data after base64 decoding.
fn user_data_bytes(encoded: &str) -> usize {
    raw_user_data(encoded).len()
}

/// The user data as text, gunzipped when it is gzip (cloud-init reads either), truncated.
pub(super) fn decode_user_data(encoded: &str) -> String {
    let raw = raw_user_data(encoded);
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut unzipped = Vec::new();
        let limit = u64::try_from(USER_DATA_LIMIT).unwrap_or(u64::MAX);
        match std::io::Read::read_to_end(
            &mut std::io::Read::take(flate2::read::GzDecoder::new(raw.as_slice()), limit),
            &mut unzipped,
        ) {
            Ok(_) => unzipped,
            Err(_) => raw,
        }
    } else {
        raw
    };
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if text.len() > USER_DATA_LIMIT {
        let mut cut = USER_DATA_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

pub(super) async fn image(
    clients: &AwsClients,
    image_id: &str,
    calls: &mut CallLog,
) -> Result<ImageLookup, AwsError> {
    calls.record("ec2:DescribeImages");
    let output = match clients
        .ec2
        .describe_images()
        .image_ids(image_id)
        .send()
        .await
        .op("ec2:DescribeImages")
    {
        Err(error) if error.code.starts_with("InvalidAMIID") => {
            return Ok(ImageLookup::NotFound {
                image_id: image_id.into(),
            });
        }
        other => other?,
    };
    Ok(match output.images().first() {
        Some(found) => ImageLookup::Found {
            image_id: image_id.into(),
            name: found.name().map(str::to_string),
            root_device_name: found.root_device_name().map(str::to_string),
            root_snapshot_gib: found
                .block_device_mappings()
                .iter()
                .find(|m| m.device_name() == found.root_device_name())
                .and_then(|m| m.ebs())
                .and_then(|ebs| ebs.volume_size()),
            state: found
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        },
        None => ImageLookup::NotFound {
            image_id: image_id.into(),
        },
    })
}

/// The key's grants to the Auto Scaling role: a grant lets the role in as a policy statement
/// does. Grants are read only when the policy alone does not decide.
async fn grants(
    clients: &AwsClients,
    key_arn: &str,
    role: &str,
    facts: &mut KeyMetadata,
    calls: &mut CallLog,
) -> Result<(), AwsError> {
    let mut marker = None;
    // A key holds at most 50,000 grants; five pages of 100 to one grantee is far past any real
    // key, and the rest is then reported as unread rather than waited for.
    for _ in 0..5 {
        calls.record("kms:ListGrants");
        let page = clients
            .kms
            .list_grants()
            .key_id(key_arn)
            .grantee_principal(role)
            .limit(100)
            .set_marker(marker.take())
            .send()
            .await
            .op("kms:ListGrants");
        let page = match page {
            Ok(page) => page,
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                facts.grants_unreadable = Some(format!("{}: {}", error.code, error.message));
                return Ok(());
            }
        };
        facts.grants.extend(
            page.grants()
                // The filter is the API's; a peer that ignores it must not widen the answer.
                .iter()
                .filter(|grant| grant.grantee_principal() == Some(role))
                .map(|grant| KeyGrant {
                    grant_id: grant.grant_id().unwrap_or_default().to_string(),
                    grantee_principal: role.to_string(),
                    operations: grant
                        .operations()
                        .iter()
                        .map(|op| op.as_str().to_string())
                        .collect(),
                    constrained: grant.constraints().is_some_and(|c| {
                        c.encryption_context_subset().is_some()
                            || c.encryption_context_equals().is_some()
                    }),
                }),
        );
        match (page.truncated(), page.next_marker()) {
            (true, Some(next)) => marker = Some(next.to_string()),
            _ => return Ok(()),
        }
    }
    facts.grants_unreadable =
        Some("more than 500 grants to the role; the rest were not read".into());
    Ok(())
}

pub(super) async fn keys(
    clients: &AwsClients,
    template: &LaunchTemplateFacts,
    account: &str,
    service_linked_role: Option<&str>,
    calls: &mut CallLog,
) -> Result<Vec<KeyFacts>, AwsError> {
    let references: BTreeSet<&str> = template
        .volumes
        .iter()
        .filter_map(|v| v.kms_key_id.as_deref())
        .collect();
    let mut keys = Vec::new();
    for reference in references {
        calls.record("kms:DescribeKey");
        let described = clients
            .kms
            .describe_key()
            .key_id(reference)
            .send()
            .await
            .op("kms:DescribeKey");
        let described = match described {
            Err(error) if error.is_code("NotFoundException") => {
                keys.push(KeyFacts {
                    reference: reference.to_string(),
                    lookup: KeyLookup::NotFound {
                        reason: format!("{}: {}", error.code, error.message),
                    },
                });
                continue;
            }
            Err(error) if error.is_code("AccessDeniedException") => {
                keys.push(KeyFacts {
                    reference: reference.to_string(),
                    lookup: KeyLookup::Unreadable {
                        reason: format!("{}: {}", error.code, error.message),
                    },
                });
                continue;
            }
            other => other?,
        };
        let Some(metadata) = described.key_metadata() else {
            continue;
        };
        let arn = metadata.arn().unwrap_or(reference).to_string();
        let owner = metadata
            .aws_account_id()
            .map(str::to_string)
            .or_else(|| arn.split(':').nth(4).map(str::to_string))
            .unwrap_or_default();
        let mut facts = KeyMetadata {
            arn: arn.clone(),
            key_id: metadata.key_id().to_string(),
            account: owner.clone(),
            state: metadata
                .key_state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "Unknown".into()),
            manager: metadata
                .key_manager()
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| "CUSTOMER".into()),
            policy: None,
            policy_unreadable: None,
            tags: Tags::new(),
            tags_unreadable: None,
            grants: Vec::new(),
            grants_unreadable: None,
        };
        if facts.state == "Enabled" && facts.is_customer_managed() {
            if owner == account {
                calls.record("kms:ListResourceTags");
                match clients
                    .kms
                    .list_resource_tags()
                    .key_id(&arn)
                    .send()
                    .await
                    .op("kms:ListResourceTags")
                {
                    Ok(output) => {
                        facts.tags = output
                            .tags()
                            .iter()
                            .map(|t| (t.tag_key().to_string(), t.tag_value().to_string()))
                            .collect()
                    }
                    Err(error) if error.is_transient() => return Err(error),
                    // The diagnosis does not need tags; the guard refuses to touch the key when
                    // tag rules exist.
                    Err(error) => {
                        facts.tags_unreadable = Some(format!("{}: {}", error.code, error.message))
                    }
                }
                calls.record("kms:GetKeyPolicy");
                match clients
                    .kms
                    .get_key_policy()
                    .key_id(&arn)
                    .policy_name("default")
                    .send()
                    .await
                    .op("kms:GetKeyPolicy")
                {
                    Ok(output) => facts.policy = output.policy().map(str::to_string),
                    Err(error) if !error.is_transient() => {
                        facts.policy_unreadable = Some(format!("{}: {}", error.code, error.message))
                    }
                    Err(error) => return Err(error),
                }
                let role = service_linked_role.map(str::to_string).unwrap_or_else(|| {
                    let partition = arn.split(':').nth(1).unwrap_or("aws");
                    key_policy::default_autoscaling_role(partition, account)
                });
                let policy_alone = facts
                    .policy
                    .as_deref()
                    .map(|policy| key_policy::assess(policy, Caller::for_key(&role, &arn), &[]));
                if !matches!(policy_alone, Some(Ok(Access::Granted))) {
                    grants(clients, &arn, &role, &mut facts, calls).await?;
                }
            } else {
                facts.policy_unreadable = Some(format!(
                    "the key belongs to account {owner}; GetKeyPolicy works only in the key's own account"
                ));
            }
        }
        keys.push(KeyFacts {
            reference: reference.to_string(),
            lookup: KeyLookup::Found(facts),
        });
    }
    Ok(keys)
}
