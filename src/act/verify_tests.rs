use super::fake::*;
use super::verify::{Nodegroup, rollback, verify};
use super::*;
use crate::core::evidence::fixtures::ROOT_ONLY_POLICY;
use crate::core::plan::{Action, FixKind, Step};

const NODEGROUP: Nodegroup<'static> = Nodegroup {
    cluster: "eks-workshop",
    name: "ng",
    group: Some("eks-ng-1"),
    instances_before: &[],
};

#[tokio::test]
async fn an_added_route_that_stays_active_passes() {
    let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
    let step = route_step();
    apply(&world, &step, WAIT).await;
    let verdict = verify(&world, &[&step], &NODEGROUP, WAIT).await;
    assert!(verdict.passed, "{verdict:?}");
}

#[tokio::test]
async fn a_route_removed_behind_our_back_fails_verification() {
    let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
    let step = route_step();
    apply(&world, &step, WAIT).await;
    world.delete_route("rtb-new", "0.0.0.0/0").await.unwrap();
    let verdict = verify(&world, &[&step], &NODEGROUP, WAIT).await;
    assert!(!verdict.passed);
    assert_eq!(verdict.checks[0].detail, "no such route");
}

#[tokio::test]
async fn a_cycled_nodegroup_passes_only_when_active_healthy_and_in_service() {
    let world = FakeWorld::default().with_nodegroup("ACTIVE", 0, 1, 1);
    let step = cycle_step(0, 1);
    assert!(!verify(&world, &[&step], &NODEGROUP, WAIT).await.passed);
    *world.in_service.lock().unwrap() = 1;
    world
        .nodegroup
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .issues
        .push("NodeCreationFailure".into());
    let verdict = verify(&world, &[&step], &NODEGROUP, WAIT).await;
    assert!(!verdict.passed);
    assert!(verdict.checks[0].detail.contains("NodeCreationFailure"));
    world
        .nodegroup
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .issues
        .clear();
    let verdict = verify(&world, &[&step], &NODEGROUP, WAIT).await;
    assert!(verdict.passed);
    assert!(
        verdict.checks[0]
            .what
            .contains("the cluster's API was not read"),
        "the record says which check was used: {verdict:?}"
    );
}

#[tokio::test]
async fn with_the_clusters_api_a_cycle_holds_only_when_a_new_instances_node_is_ready() {
    // In service and ACTIVE, which the EKS-only check would accept.
    let world = FakeWorld::default().with_nodegroup("ACTIVE", 0, 1, 1);
    *world.in_service.lock().unwrap() = 1;
    let step = cycle_step(0, 1);
    let before = ["i-old".to_string()];
    let nodegroup = Nodegroup {
        instances_before: &before,
        ..NODEGROUP
    };
    *world.nodes.lock().unwrap() = Some(vec![("i-old".into(), true), ("i-new".into(), false)]);
    let verdict = verify(&world, &[&step], &nodegroup, WAIT).await;
    assert!(
        !verdict.passed,
        "the old node proves nothing, the new one is not Ready"
    );
    assert!(
        verdict.checks[0]
            .what
            .contains("read from the cluster's API")
    );
    assert!(
        verdict.checks[0]
            .detail
            .contains("registered, not Ready: [i-new]")
    );
    *world.nodes.lock().unwrap() = Some(vec![("i-old".into(), true), ("i-new".into(), true)]);
    assert!(verify(&world, &[&step], &nodegroup, WAIT).await.passed);
}

#[tokio::test]
async fn rolling_back_an_added_route_deletes_exactly_that_route() {
    let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
    let step = route_step();
    let applied = apply(&world, &step, WAIT).await;
    let undone = rollback(&world, &step, &applied).await;
    assert_eq!(undone.status, StepStatus::RolledBack, "{}", undone.detail);
    assert_eq!(world.routes.lock().unwrap()["rtb-new"], vec![local()]);
}

#[tokio::test]
async fn a_route_that_existed_before_the_fix_is_left_alone() {
    let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
    let step = route_step();
    apply(&world, &step, WAIT).await;
    // A second apply finds the route already there: its `before` holds the route.
    let again = apply(&world, &step, WAIT).await;
    let kept = rollback(&world, &step, &again).await;
    assert_eq!(kept.status, StepStatus::Applied);
    assert_eq!(world.routes.lock().unwrap()["rtb-new"].len(), 2);
}

#[tokio::test]
async fn rolling_back_a_key_policy_restores_the_exact_previous_text() {
    let world = FakeWorld::default().with_policy("key-1", ROOT_ONLY_POLICY);
    let step = policy_step();
    let applied = apply(&world, &step, WAIT).await;
    let undone = rollback(&world, &step, &applied).await;
    assert_eq!(undone.status, StepStatus::RolledBack, "{}", undone.detail);
    assert_eq!(world.policies.lock().unwrap()["key-1"], ROOT_ONLY_POLICY);
}

#[tokio::test]
async fn a_key_policy_edited_after_the_fix_is_not_rolled_back_over() {
    let world = FakeWorld::default().with_policy("key-1", ROOT_ONLY_POLICY);
    let step = policy_step();
    let applied = apply(&world, &step, WAIT).await;
    let someone_else = patched_policy().replace("kms:DescribeKey", "kms:GetPublicKey");
    world
        .policies
        .lock()
        .unwrap()
        .insert("key-1".into(), someone_else.clone());
    let kept = rollback(&world, &step, &applied).await;
    assert_eq!(kept.status, StepStatus::Applied);
    assert!(kept.detail.contains("edited since"));
    assert_eq!(world.policies.lock().unwrap()["key-1"], someone_else);
}

#[tokio::test]
async fn a_failed_rollback_says_so() {
    let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
    let step = route_step();
    let applied = apply(&world, &step, WAIT).await;
    let world = world.failing("delete_route", "UnauthorizedOperation");
    let failed = rollback(&world, &step, &applied).await;
    assert_eq!(failed.status, StepStatus::Failed);
    assert!(failed.detail.contains("UnauthorizedOperation"));
}

#[tokio::test]
async fn attached_policies_and_access_entries_are_undone_but_dns_stays_on() {
    let world = FakeWorld::default();
    let attach = Step {
        fix: FixKind::AttachNodeRolePolicy,
        action: Action::AttachRolePolicy {
            role_name: "eks-node".into(),
            policy_arn: "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy".into(),
        },
        reason: String::new(),
        needs_review: None,
    };
    let applied = apply(&world, &attach, WAIT).await;
    assert_eq!(
        rollback(&world, &attach, &applied).await.status,
        StepStatus::RolledBack
    );
    assert!(world.role_policies.lock().unwrap()["eks-node"].is_empty());

    let dns = Step {
        fix: FixKind::EnableVpcDns,
        action: Action::ModifyVpcAttribute {
            vpc_id: "vpc-1".into(),
            attribute: "enableDnsSupport".into(),
        },
        reason: String::new(),
        needs_review: None,
    };
    let applied = apply(&world, &dns, WAIT).await;
    assert_eq!(
        rollback(&world, &dns, &applied).await.status,
        StepStatus::Applied
    );
    assert!(
        world
            .vpc_attribute("vpc-1", "enableDnsSupport")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_route_someone_repointed_after_the_fix_is_not_rolled_back() {
    let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
    let step = route_step();
    let applied = apply(&world, &step, WAIT).await;
    world
        .replace_route("rtb-new", "0.0.0.0/0", "nat-someone-else")
        .await
        .unwrap();
    let kept = rollback(&world, &step, &applied).await;
    assert_eq!(kept.status, StepStatus::Applied, "{}", kept.detail);
    assert!(kept.detail.contains("someone changed"));
    assert_eq!(
        world.routes.lock().unwrap()["rtb-new"][1].target,
        "nat-someone-else"
    );
}
