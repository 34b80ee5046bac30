//! Intake against the emulator's SQS and EventBridge: bad input never stops the daemon and is
//! left for the dead-letter queue; other events are acknowledged and recorded as ignored.

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_sdk_ec2::types::RequestLaunchTemplateData;
use nodemedic::aws::AwsResultExt;
use nodemedic::lab;
use serde_json::json;

use crate::support::World;

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_go_to_the_dead_letter_queue_and_the_next_message_is_processed() {
    let world = World::new(2).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    world.send_raw("this is not json").await;
    world.send_raw(&json!({"hello": "world"}).to_string()).await;
    world
        .send_raw(&json!({"id": "e-1", "source": "aws.autoscaling", "detail-type": "EC2 Instance Launch Unsuccessful",
            "account": "123456789012", "region": "us-west-2", "time": "2024-10-04T18:06:36Z",
            "detail": {"StatusCode": "Failed"}}).to_string())
        .await;
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &lab.group,
        &world.network.private_subnet,
    )
    .await
    .expect("event");

    // A kept message comes back after its visibility timeout (one second here); the queue's
    // redrive policy moves it to the dead-letter queue after two receives. Drain until it has.
    let first = world.run_once_with(
        "auto",
        &[("NODEMEDIC_INTAKE__VISIBILITY_TIMEOUT_SECS", "1")],
    );
    for _ in 0..5 {
        if world.messages_waiting(&world.queue.url).await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        world.run_once_with(
            "auto",
            &[("NODEMEDIC_INTAKE__VISIBILITY_TIMEOUT_SECS", "1")],
        );
    }

    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "the valid event was handled");
    assert_eq!(incidents[0]["outcome"], "fixed");
    assert_eq!(
        world.messages_waiting(&world.queue.url).await,
        0,
        "nothing left on the queue"
    );
    assert_eq!(
        world.messages_waiting(&world.queue.dead_letter_url).await,
        3,
        "the three bad bodies were redriven to the dead-letter queue"
    );
    let rejected: Vec<_> = world
        .loose_records()
        .into_iter()
        .filter(|r| r.kind == "message_rejected")
        .collect();
    let reasons: Vec<String> = rejected
        .iter()
        .map(|r| r.body["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("not JSON")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("`id`")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("AutoScalingGroupName")),
        "{reasons:?}"
    );
    let log = crate::support::stderr(&first);
    assert!(
        log.contains("not a valid event"),
        "the reason is logged:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_wrapped_in_an_sns_notification_is_handled() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    lab::publish_launch_event(
        &world.clients,
        &world.network,
        &lab.group,
        &world.network.private_subnet,
    )
    .await
    .expect("event");
    let bodies = world.peek_bodies().await;
    // Replace the plain delivery by the same event as SNS delivers it without raw delivery.
    let received = world
        .clients
        .sqs
        .receive_message()
        .queue_url(&world.queue.url)
        .send()
        .await
        .expect("receive");
    for message in received.messages() {
        world
            .clients
            .sqs
            .delete_message()
            .queue_url(&world.queue.url)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .expect("delete");
    }
    let notification = json!({
        "Type": "Notification",
        "MessageId": "5b0a5f0b-0000-0000-0000-000000000000",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:autoscaling-events",
        "Message": bodies[0],
        "Timestamp": "2026-01-01T00:00:00.000Z",
    });
    world.send_raw(&notification.to_string()).await;

    world.run_once("dry-run");

    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["cause"], "kms_key_policy_blocks_autoscaling");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_that_is_not_a_managed_nodegroups_is_ignored_and_untouched() {
    let world = World::new(3).await;
    let template = world
        .clients
        .ec2
        .create_launch_template()
        .launch_template_name("web")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .build(),
        )
        .send()
        .await
        .op("ec2:CreateLaunchTemplate")
        .expect("template");
    let template_id = template
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .unwrap();
    world
        .clients
        .autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("web-servers")
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(template_id)
                .build(),
        )
        .min_size(0)
        .max_size(1)
        .desired_capacity(0)
        .vpc_zone_identifier(&world.network.private_subnet)
        .tags(Tag::builder().key("team").value("web").build())
        .send()
        .await
        .op("autoscaling:CreateAutoScalingGroup")
        .expect("group");
    let detail = json!({
        "StatusCode": "Failed", "AutoScalingGroupName": "web-servers",
        "StatusMessage": "Instance became unhealthy while waiting for instance to be in InService state. Termination Reason: Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state",
        "EC2InstanceId": "", "Details": {"Subnet ID": world.network.private_subnet, "Availability Zone": lab::ZONE},
    });
    lab::put_event(
        &world.clients,
        &world.network.account,
        nodemedic::intake::LAUNCH_UNSUCCESSFUL,
        &detail,
        "web-servers",
    )
    .await
    .expect("event");
    // A broader rule (or another producer) may deliver other well-formed events to the queue.
    let terminate = json!({"version": "0", "id": "terminate-1", "detail-type": "EC2 Instance Terminate Successful",
        "source": "aws.autoscaling", "account": world.network.account, "time": "2026-01-01T00:00:00Z",
        "region": "us-west-2", "resources": [], "detail": {"AutoScalingGroupName": "web-servers", "EC2InstanceId": "i-1"}});
    world.send_raw(&terminate.to_string()).await;

    world.run_once("auto");

    assert!(
        world.incidents().is_empty(),
        "no incident for a group that is not ours"
    );
    let ignored: Vec<_> = world
        .loose_records()
        .into_iter()
        .filter(|r| r.kind == "event_ignored")
        .collect();
    assert_eq!(ignored.len(), 2, "both events are recorded as ignored");
    let reasons: Vec<String> = ignored
        .iter()
        .map(|r| r.body["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not an EKS managed nodegroup")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("does not act on")),
        "{reasons:?}"
    );
    assert_eq!(
        world.messages_waiting(&world.queue.url).await,
        0,
        "ignored events are acknowledged"
    );
}
