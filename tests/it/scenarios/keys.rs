//! Keys whose owners let Auto Scaling in some other way than the guide's two statements: a
//! condition in the `aws/ebs` shape, a grant, a condition nodemedic cannot evaluate. A CloudTrail
//! preflight (no instance, no launch failure) must leave all of them as they are, even in auto
//! mode; a key that certainly lacks the role is planned but waits for a human, because nothing
//! has failed yet.

use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    RequestLaunchTemplateData,
};
use aws_sdk_kms::types::GrantOperation;

use super::*;
use crate::sources::cloudtrail;
use crate::support::actions;

async fn key_with_policy(world: &World, policy: &str) -> String {
    let c = &world.clients;
    let key = c.kms.create_key().send().await.unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
    c.kms
        .put_key_policy()
        .key_id(&arn)
        .policy_name("default")
        .policy(policy)
        .send()
        .await
        .unwrap();
    arn
}

fn volume(device: &str, key: &str) -> LaunchTemplateBlockDeviceMappingRequest {
    LaunchTemplateBlockDeviceMappingRequest::builder()
        .device_name(device)
        .ebs(
            LaunchTemplateEbsBlockDeviceRequest::builder()
                .encrypted(true)
                .kms_key_id(key)
                .volume_size(20)
                .build(),
        )
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preflight_never_widens_a_key_an_owner_narrowed() {
    let world = World::new(3).await;
    let account = world.network.account.clone();
    let role = format!(
        "arn:aws:iam::{account}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    );
    let root = json!({"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
        "Action": "kms:*", "Resource": "*"});
    // The aws/ebs shape: everyone in the account, through EC2 in this region.
    let through_ebs = key_with_policy(&world, &json!({"Version": "2012-10-17", "Statement": [root.clone(),
        {"Sid": "ThroughEbs", "Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"],
         "Resource": "*",
         "Condition": {"StringEquals": {"kms:CallerAccount": account, "kms:ViaService": "ec2.us-west-2.amazonaws.com"}}}]}).to_string()).await;
    // A grant to the role, as `aws kms create-grant` makes it.
    let granted = key_with_policy(&world, &lab::root_only_policy(&account)).await;
    world
        .clients
        .kms
        .create_grant()
        .key_id(&granted)
        .grantee_principal(&role)
        .set_operations(Some(vec![
            GrantOperation::Encrypt,
            GrantOperation::Decrypt,
            GrantOperation::ReEncryptFrom,
            GrantOperation::ReEncryptTo,
            GrantOperation::GenerateDataKey,
            GrantOperation::GenerateDataKeyWithoutPlaintext,
            GrantOperation::DescribeKey,
            GrantOperation::CreateGrant,
        ]))
        .send()
        .await
        .unwrap();
    // A condition on the organisation, which nodemedic cannot know.
    let org_only = key_with_policy(&world, &json!({"Version": "2012-10-17", "Statement": [root.clone(),
        {"Sid": "OrgOnly", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}}]}).to_string()).await;
    // And one that certainly lacks the role: only the account root.
    let root_only = key_with_policy(&world, &lab::root_only_policy(&account)).await;

    let keys = [&through_ebs, &granted, &org_only, &root_only];
    let mut before = Vec::new();
    for key in keys {
        before.push(world.key_policy(key).await);
    }
    let data = RequestLaunchTemplateData::builder()
        .set_block_device_mappings(Some(vec![
            volume("/dev/xvda", &through_ebs),
            volume("/dev/xvdb", &granted),
            volume("/dev/xvdc", &org_only),
            volume("/dev/xvdd", &root_only),
        ]))
        .build();
    let template = template(&world, "narrowed", data).await;
    lab::nodegroup(
        &world.clients,
        &world.network,
        "narrowed",
        &world.network.private_subnet,
        (0, 2, 0),
        Some(&template),
    )
    .await
    .unwrap();

    world
        .send_raw(&cloudtrail(&account, "UpdateNodegroupConfig", "narrowed"))
        .await;
    world.run_once("auto");

    for (key, policy) in keys.iter().zip(&before) {
        assert_eq!(
            &world.key_policy(key).await,
            policy,
            "key {key} was changed"
        );
    }
    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["cause"], "kms_key_policy_blocks_autoscaling");
    assert_eq!(incidents[0]["outcome"], "planned");
    assert_eq!(
        actions(&incidents[0]),
        vec![("patch_kms_key_policy".to_string(), "planned".to_string())],
        "one patch, of the root-only key, waiting for a human"
    );
    let shown = world.show(incidents[0]["incident_id"].as_str().unwrap());
    let text = shown.to_string();
    assert!(
        text.contains(&root_only),
        "the plan names the root-only key"
    );
    assert!(
        text.contains("no launch has failed with a KMS error yet"),
        "the reason a human must look is recorded"
    );
    let (_, report) = world.diagnose(CLUSTER, Some("narrowed"));
    let checks = report.to_string();
    assert!(
        checks.contains("OrgOnly"),
        "the undecided key is reported, not hidden"
    );
}
