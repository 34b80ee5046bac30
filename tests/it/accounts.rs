//! Hub and spoke: one queue in the hub account (the emulator's default, 123456789012) receives
//! the events of member accounts; the daemon serves each in its own account through the member's
//! role, and refuses accounts it is not configured for.
//!
//! moto counts credentials from AssumeRole into `arn:aws:iam::<account>:role/<name>` as that
//! account's, so a test enters a member account the way an administrator would (assuming an
//! admin role there) and builds its worlds with ordinary API calls.

use aws_config::SdkConfig;
use nodemedic::aws::AwsResultExt;
use nodemedic::lab::{self, LabClients, REGION};
use serde_json::{Value, json};

use crate::support::{World, actions, pairs, stderr};

const HUB: &str = "123456789012";
const MEMBER: &str = "111111111111";
const STRANGER: &str = "222222222222";
const ROLE: &str = "nodemedic-member";
const EXTERNAL_ID: &str = "hub-7f3a-nodemedic";

/// The settings of a hub serving `MEMBER` through `ROLE`.
fn hub_settings() -> [(&'static str, &'static str); 3] {
    [
        ("NODEMEDIC_ACCOUNTS__ROLE_NAME", ROLE),
        ("NODEMEDIC_ACCOUNTS__MEMBERS", MEMBER),
        ("NODEMEDIC_ACCOUNTS__EXTERNAL_ID", EXTERNAL_ID),
    ]
}

/// Clients inside `account`, as its administrator (AWS Organizations' default admin role).
async fn clients_in(world: &World, account: &str) -> LabClients {
    let assumed = world
        .clients
        .sts
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
        ))
        .role_session_name("administrator")
        .send()
        .await
        .op("sts:AssumeRole")
        .expect("assume the admin role");
    let credentials = assumed.credentials().expect("credentials");
    let config: SdkConfig = world
        .emulator
        .sdk_config()
        .to_builder()
        .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
            aws_sdk_sts::config::Credentials::new(
                credentials.access_key_id(),
                credentials.secret_access_key(),
                Some(credentials.session_token().to_string()),
                None,
                "member-admin",
            ),
        ))
        .build();
    let clients = LabClients::new(&config);
    assert_eq!(
        clients.account().await.expect("identity"),
        account,
        "the emulator counts assumed credentials as the role's account"
    );
    clients
}

/// Creates nodemedic's role in a member account from what `nodemedic iam-policy --member`
/// prints, as the member's administrator would.
async fn create_member_role(world: &World, member: &LabClients) -> Value {
    let output = world.nodemedic(
        &["iam-policy", "--member", "--hub-principal", HUB],
        &[
            ("NODEMEDIC_ACCOUNTS__ROLE_NAME", ROLE),
            ("NODEMEDIC_ACCOUNTS__MEMBERS", MEMBER),
            ("NODEMEDIC_ACCOUNTS__EXTERNAL_ID", EXTERNAL_ID),
            ("NODEMEDIC_MODE", "auto"),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let role: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    member
        .iam
        .create_role()
        .role_name(ROLE)
        .assume_role_policy_document(role["TrustPolicy"].to_string())
        .send()
        .await
        .op("iam:CreateRole")
        .expect("the member role");
    member
        .iam
        .put_role_policy()
        .role_name(ROLE)
        .policy_name("nodemedic")
        .policy_document(role["PermissionsPolicy"].to_string())
        .send()
        .await
        .op("iam:PutRolePolicy")
        .expect("the member role's permissions");
    role
}

/// A launch event of `account`'s group as EventBridge forwards it to the hub: the envelope keeps
/// the account it happened in.
async fn forwarded_launch(
    member: &LabClients,
    account: &str,
    id: &str,
    group: &str,
    subnet: &str,
) -> String {
    let (detail_type, detail) = lab::launch_event(member, group, subnet)
        .await
        .expect("the member's launch event");
    json!({
        "version": "0", "id": id, "detail-type": detail_type, "source": "aws.autoscaling",
        "account": account, "time": "2026-11-21T00:00:00Z", "region": REGION,
        "resources": [format!("arn:aws:autoscaling:{REGION}:{account}:autoScalingGroup:0:autoScalingGroupName/{group}")],
        "detail": detail,
    })
    .to_string()
}

async fn routes_in(clients: &LabClients, table: &str) -> Vec<(String, String, String)> {
    clients
        .ec2
        .describe_route_tables()
        .route_table_ids(table)
        .send()
        .await
        .op("ec2:DescribeRouteTables")
        .expect("route table")
        .route_tables()
        .iter()
        .flat_map(|t| nodemedic::aws::collect::route_table_facts(t).routes)
        .map(|r| (r.destination, r.target, r.state))
        .collect()
}

/// Every route of every route table an account has.
async fn all_routes(clients: &LabClients) -> Vec<Value> {
    let tables = clients
        .ec2
        .describe_route_tables()
        .send()
        .await
        .op("ec2:DescribeRouteTables")
        .expect("route tables");
    let mut all: Vec<Value> = tables
        .route_tables()
        .iter()
        .map(|t| {
            let facts = nodemedic::aws::collect::route_table_facts(t);
            json!({"id": facts.id, "routes": facts.routes})
        })
        .collect();
    all.sort_by_key(|t| t["id"].as_str().unwrap_or_default().to_string());
    all
}

async fn nodegroup_updates_in(clients: &LabClients, nodegroup: &str) -> usize {
    clients
        .eks
        .list_updates()
        .name(lab::CLUSTER)
        .nodegroup_name(nodegroup)
        .send()
        .await
        .op("eks:ListUpdates")
        .expect("updates")
        .update_ids()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_accounts_broken_nodegroup_is_fixed_in_the_member_account() {
    let world = World::new(3).await;
    let member = clients_in(&world, MEMBER).await;
    let role = create_member_role(&world, &member).await;
    assert_eq!(
        role["TrustPolicy"]["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        EXTERNAL_ID
    );
    let network = lab::workshop(&member).await.expect("the member's workshop");
    assert_eq!(network.account, MEMBER);
    let broken = lab::lab_000(&member, &network).await.expect("lab 000");
    let hub_routes_before = all_routes(&world.clients).await;
    let body = forwarded_launch(
        &member,
        MEMBER,
        "member-launch-1",
        &broken.group,
        &broken.subnet,
    )
    .await;
    world.send_raw(&body).await;

    let output = world.run_once_with("auto", &hub_settings());

    let routes = routes_in(&member, &broken.route_table).await;
    assert!(
        routes.contains(&(
            "0.0.0.0/0".to_string(),
            network.nat_gateway.clone(),
            "active".to_string()
        )),
        "the member's subnet is routed to the member's NAT gateway: {routes:?}\n{}",
        stderr(&output)
    );
    assert_eq!(
        nodegroup_updates_in(&member, &broken.nodegroup).await,
        2,
        "the member's nodegroup was cycled (0, then back to 1)"
    );
    assert_eq!(
        all_routes(&world.clients).await,
        hub_routes_before,
        "nothing changed in the hub account"
    );
    let hub_sees = world
        .clients
        .ec2
        .describe_route_tables()
        .route_table_ids(&broken.route_table)
        .send()
        .await;
    assert!(
        hub_sees.is_err(),
        "the member's route table is not the hub's"
    );

    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let incident = &incidents[0];
    assert_eq!(incident["account"], MEMBER);
    assert_eq!(incident["cause"], "subnet_no_egress_route");
    assert_eq!(incident["outcome"], "fixed");
    assert_eq!(
        actions(incident),
        pairs(&[("add_nat_route", "applied"), ("cycle_nodegroup", "applied")])
    );
    assert_eq!(world.messages_waiting(&world.queue.url).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_of_an_unconfigured_account_is_refused_recorded_and_deleted() {
    let world = World::new(3).await;
    // A world in the stranger's account that a daemon serving it would fix.
    let stranger = clients_in(&world, STRANGER).await;
    let network = lab::workshop(&stranger).await.expect("workshop");
    let broken = lab::lab_000(&stranger, &network).await.expect("lab 000");
    let stranger_before = all_routes(&stranger).await;
    let hub_before = all_routes(&world.clients).await;
    for id in ["stranger-launch-1", "stranger-launch-2"] {
        let body = forwarded_launch(&stranger, STRANGER, id, &broken.group, &broken.subnet).await;
        world.send_raw(&body).await;
    }

    let output = world.run_once_with("auto", &hub_settings());

    assert!(world.incidents().is_empty(), "no incident for a stranger");
    let refused: Vec<_> = world
        .loose_records()
        .into_iter()
        .filter(|r| r.kind == "account_refused")
        .collect();
    assert_eq!(refused.len(), 2, "each event is recorded");
    let mut ids: Vec<&str> = refused
        .iter()
        .map(|r| r.event_id.as_deref().unwrap_or_default())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["stranger-launch-1", "stranger-launch-2"]);
    for record in &refused {
        assert_eq!(record.body["account"], STRANGER);
        assert_eq!(record.body["region"], REGION);
        assert!(
            record.body["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("accounts.members"),
            "{}",
            record.body
        );
    }
    assert_eq!(
        world.messages_waiting(&world.queue.url).await,
        0,
        "refused events are not ours: their messages are deleted"
    );
    assert_eq!(all_routes(&stranger).await, stranger_before);
    assert_eq!(all_routes(&world.clients).await, hub_before);
    assert_eq!(nodegroup_updates_in(&stranger, &broken.nodegroup).await, 0);
    let log = stderr(&output);
    assert_eq!(
        log.matches("events of this account are refused").count(),
        1,
        "one warning per account, not per event:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_account_daemon_serves_only_its_own_account() {
    let world = World::new(3).await;
    let member = clients_in(&world, MEMBER).await;
    let network = lab::workshop(&member).await.expect("workshop");
    let broken = lab::lab_000(&member, &network).await.expect("lab 000");
    let body = forwarded_launch(
        &member,
        MEMBER,
        "member-launch-1",
        &broken.group,
        &broken.subnet,
    )
    .await;
    world.send_raw(&body).await;

    world.run_once("auto");

    let refused: Vec<_> = world
        .loose_records()
        .into_iter()
        .filter(|r| r.kind == "account_refused")
        .collect();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].body["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("accounts.role_name is empty"),
        "{}",
        refused[0].body
    );
    assert_eq!(routes_in(&member, &broken.route_table).await.len(), 1);
    assert_eq!(world.messages_waiting(&world.queue.url).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_health_watcher_watches_member_accounts_too() {
    let world = World::new(3).await;
    let member = clients_in(&world, MEMBER).await;
    let network = lab::workshop(&member).await.expect("workshop");
    let broken = lab::lab_002(&member, &network).await.expect("lab 002");
    let mut settings = hub_settings().to_vec();
    settings.push(("NODEMEDIC_WATCH__CLUSTERS", lab::CLUSTER));

    world.run_once_with("dry-run", &settings);

    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0]["account"], MEMBER);
    assert_eq!(incidents[0]["nodegroup"], broken.nodegroup);
    assert_eq!(incidents[0]["cause"], "kms_key_policy_blocks_autoscaling");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_whose_role_cannot_be_assumed_keeps_its_events_for_another_try() {
    let world = World::new(3).await;
    let member = clients_in(&world, MEMBER).await;
    let network = lab::workshop(&member).await.expect("workshop");
    let broken = lab::lab_000(&member, &network).await.expect("lab 000");
    let body = forwarded_launch(
        &member,
        MEMBER,
        "member-launch-1",
        &broken.group,
        &broken.subnet,
    )
    .await;
    world.send_raw(&body).await;
    // As STS answers a hub whose role the member's trust policy does not name.
    world
        .emulator
        .deny(&["sts:AssumeRole"])
        .await
        .expect("deny");

    let output = world.run_once_with("auto", &hub_settings());

    world.emulator.deny(&[]).await.expect("allow again");
    let failed: Vec<_> = world
        .loose_records()
        .into_iter()
        .filter(|r| r.kind == "collection_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{}", stderr(&output));
    let error = failed[0].body["error"].as_str().unwrap_or_default();
    assert!(error.contains("AssumeRole"), "{error}");
    assert_eq!(
        world.messages_waiting(&world.queue.url).await,
        1,
        "kept for another try, then the dead-letter queue"
    );
    assert_eq!(routes_in(&member, &broken.route_table).await.len(), 1);
    assert!(world.incidents().is_empty());
}
