use serde_json::{Value, json};

use super::fake::*;
use super::*;
use crate::core::evidence::fixtures::ROOT_ONLY_POLICY;
use crate::core::plan::FixKind;
#[tokio::test]
async fn a_route_is_created_and_read_back() {
    let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
    let result = apply(&world, &route_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(result.before.as_array().unwrap().len(), 1);
    assert_eq!(result.after.as_array().unwrap().len(), 2);
    assert_eq!(world.routes.lock().unwrap()["rtb-new"][1].target, "nat-a");
}

#[tokio::test]
async fn an_identical_route_counts_as_done_and_is_not_created_twice() {
    let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
    apply(&world, &route_step(), WAIT).await;
    let again = apply(&world, &route_step(), WAIT).await;
    assert_eq!(again.status, StepStatus::Applied);
    assert!(again.detail.contains("already routes"));
    assert_eq!(world.routes.lock().unwrap()["rtb-new"].len(), 2);
}

#[tokio::test]
async fn an_existing_default_route_elsewhere_is_never_replaced() {
    let other = RouteFacts {
        destination: "0.0.0.0/0".into(),
        target: "igw-1".into(),
        state: "active".into(),
    };
    let world = FakeWorld::default().with_table("rtb-new", vec![local(), other.clone()]);
    let result = apply(&world, &route_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("never replaced"));
    assert_eq!(
        world.routes.lock().unwrap()["rtb-new"],
        vec![local(), other]
    );
}

#[tokio::test]
async fn a_refused_create_route_is_a_failure_with_the_error() {
    let world = FakeWorld::default()
        .with_table("rtb-new", vec![local()])
        .failing("create_route", "UnauthorizedOperation");
    let result = apply(&world, &route_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("UnauthorizedOperation"));
}

#[tokio::test]
async fn the_key_policy_is_written_and_the_old_one_kept_as_before() {
    let world = FakeWorld::default().with_policy("key-1", ROOT_ONLY_POLICY);
    let result = apply(&world, &policy_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(result.before["policy"], ROOT_ONLY_POLICY);
    assert!(crate::core::evidence::fixtures::grants_role(
        result.after["policy"].as_str().unwrap()
    ));
    assert!(result.detail.contains("AllowAutoScalingServiceRole"));
}

#[tokio::test]
async fn a_policy_already_patched_is_not_written_again() {
    let world = FakeWorld::default()
        .with_policy("key-1", &patched_policy())
        .failing("put_key_policy", "ShouldNotBeCalled");
    let result = apply(&world, &policy_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
}

#[tokio::test]
async fn a_policy_edited_since_the_plan_is_not_overwritten() {
    let edited = ROOT_ONLY_POLICY.replace("kms:*", "kms:Describe*");
    let world = FakeWorld::default().with_policy("key-1", &edited);
    let result = apply(&world, &policy_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("changed since the plan"));
    assert_eq!(world.policies.lock().unwrap()["key-1"], edited);
}

#[tokio::test]
async fn whitespace_differences_do_not_make_a_policy_stale() {
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(ROOT_ONLY_POLICY).unwrap())
            .unwrap();
    let world = FakeWorld::default().with_policy("key-1", &pretty);
    assert_eq!(
        apply(&world, &policy_step(), WAIT).await.status,
        StepStatus::Applied
    );
}

#[tokio::test]
async fn a_cycle_goes_to_zero_and_restores_min_and_desired() {
    let world = FakeWorld::default().with_nodegroup("DEGRADED", 2, 4, 3);
    let result = apply(&world, &cycle_step(2, 3), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(
        *world.updates.lock().unwrap(),
        vec![
            ScalingUpdate {
                min_size: Some(0),
                desired_size: 0
            },
            ScalingUpdate {
                min_size: Some(2),
                desired_size: 3
            },
        ]
    );
    assert_eq!(result.after["scaling"]["desired"], 3);
}

#[tokio::test]
async fn a_cycle_waits_for_an_update_already_running() {
    let world = FakeWorld::default().with_nodegroup("ACTIVE", 0, 1, 1);
    *world.updating_reads.lock().unwrap() = 3;
    let result = apply(&world, &cycle_step(0, 1), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(world.updates.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_half_done_cycle_only_restores() {
    let world = FakeWorld::default().with_nodegroup("ACTIVE", 0, 1, 0);
    let result = apply(&world, &cycle_step(0, 1), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(
        *world.updates.lock().unwrap(),
        vec![ScalingUpdate {
            min_size: None,
            desired_size: 1
        }]
    );
}

#[tokio::test]
async fn a_nodegroup_that_never_settles_fails_the_cycle_without_touching_it() {
    let world = FakeWorld::default().with_nodegroup("ACTIVE", 0, 1, 1);
    *world.updating_reads.lock().unwrap() = u32::MAX;
    let result = apply(&world, &cycle_step(0, 1), WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("not ready"));
    assert!(world.updates.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_scale_down_fails_and_changes_nothing() {
    let world = FakeWorld::default()
        .with_nodegroup("ACTIVE", 0, 1, 1)
        .failing("update_scaling", "InvalidParameterException");
    let result = apply(&world, &cycle_step(0, 1), WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("scale down failed"));
    assert_eq!(
        world
            .nodegroup
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .scaling
            .desired,
        1
    );
}

#[tokio::test]
async fn a_blackholed_default_route_is_replaced_only_if_it_still_points_where_the_plan_saw() {
    let blackhole = RouteFacts {
        destination: "0.0.0.0/0".into(),
        target: "nat-gone".into(),
        state: "blackhole".into(),
    };
    let step = Step {
        fix: FixKind::ReplaceDefaultRoute,
        action: Action::ReplaceRoute {
            route_table_id: "rtb-1".into(),
            destination_cidr_block: "0.0.0.0/0".into(),
            nat_gateway_id: "nat-new".into(),
            previous_target: "nat-gone".into(),
        },
        reason: String::new(),
        needs_review: None,
    };
    let world = FakeWorld::default().with_table("rtb-1", vec![local(), blackhole.clone()]);
    let result = apply(&world, &step, WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(world.routes.lock().unwrap()["rtb-1"][1].target, "nat-new");
    assert_eq!(
        apply(&world, &step, WAIT).await.status,
        StepStatus::Applied,
        "idempotent"
    );

    let mut moved = blackhole;
    moved.target = "igw-someone-else".into();
    moved.state = "active".into();
    let world = FakeWorld::default().with_table("rtb-1", vec![local(), moved]);
    let result = apply(&world, &step, WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("changed since the plan"));
    assert_eq!(
        world.routes.lock().unwrap()["rtb-1"][1].target,
        "igw-someone-else"
    );
}

#[tokio::test]
async fn vpc_dns_is_turned_on_and_read_back() {
    let step = Step {
        fix: FixKind::EnableVpcDns,
        action: Action::ModifyVpcAttribute {
            vpc_id: "vpc-1".into(),
            attribute: "enableDnsHostnames".into(),
        },
        reason: String::new(),
        needs_review: None,
    };
    let world = FakeWorld::default();
    let result = apply(&world, &step, WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(
        (result.before.clone(), result.after.clone()),
        (json!(false), json!(true))
    );
    assert!(
        apply(&world, &step, WAIT)
            .await
            .detail
            .contains("already true")
    );
    let refused = FakeWorld::default().failing("enable_vpc_attribute", "UnauthorizedOperation");
    assert_eq!(
        apply(&refused, &step, WAIT).await.status,
        StepStatus::Failed
    );
}

#[tokio::test]
async fn a_missing_policy_is_attached_once_and_an_access_entry_created_once() {
    let attach = Step {
        fix: FixKind::AttachNodeRolePolicy,
        action: Action::AttachRolePolicy {
            role_name: "eks-node".into(),
            policy_arn: "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy".into(),
        },
        reason: String::new(),
        needs_review: None,
    };
    let world = FakeWorld::default();
    assert_eq!(
        apply(&world, &attach, WAIT).await.status,
        StepStatus::Applied
    );
    assert_eq!(
        apply(&world, &attach, WAIT).await.status,
        StepStatus::Applied
    );
    assert_eq!(world.role_policies.lock().unwrap()["eks-node"].len(), 1);

    let entry = Step {
        fix: FixKind::CreateAccessEntry,
        action: Action::CreateAccessEntry {
            cluster: "c".into(),
            principal_arn: "arn:aws:iam::1:role/eks-node".into(),
            entry_type: "EC2_LINUX".into(),
        },
        reason: String::new(),
        needs_review: None,
    };
    let result = apply(&world, &entry, WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(result.after["type"], "EC2_LINUX");
    assert!(
        apply(&world, &entry, WAIT)
            .await
            .detail
            .contains("already has")
    );
}
