//! The instance profile nodes launch with, as EKS makes it (the emulator gives each managed
//! nodegroup an `eks-<uuid>` profile holding the node role, named by the launch template its Auto
//! Scaling group launches from), broken the ways an account owner breaks it: the role taken
//! out, or the profile deleted.

use nodemedic::lab::{self, CLUSTER};

use crate::support::World;

/// The instance profile the nodegroup's Auto Scaling group launches with, read the way an
/// operator would: group → launch template → IamInstanceProfile.
async fn profile_of(world: &World, nodegroup: &str) -> String {
    let c = &world.clients;
    let described = c
        .eks
        .describe_nodegroup()
        .cluster_name(CLUSTER)
        .nodegroup_name(nodegroup)
        .send()
        .await
        .expect("nodegroup");
    let group = described
        .nodegroup()
        .and_then(|n| n.resources())
        .and_then(|r| r.auto_scaling_groups().first())
        .and_then(|g| g.name())
        .expect("its group")
        .to_string();
    let groups = c
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&group)
        .send()
        .await
        .expect("group");
    let template = groups.auto_scaling_groups()[0]
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .expect("the group's template")
        .to_string();
    let versions = c
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&template)
        .versions("$Default")
        .send()
        .await
        .expect("template");
    let arn = versions.launch_template_versions()[0]
        .launch_template_data()
        .and_then(|d| d.iam_instance_profile())
        .and_then(|p| p.arn())
        .expect("EKS's template names a profile")
        .to_string();
    arn.rsplit('/').next().unwrap_or(&arn).to_string()
}

fn role_name(world: &World) -> String {
    let arn = &world.network.node_role_arn;
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

/// A nodegroup of the workshop's node role whose instance profile an owner then emptied (the
/// role taken out) and, when `delete`, deleted. Returns its Auto Scaling group and its profile.
async fn nodegroup_with_emptied_profile(
    world: &World,
    name: &str,
    delete: bool,
) -> (String, String) {
    let c = &world.clients;
    let group = lab::nodegroup_in(
        c,
        CLUSTER,
        &world.network.node_role_arn,
        name,
        &world.network.private_subnet,
        (0, 1, 0),
        None,
    )
    .await
    .expect("nodegroup");
    let profile = profile_of(world, name).await;
    c.iam
        .remove_role_from_instance_profile()
        .instance_profile_name(&profile)
        .role_name(role_name(world))
        .send()
        .await
        .expect("role out of the profile");
    if delete {
        c.iam
            .delete_instance_profile()
            .instance_profile_name(&profile)
            .send()
            .await
            .expect("profile deleted");
    }
    (group, profile)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_without_the_node_role_or_deleted_is_instance_profile_invalid() {
    let world = World::new(3).await;
    nodegroup_with_emptied_profile(&world, "emptied", false).await;
    nodegroup_with_emptied_profile(&world, "deleted", true).await;
    assert_eq!(
        world.blocking_causes("emptied"),
        vec!["instance_profile_invalid"]
    );
    let deleted = world.check("deleted", "iam.instance_profile");
    assert_eq!(deleted["result"], "fail", "{deleted:#}");
    assert_eq!(
        world.blocking_causes("deleted"),
        vec!["instance_profile_invalid"]
    );
    // Near miss: the workshop's own nodegroup launches with a profile that holds its role.
    let healthy = world.check("default", "iam.instance_profile");
    assert_eq!(healthy["result"], "pass", "{healthy:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_that_fails_for_a_deleted_profile_is_diagnosed_by_the_daemon() {
    let world = World::new(3).await;
    let c = &world.clients;
    let subnet = world.network.private_subnet.clone();
    let (group, _) = nodegroup_with_emptied_profile(&world, "profileless", true).await;
    // The emulator launches as EC2 would: the profile is gone.
    super::scale_out_to_one(&world, "profileless").await;
    let activities = c
        .autoscaling
        .describe_scaling_activities()
        .auto_scaling_group_name(&group)
        .send()
        .await
        .expect("activities");
    assert!(
        activities.activities().iter().any(|a| a
            .status_message()
            .unwrap_or_default()
            .contains("Invalid IAM Instance Profile")),
        "the launch failed for the profile: {activities:#?}"
    );
    lab::publish_launch_event(c, &world.network, &group, &subnet)
        .await
        .expect("event");
    world.run_once("dry-run");
    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(
        incidents[0]["cause"], "instance_profile_invalid",
        "the failed launch read the profile: {incidents:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emptied_profile_gets_the_node_role_back_once_approved() {
    let world = World::new(3).await;
    let c = &world.clients;
    let (_, profile) = nodegroup_with_emptied_profile(&world, "emptied", false).await;
    let roles = || async {
        c.iam
            .get_instance_profile()
            .instance_profile_name(&profile)
            .send()
            .await
            .expect("profile")
            .instance_profile()
            .map(|p| {
                p.roles()
                    .iter()
                    .map(|r| r.role_name().to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    world
        .send_raw(&crate::scenarios::approved_fixes::preflight(
            &world, "emptied",
        ))
        .await;
    world.run_once("auto");
    let incidents = world.incidents();
    assert_eq!(
        incidents[0]["cause"], "instance_profile_invalid",
        "{incidents:#?}"
    );
    assert_eq!(
        crate::support::actions(&incidents[0]),
        crate::support::pairs(&[("add_role_to_instance_profile", "planned")])
    );
    assert!(roles().await.is_empty(), "nothing before approval");
    let plan = world.plans(false)[0]["plan_id"]
        .as_str()
        .expect("plan id")
        .to_string();
    world.operate(&["approve", &plan, "--by", "alice"]);
    world.run_once("auto");
    assert_eq!(roles().await, [role_name(&world)]);
}
