//! `nodemedic demo`: the local demonstration. Starts the emulator, breaks nodegroups the way the
//! seed labs do, runs nodemedic in dry-run (plans, changes nothing) and then in auto (fixes),
//! and prints the plan, the fix, the AWS state and the audit trail.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::audit::AuditStore;
use crate::aws::AwsResultExt;
use crate::daemon;
use crate::lab::{self, Emulator, Lab000, Lab002, LabClients};
use crate::report;
use crate::settings::{Overrides, Settings};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Lab(#[from] lab::LabError),
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
    #[error(transparent)]
    Config(#[from] crate::settings::ConfigError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    #[error("demo check failed: {0}")]
    Check(String),
}

fn heading(text: &str) {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        println!("\n\x1b[1m== {text} ==\x1b[0m");
    } else {
        println!("\n== {text} ==");
    }
}

/// What the demo breaks and where it keeps its audit database.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// `000`, `002`, `auth` or `both` (all three).
    pub lab: String,
    /// A temporary directory's database when not set.
    pub audit_db: Option<PathBuf>,
}

pub async fn run(args: &DemoOptions) -> Result<(), DemoError> {
    heading(
        "Starting the local AWS emulator (moto_server + nodemedic's EKS/Auto Scaling launcher)",
    );
    let emulator = Emulator::start(1.0).await?;
    println!("emulator at {}", emulator.endpoint());
    let sdk = emulator.sdk_config();
    let c = LabClients::new(&sdk);
    let queue = lab::event_queue(&c, "nodemedic-events", 3).await?;
    println!(
        "queue {} fed by an EventBridge rule for Auto Scaling launch events",
        queue.url
    );

    heading("Building the eks-workshop cluster and breaking nodegroups like the seed labs");
    let network = lab::workshop(&c).await?;
    let lab_000 = if args.lab == "000" || args.lab == "both" {
        Some(lab::lab_000(&c, &network).await?)
    } else {
        None
    };
    let lab_002 = if args.lab == "002" || args.lab == "both" {
        Some(lab::lab_002(&c, &network).await?)
    } else {
        None
    };
    if let Some(lab) = &lab_000 {
        println!(
            "lab 000: nodegroup {} launched into subnet {} (10.42.192.0/19); route table {} has only: {}",
            lab.nodegroup,
            lab.subnet,
            lab.route_table,
            routes(&c, &lab.route_table).await?.join(", ")
        );
    }
    if let Some(lab) = &lab_002 {
        let described = c
            .eks
            .describe_nodegroup()
            .cluster_name(lab::CLUSTER)
            .nodegroup_name(&lab.nodegroup)
            .send()
            .await
            .op("eks:DescribeNodegroup")?;
        let nodegroup = described.nodegroup();
        let status = nodegroup
            .and_then(|n| n.status())
            .map(|s| s.as_str())
            .unwrap_or("?");
        let issue = nodegroup
            .and_then(|n| n.health())
            .and_then(|h| h.issues().first())
            .map(|i| {
                format!(
                    "{}: {}",
                    i.code().map(|c| c.as_str()).unwrap_or("?"),
                    i.message().unwrap_or("")
                )
            })
            .unwrap_or_default();
        println!(
            "lab 002: nodegroup {} is {status} ({issue}); its launch template encrypts with {} whose policy only lets the account root in",
            lab.nodegroup, lab.key_arn
        );
    }
    publish(&c, &lab_000, &lab_002).await?;

    let dir =
        std::env::temp_dir().join(format!("nodemedic-demo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| DemoError::Check(e.to_string()))?;
    let audit_db = args
        .audit_db
        .clone()
        .unwrap_or_else(|| dir.join("audit.db"));

    heading("1. nodemedic run --mode dry-run --once");
    drain(&sdk, &queue.url, "dry-run", &audit_db).await?;
    let store = AuditStore::open(&audit_db)?;
    print_incidents(&store).await?;
    heading("AWS state after dry-run");
    if let Some(lab) = &lab_000 {
        let now = routes(&c, &lab.route_table).await?;
        println!("route table {}: {}", lab.route_table, now.join(", "));
        check(now.len() == 1, "dry-run must not add a route")?;
    }
    if let Some(lab) = &lab_002 {
        let policy = key_policy(&c, &lab.key_id).await?;
        println!(
            "key policy of {}: {} statement(s), unchanged",
            lab.key_id,
            statements(&policy)
        );
        check(
            same_json(&policy, &lab.policy),
            "dry-run must not change the key policy",
        )?;
    }
    for nodegroup in nodegroups(&lab_000, &lab_002) {
        let updates = updates(&c, &nodegroup).await?;
        println!("nodegroup {nodegroup}: {} scaling update(s)", updates.len());
        check(updates.is_empty(), "dry-run must not scale a nodegroup")?;
    }
    println!("dry-run changed nothing.");

    heading(
        "2. nodemedic run --mode auto --once (Auto Scaling retries the launches; new events arrive)",
    );
    publish(&c, &lab_000, &lab_002).await?;
    drain(&sdk, &queue.url, "auto", &audit_db).await?;
    print_incidents(&store).await?;

    heading("AWS state after auto");
    if let Some(lab) = &lab_000 {
        let now = routes(&c, &lab.route_table).await?;
        println!("route table {}: {}", lab.route_table, now.join(", "));
        check(
            now.iter().any(|r| r.starts_with("0.0.0.0/0 -> nat-")),
            "auto must add the NAT route",
        )?;
    }
    if let Some(lab) = &lab_002 {
        let policy = key_policy(&c, &lab.key_id).await?;
        println!(
            "key policy of {}: {} statement(s)",
            lab.key_id,
            statements(&policy)
        );
        check(statements(&policy) == 3, "auto must add the two statements")?;
    }
    for nodegroup in nodegroups(&lab_000, &lab_002) {
        let updates = updates(&c, &nodegroup).await?;
        println!(
            "nodegroup {nodegroup}: scaling updates {}",
            updates.join(" then ")
        );
        let described = c
            .eks
            .describe_nodegroup()
            .cluster_name(lab::CLUSTER)
            .nodegroup_name(&nodegroup)
            .send()
            .await
            .op("eks:DescribeNodegroup")?;
        let status = described
            .nodegroup()
            .and_then(|n| n.status())
            .map(|s| s.as_str().to_string());
        println!(
            "nodegroup {nodegroup}: status {}",
            status.unwrap_or_default()
        );
    }

    heading("3. nodemedic diagnose --cluster eks-workshop (the whole checklist, read-only)");
    let request = crate::diagnose::Request {
        account: network.account.clone(),
        region: lab::REGION.into(),
        cluster: lab::CLUSTER.into(),
        nodegroup: None,
        instance: None,
    };
    let reports = crate::diagnose::run(&crate::aws::AwsClients::new(&sdk), &request)
        .await
        .map_err(|e| DemoError::Check(e.to_string()))?;
    print!("{}", report::diagnose_text(&reports));
    check(
        reports.iter().all(|r| r.healthy),
        "every nodegroup is healthy after the fixes",
    )?;

    if args.lab == "both" || args.lab == "auth" {
        lab_auth(&c, &network, &emulator).await?;
    }

    heading("nodemedic audit list");
    let incidents = store.read(|c| c.list(100)).await?;
    print!("{}", report::list_text(&incidents));
    let verified = store.read(|r| r.verify_chain()).await?;
    match verified {
        Ok(count) => println!("\naudit chain verified: {count} records, every link intact"),
        Err(broken) => {
            return Err(DemoError::Check(format!(
                "audit chain {} broken at {}: {}",
                broken.chain, broken.seq, broken.why
            )));
        }
    }
    println!("audit database: {}", audit_db.display());
    Ok(())
}

async fn publish(
    c: &LabClients,
    lab_000: &Option<Lab000>,
    lab_002: &Option<Lab002>,
) -> Result<(), DemoError> {
    if let Some(lab) = lab_000 {
        let id = lab::publish_launch_event(c, &lab.network, &lab.group, &lab.subnet).await?;
        println!(
            "published \"EC2 Instance Launch Successful\" for {} (event {id})",
            lab.group
        );
    }
    if let Some(lab) = lab_002 {
        let id =
            lab::publish_launch_event(c, &lab.network, &lab.group, &lab.network.private_subnet)
                .await?;
        println!(
            "published \"EC2 Instance Launch Unsuccessful\" for {} (event {id})",
            lab.group
        );
    }
    Ok(())
}

async fn drain(
    sdk: &aws_config::SdkConfig,
    queue: &str,
    mode: &str,
    audit_db: &std::path::Path,
) -> Result<(), DemoError> {
    let env: HashMap<String, String> = [
        ("NODEMEDIC_INTAKE__WAIT_TIME_SECS", "1"),
        ("NODEMEDIC_REMEDIATION__NODEGROUP_POLL_SECS", "0.25"),
        ("NODEMEDIC_REMEDIATION__NODEGROUP_TIMEOUT_SECS", "60"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let overrides = Overrides {
        queue_url: Some(queue.to_string()),
        mode: Some(mode.to_string()),
        audit_db: Some(PathBuf::from(audit_db)),
        config_file: None,
    };
    let settings = Settings::load_with_env(&overrides, Some(env))?;
    let summary = daemon::run_with(
        settings,
        sdk.clone(),
        true,
        crate::shutdown::Shutdown::new(),
        Default::default(),
    )
    .await?;
    println!(
        "handled {} message(s), deleted {}",
        summary.received, summary.deleted
    );
    Ok(())
}

async fn print_incidents(store: &AuditStore) -> Result<(), DemoError> {
    let incidents = store.read(|c| c.list(100)).await?;
    for incident in incidents.iter().rev() {
        let records = store.read(|c| c.records(&incident.incident_id)).await?;
        println!();
        print!("{}", report::show_text(incident, &records));
    }
    Ok(())
}

/// The third lab: a node role missing from aws-auth, found from the cluster's own API (a local
/// stand-in here) and explained; aws-auth is never written, so nodemedic only reports it.
async fn lab_auth(
    c: &LabClients,
    network: &lab::Network,
    emulator: &Emulator,
) -> Result<(), DemoError> {
    heading("4. lab auth: a nodegroup whose role is missing from the aws-auth ConfigMap");
    let lab = lab::lab_auth(c, network, emulator).await?;
    println!(
        "cluster {} authenticates through aws-auth only (CONFIG_MAP); its API is a local stand-in at {}",
        lab.cluster, lab.api.endpoint
    );
    println!(
        "nodegroup {}: instance {} has run for 12 minutes and never registered a Node; aws-auth maps only platform-admins",
        lab.nodegroup, lab.instance
    );
    println!(
        "nodemedic diagnose --cluster {} --nodegroup {}",
        lab.cluster, lab.nodegroup
    );
    let request = crate::diagnose::Request {
        account: network.account.clone(),
        region: lab::REGION.into(),
        cluster: lab.cluster.clone(),
        nodegroup: Some(lab.nodegroup.clone()),
        instance: None,
    };
    let reports = crate::diagnose::run(
        &crate::aws::AwsClients::new(&emulator.sdk_config()),
        &request,
    )
    .await
    .map_err(|e| DemoError::Check(e.to_string()))?;
    print!("{}", report::diagnose_text(&reports));
    let primary = reports
        .first()
        .and_then(|r| r.diagnosis.primary())
        .map(|f| f.cause.code());
    check(
        primary == Some("aws_auth_missing_node_role"),
        "lab auth must be diagnosed as aws_auth_missing_node_role",
    )?;
    let writes = lab
        .api
        .state()
        .requests
        .iter()
        .filter(|(method, _, _)| method != "GET")
        .count();
    check(writes == 0, "nodemedic only reads the cluster's API")?;
    println!(
        "found and explained; nodemedic read the cluster's API with GETs only and wrote nothing to aws-auth."
    );
    Ok(())
}

fn nodegroups(lab_000: &Option<Lab000>, lab_002: &Option<Lab002>) -> Vec<String> {
    lab_000
        .iter()
        .map(|l| l.nodegroup.clone())
        .chain(lab_002.iter().map(|l| l.nodegroup.clone()))
        .collect()
}

async fn routes(c: &LabClients, table: &str) -> Result<Vec<String>, DemoError> {
    let output = c
        .ec2
        .describe_route_tables()
        .route_table_ids(table)
        .send()
        .await
        .op("ec2:DescribeRouteTables")?;
    Ok(output
        .route_tables()
        .iter()
        .flat_map(|t| crate::aws::collect::route_table_facts(t).routes)
        .map(|r| format!("{} -> {} ({})", r.destination, r.target, r.state))
        .collect())
}

async fn key_policy(c: &LabClients, key: &str) -> Result<String, DemoError> {
    let output = c
        .kms
        .get_key_policy()
        .key_id(key)
        .policy_name("default")
        .send()
        .await
        .op("kms:GetKeyPolicy")?;
    Ok(output.policy().unwrap_or_default().to_string())
}

async fn updates(c: &LabClients, nodegroup: &str) -> Result<Vec<String>, DemoError> {
    let listed = c
        .eks
        .list_updates()
        .name(lab::CLUSTER)
        .nodegroup_name(nodegroup)
        .send()
        .await
        .op("eks:ListUpdates")?;
    let mut described = Vec::new();
    for id in listed.update_ids() {
        let update = c
            .eks
            .describe_update()
            .name(lab::CLUSTER)
            .nodegroup_name(nodegroup)
            .update_id(id)
            .send()
            .await
            .op("eks:DescribeUpdate")?;
        let params: Vec<String> = update
            .update()
            .map(|u| u.params())
            .unwrap_or_default()
            .iter()
            .map(|p| {
                format!(
                    "{}={}",
                    p.r#type().map(|t| t.as_str()).unwrap_or("?"),
                    p.value().unwrap_or("?")
                )
            })
            .collect();
        described.push(format!("[{}]", params.join(" ")));
    }
    Ok(described)
}

fn statements(policy: &str) -> usize {
    serde_json::from_str::<Value>(policy)
        .ok()
        .and_then(|v| v["Statement"].as_array().map(Vec::len))
        .unwrap_or(0)
}

fn same_json(a: &str, b: &str) -> bool {
    serde_json::from_str::<Value>(a).ok() == serde_json::from_str::<Value>(b).ok()
}

fn check(condition: bool, what: &str) -> Result<(), DemoError> {
    if condition {
        Ok(())
    } else {
        Err(DemoError::Check(what.to_string()))
    }
}
