//! The cluster's and the node's own view, through the real binary. The cluster's API is a
//! stand-in (`nodemedic::lab::apiserver`: no kube-apiserver installs here) that checks the EKS
//! token as the authenticator would; the emulator's DescribeCluster gives its endpoint and CA,
//! so nodemedic finds it as it would in AWS. The console output comes from the emulator's
//! GetConsoleOutput, set per instance.

use std::time::{Duration, Instant};

use aws_sdk_eks::types::{AuthenticationMode, Taint, TaintEffect};
use nodemedic::lab::apiserver::{StandInApiServer, objects};
use nodemedic::lab::{self, CLUSTER};
use serde_json::{Value, json};

use crate::support::World;

/// One instance of a nodegroup, as EC2 describes it.
pub(crate) struct Instance {
    pub(crate) id: String,
    zone: String,
    dns: String,
}

/// The world's workshop cluster served by a stand-in API server that knows the `default`
/// nodegroup's node: registered, Ready, mapped in aws-auth as EKS maps it, aws-node tolerating
/// every taint (the EKS add-on's default).
pub(crate) async fn served(world: &World, cluster: &str) -> StandInApiServer {
    let server = StandInApiServer::start(cluster, lab::REGION)
        .await
        .expect("stand-in");
    world
        .emulator
        .point_cluster_at(cluster, &server.endpoint, &server.certificate_authority)
        .await
        .expect("endpoint");
    {
        let mut state = server.state();
        state.aws_auth = Some(objects::aws_auth(&objects::node_mapping(
            &world.network.node_role_arn,
        )));
        state.aws_node = Some(objects::aws_node(objects::tolerate_everything()));
    }
    server
}

pub(crate) async fn instances(world: &World, nodegroup: &str) -> Vec<Instance> {
    let described = world
        .clients
        .ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:eks:nodegroup-name")
                .values(nodegroup)
                .build(),
        )
        .send()
        .await
        .expect("instances");
    described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            zone: i
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or_default()
                .to_string(),
            dns: i.private_dns_name().unwrap_or_default().to_string(),
        })
        .collect()
}

pub(crate) fn register(
    server: &StandInApiServer,
    instance: &Instance,
    nodegroup: &str,
    ready: objects::Ready,
) {
    server.state().nodes.push(objects::node(
        &instance.dns,
        &instance.zone,
        &instance.id,
        nodegroup,
        ready,
    ));
}

fn findings(reports: &Value) -> Vec<Value> {
    reports[0]["diagnosis"]["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn check<'a>(reports: &'a Value, id: &str) -> &'a Value {
    reports[0]["diagnosis"]["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == id))
        .unwrap_or_else(|| panic!("no check {id}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ready_node_mapped_in_aws_auth_passes_and_the_reads_are_authenticated_gets() {
    let world = World::new(3).await;
    let server = served(&world, CLUSTER).await;
    let node = &instances(&world, "default").await[0];
    register(&server, node, "default", objects::Ready::True);
    world
        .emulator
        .launched_ago(&node.id, 30)
        .await
        .expect("backdated");
    let (code, reports) = world.diagnose(CLUSTER, Some("default"));
    assert_eq!(code, 0, "{:#}", reports[0]["diagnosis"]["findings"]);
    for id in [
        "k8s.aws_auth",
        "k8s.node_registered",
        "k8s.node_ready",
        "k8s.node_csr",
        "k8s.aws_node_tolerations",
    ] {
        assert_eq!(
            check(&reports, id)["result"],
            "pass",
            "{:#}",
            check(&reports, id)
        );
    }
    let requests = server.state().requests.clone();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|(method, _, accepted)| method == "GET" && *accepted),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_role_missing_from_aws_auth_is_found_with_the_unregistered_instance_and_its_boot_log()
 {
    let world = World::new(3).await;
    lab::cluster_named(
        &world.clients,
        &world.network,
        "config-map",
        Some(AuthenticationMode::ConfigMap),
    )
    .await
    .expect("cluster");
    lab::nodegroup_in(
        &world.clients,
        "config-map",
        &world.network.node_role_arn,
        "nodes",
        &world.network.private_subnet,
        (1, 2, 1),
        None,
    )
    .await
    .expect("nodegroup");
    let server = served(&world, "config-map").await;
    // An owner rewrote aws-auth and left the node role out.
    server.state().aws_auth = Some(objects::aws_auth(
        "- rolearn: arn:aws:iam::123456789012:role/admins\n  username: admin\n  groups:\n  - system:masters\n",
    ));
    let node = &instances(&world, "nodes").await[0];
    world
        .emulator
        .launched_ago(&node.id, 12)
        .await
        .expect("backdated");
    world
        .emulator
        .set_console_output(&node.id, b"[  41.2] nodeadm[1022]: E1130 kubelet_node_status: Unable to register node with API server: Unauthorized\n")
        .await
        .expect("console");
    let (code, reports) = world.diagnose("config-map", Some("nodes"));
    assert_eq!(code, 3);
    let found = findings(&reports);
    let primary = &found[0];
    assert_eq!(primary["cause"], "aws_auth_missing_node_role", "{found:#?}");
    assert!(
        primary["remedy"]
            .as_str()
            .unwrap()
            .contains("eksctl create iamidentitymapping")
    );
    assert!(
        primary["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["resource"] == format!("console of {}", node.id)),
        "the Unauthorized line corroborates: {primary:#}"
    );
    let causes: Vec<&str> = found.iter().filter_map(|f| f["cause"].as_str()).collect();
    assert!(causes.contains(&"node_not_registered"), "{causes:?}");
    assert!(causes.contains(&"node_boot_error"), "{causes:?}");
    assert_eq!(check(&reports, "instance.boot_log")["result"], "warn");

    // The near miss: the role mapped by its pathless ARN with both groups.
    server.state().aws_auth = Some(objects::aws_auth(&objects::node_mapping(
        &world.network.node_role_arn,
    )));
    let (_, reports) = world.diagnose("config-map", Some("nodes"));
    assert_eq!(check(&reports, "k8s.aws_auth")["result"], "pass");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_api_and_config_map_the_missing_mapping_plans_an_access_entry_and_an_entry_admits_the_role()
 {
    let world = World::new(3).await;
    let server = served(&world, CLUSTER).await;
    server.state().aws_auth = Some(objects::aws_auth("[]\n"));
    let (_, reports) = world.diagnose(CLUSTER, Some("default"));
    let primary = &findings(&reports)[0];
    assert_eq!(
        primary["cause"], "aws_auth_missing_node_role",
        "{primary:#}"
    );
    assert_eq!(primary["subject"]["kind"], "access_entry");
    assert!(
        primary["remedy"]
            .as_str()
            .unwrap()
            .contains("create-access-entry")
    );

    world
        .clients
        .eks
        .create_access_entry()
        .cluster_name(CLUSTER)
        .principal_arn(&world.network.node_role_arn)
        .r#type("EC2_LINUX")
        .send()
        .await
        .expect("access entry");
    let (code, reports) = world.diagnose(CLUSTER, Some("default"));
    assert_eq!(code, 0, "{:#}", reports[0]["diagnosis"]["findings"]);
    assert_eq!(check(&reports, "k8s.aws_auth")["result"], "pass");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_mapped_with_its_path_is_never_matched() {
    let world = World::new(3).await;
    let server = served(&world, CLUSTER).await;
    let with_path = world
        .network
        .node_role_arn
        .replace(":role/", ":role/platform/");
    server.state().aws_auth = Some(objects::aws_auth(&objects::node_mapping(&with_path)));
    assert_eq!(
        world.blocking_causes("default"),
        vec!["aws_auth_role_arn_has_path"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_is_not_ready_and_a_denied_csr_are_quoted() {
    let world = World::new(3).await;
    let server = served(&world, CLUSTER).await;
    let node = &instances(&world, "default").await[0];
    register(
        &server,
        node,
        "default",
        objects::Ready::False(
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".into(),
        ),
    );
    server.state().csrs.push(objects::kubelet_csr(
        "csr-8vn2x",
        &node.dns,
        "Denied",
        "KubectlDeny",
        "denied by the security team",
    ));
    let causes = world.blocking_causes("default");
    assert!(causes.contains(&"node_not_ready".to_string()), "{causes:?}");
    assert!(
        causes.contains(&"node_csr_denied".to_string()),
        "{causes:?}"
    );
    let ready = world.check("default", "k8s.node_ready");
    assert!(
        ready["evidence"][0]["observed"]
            .as_str()
            .unwrap()
            .contains("cni plugin not initialized"),
        "{ready:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taint_aws_node_does_not_tolerate_is_found_and_one_it_tolerates_passes() {
    let world = World::new(3).await;
    world
        .clients
        .eks
        .create_nodegroup()
        .cluster_name(CLUSTER)
        .nodegroup_name("gpu")
        .node_role(&world.network.node_role_arn)
        .subnets(&world.network.private_subnet)
        .scaling_config(
            aws_sdk_eks::types::NodegroupScalingConfig::builder()
                .min_size(0)
                .max_size(2)
                .desired_size(1)
                .build(),
        )
        .taints(
            Taint::builder()
                .key("nvidia.com/gpu")
                .value("true")
                .effect(TaintEffect::NoSchedule)
                .build(),
        )
        .send()
        .await
        .expect("tainted nodegroup");
    let server = served(&world, CLUSTER).await;
    // A self-managed aws-node whose tolerations were narrowed to the control-plane add-ons.
    server.state().aws_node = Some(objects::aws_node(
        json!([{"key": "CriticalAddonsOnly", "operator": "Exists"}]),
    ));
    assert!(
        world
            .blocking_causes("gpu")
            .contains(&"aws_node_taint_not_tolerated".to_string())
    );
    server.state().aws_node = Some(objects::aws_node(objects::tolerate_everything()));
    assert_eq!(
        world.check("gpu", "k8s.aws_node_tolerations")["result"],
        "pass"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_that_refuses_or_never_answers_skips_the_cluster_checks_and_keeps_the_aws_side_diagnosis()
 {
    let world = World::new(3).await;
    let lab = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    let server = served(&world, CLUSTER).await;
    server.state().forbid = true;
    let (_, reports) = world.diagnose(CLUSTER, Some(&lab.nodegroup));
    assert_eq!(findings(&reports)[0]["cause"], "subnet_no_egress_route");
    let skipped = check(&reports, "k8s.aws_auth");
    assert_eq!(skipped["result"], "skipped");
    assert_eq!(skipped["skipped"]["reason"], "unreachable");
    assert!(
        skipped["skipped"]["detail"]
            .as_str()
            .unwrap()
            .contains("403"),
        "{skipped:#}"
    );

    server.state().forbid = false;
    server.state().hang = true;
    let started = Instant::now();
    let output = world.nodemedic(
        &[
            "diagnose",
            "--cluster",
            CLUSTER,
            "--nodegroup",
            &lab.nodegroup,
            "--json",
            "--cluster-api-timeout",
            "2",
        ],
        &[],
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let reports: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(findings(&reports)[0]["cause"], "subnet_no_egress_route");
    let skipped = check(&reports, "k8s.node_ready");
    assert!(
        skipped["skipped"]["detail"]
            .as_str()
            .unwrap()
            .contains("did not answer within 2 s"),
        "{skipped:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_console_output_yields_a_bounded_escaped_finding() {
    let world = World::new(3).await;
    let server = served(&world, CLUSTER).await;
    server.state().aws_auth = Some(objects::aws_auth(&objects::node_mapping(
        &world.network.node_role_arn,
    )));
    let node = &instances(&world, "default").await[0];
    world
        .emulator
        .launched_ago(&node.id, 20)
        .await
        .expect("backdated");
    let mut hostile = Vec::new();
    while hostile.len() < 64 * 1024 {
        hostile.extend_from_slice(
            b"\x1b[2J\x1b]0;pwned\x07<script>alert(1)</script> x509: bad \xff\xfe\xc3\x28 ",
        );
        hostile.extend_from_slice(&[b'Z'; 700]);
        hostile.extend_from_slice(b"\r\n");
    }
    world
        .emulator
        .set_console_output(&node.id, &hostile)
        .await
        .expect("console");
    let output = world.nodemedic(
        &[
            "diagnose",
            "--cluster",
            CLUSTER,
            "--nodegroup",
            "default",
            "--json",
        ],
        &[],
    );
    let text = String::from_utf8(output.stdout.clone()).expect("UTF-8 out");
    assert!(
        !text.contains('\u{1b}') && !text.contains("\\u001b"),
        "escape sequences are stripped"
    );
    let reports: Value = serde_json::from_str(&text).expect("json");
    let boot = findings(&reports)
        .into_iter()
        .find(|f| f["cause"] == "node_boot_error")
        .expect("a boot error");
    let lines = boot["evidence"].as_array().unwrap();
    assert!(lines.len() <= 12, "{}", lines.len());
    for line in lines {
        let observed = line["observed"].as_str().unwrap();
        assert!(observed.len() <= 340, "{}", observed.len());
        assert!(!observed.chars().any(char::is_control));
    }
    let table = world.nodemedic(
        &["diagnose", "--cluster", CLUSTER, "--nodegroup", "default"],
        &[],
    );
    assert!(
        !table.stdout.contains(&0x1b),
        "the table prints no escape sequence"
    );
}

/// A healthy nodegroup in the private subnet whose launch nodemedic sees; returns its instance.
pub(crate) async fn launched(world: &World, name: &str) -> Instance {
    let c = &world.clients;
    let group = lab::nodegroup(
        c,
        &world.network,
        name,
        &world.network.private_subnet,
        (0, 1, 1),
        None,
    )
    .await
    .expect("nodegroup");
    lab::publish_launch_event(c, &world.network, &group, &world.network.private_subnet)
        .await
        .expect("event");
    instances(world, name).await.remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_join_check_asks_the_cluster_and_opens_an_incident_for_an_instance_without_a_node() {
    let world = World::new(3).await;
    let _server = served(&world, CLUSTER).await;
    let instance = launched(&world, "late").await.id;
    // Before any EKS health issue: EKS reports NodeCreationFailure only after 15 minutes.
    let deadline = [("NODEMEDIC_JOIN__DEADLINE_SECS", "2")];
    world.run_once_with("dry-run", &deadline);
    assert!(
        world.incidents().is_empty(),
        "the launch itself looks healthy"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    world.run_once_with("dry-run", &deadline);
    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0]["cause"], "node_not_registered");
    let shown = world.show(incidents[0]["incident_id"].as_str().unwrap());
    let text = shown.to_string();
    assert!(
        text.contains(&format!("no Node has providerID aws:///{}", lab::ZONE)),
        "{text}"
    );
    assert!(text.contains(&instance));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_cluster_api_is_counted_and_the_daemon_carries_on() {
    use crate::operations::{sample, scrape};
    let world = World::new(3).await;
    let server = served(&world, CLUSTER).await;
    server.state().forbid = true;
    launched(&world, "counted").await;
    let address = "127.0.0.1:0".to_string();
    let daemon = world.start_daemon(
        "dry-run",
        &[
            ("NODEMEDIC_HTTP__ADDRESS", &address),
            ("NODEMEDIC_JOIN__DEADLINE_SECS", "1"),
        ],
    );
    let port = daemon.http_port(60);
    crate::support::wait_for("the skipped reading is counted", 60, || {
        sample(
            &scrape(port),
            "nodemedic_cluster_api_skipped_total{reason=\"forbidden\"}",
        ) >= 1.0
    });
    let log = daemon.stop();
    assert!(log.contains("its checks are skipped"), "{log}");
    assert!(
        world.incidents().is_empty(),
        "a refusal blames nothing: {:#?}",
        world.incidents()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unparseable_aws_auth_is_malformed() {
    let world = World::new(3).await;
    let server = served(&world, CLUSTER).await;
    server.state().aws_auth = Some(objects::aws_auth(
        "- rolearn: [arn:aws:iam::123456789012:role/eks-workshop-node\n  groups: system:nodes\n",
    ));
    assert_eq!(world.blocking_causes("default"), vec!["aws_auth_malformed"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_lab_000_is_fixed_the_cycle_holds_when_a_new_instances_node_is_ready() {
    let world = World::new(3).await;
    let lab = lab::lab_000(&world.clients, &world.network)
        .await
        .expect("lab 000");
    let server = std::sync::Arc::new(served(&world, CLUSTER).await);
    let before: Vec<String> = instances(&world, &lab.nodegroup)
        .await
        .into_iter()
        .map(|i| i.id)
        .collect();
    // A stand-in for kubelet: an instance registers its Node once its subnet routes to the NAT.
    let kubelet = {
        let (server, clients, table, nodegroup) = (
            server.clone(),
            world.clients.clone(),
            lab.route_table.clone(),
            lab.nodegroup.clone(),
        );
        tokio::spawn(async move {
            loop {
                let routed = clients
                    .ec2
                    .describe_route_tables()
                    .route_table_ids(&table)
                    .send()
                    .await
                    .ok()
                    .is_some_and(|o| {
                        o.route_tables()
                            .iter()
                            .flat_map(|t| t.routes())
                            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
                    });
                if routed {
                    let described = clients.ec2.describe_instances().send().await.ok();
                    for instance in described
                        .iter()
                        .flat_map(|d| d.reservations())
                        .flat_map(|r| r.instances())
                    {
                        let tagged = instance.tags().iter().any(|t| {
                            t.key() == Some("eks:nodegroup-name") && t.value() == Some(&nodegroup)
                        });
                        let id = instance.instance_id().unwrap_or_default();
                        let running = instance.state().and_then(|s| s.name()).map(|n| n.as_str())
                            == Some("running");
                        let known = server.state().nodes.iter().any(|n| {
                            n["spec"]["providerID"]
                                .as_str()
                                .is_some_and(|p| p.ends_with(id))
                        });
                        if tagged && running && !known {
                            let zone = instance
                                .placement()
                                .and_then(|p| p.availability_zone())
                                .unwrap_or_default();
                            let dns = instance.private_dns_name().unwrap_or_default();
                            server.state().nodes.push(objects::node(
                                dns,
                                zone,
                                id,
                                &nodegroup,
                                objects::Ready::True,
                            ));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    lab::publish_launch_event(&world.clients, &world.network, &lab.group, &lab.subnet)
        .await
        .expect("event");
    tokio::task::block_in_place(|| world.run_once("auto"));
    kubelet.abort();
    let incidents = world.incidents();
    assert_eq!(incidents[0]["outcome"], "fixed", "{incidents:#?}");
    let verification = world.records_of(
        incidents[0]["incident_id"].as_str().unwrap(),
        "verification",
    );
    let cycle = verification[0]["body"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["what"]
                .as_str()
                .unwrap()
                .contains("Node of a new instance")
        })
        .unwrap_or_else(|| panic!("verified by Node: {verification:#?}"));
    assert_eq!(cycle["passed"], true, "{cycle:#}");
    assert!(
        cycle["what"]
            .as_str()
            .unwrap()
            .contains("read from the cluster's API")
    );
    let ready = cycle["detail"].as_str().unwrap();
    assert!(
        before.iter().all(|old| !ready
            .split("; ")
            .next()
            .unwrap_or_default()
            .contains(old.as_str())),
        "{ready}"
    );
}
