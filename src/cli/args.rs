//! The command line as clap reads it: a stable contract that tests and operators rely on.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "nodemedic",
    version,
    about = "Finds out why EKS worker nodes fail to join their cluster and fixes the cause, safely, with an audit trail."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume Auto Scaling events from SQS: diagnose, plan, and in auto mode fix.
    Run(RunArgs),
    /// Read the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The local demo: start the emulator, break nodegroups like the seed labs, watch nodemedic
    /// diagnose them in dry-run and then fix them in auto mode (built with the `demo` feature).
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Run the whole join checklist on a cluster's nodegroups now, read-only: what is wrong, the
    /// proof, and what to run. Exit 0 when healthy, 3 when a blocking cause is found, 1 on errors.
    Diagnose(DiagnoseArgs),
    /// Print the catalog of cause codes and fix kinds as Markdown.
    Catalog,
    /// Print the least-privilege IAM policy for the settings: read-only in observe and dry-run,
    /// plus each enabled fix's own actions in approve and auto; with --member, the role to
    /// create in each member account.
    IamPolicy(IamPolicyArgs),
    /// Ask the running daemon's HTTP server for a health endpoint (for container health checks
    /// in images without a shell). Exit 0 when it answers 2xx, 1 otherwise.
    Probe(ProbeArgs),
    /// The shared store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Settings files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Plans and their approval state.
    Plans {
        #[command(subcommand)]
        command: PlansCommand,
    },
    /// Approve a plan that waits for approval; the daemon applies it if the world still matches.
    Approve(DecisionArgs),
    /// Reject a plan that waits for approval.
    Reject(DecisionArgs),
    /// Stop (or allow again) every mutation at once, without a restart.
    KillSwitch(KillSwitchArgs),
    /// Circuit breakers: list them, or reset one.
    Breakers {
        #[command(subcommand)]
        command: BreakersCommand,
    },
}

#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// The mode to build the policy for; the settings' mode when omitted.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// `json` (an IAM policy document), `cloudformation` (the block the templates embed) or
    /// `cloudformation-member` (the member role's block of nodemedic-member.yaml).
    #[arg(long, default_value = "json", value_parser = ["json", "cloudformation", "cloudformation-member"])]
    pub format: String,
    /// Print the role to create in each member account (hub and spoke) instead: its name, its
    /// trust policy (the hub, with `accounts.external_id`) and its permissions policy, as JSON.
    #[arg(long, requires = "hub_principal", conflicts_with = "format")]
    pub member: bool,
    /// With --member: the hub account id (any role of it the hub's IAM allows), or the ARN of the
    /// daemon's own role.
    #[arg(long, value_name = "ACCOUNT_OR_ARN", requires = "member")]
    pub hub_principal: Option<String>,
    /// The partition of the JSON policy's ARNs: `aws`, `aws-us-gov` (GovCloud) or `aws-cn`.
    /// (The CloudFormation block uses the stack's own partition.)
    #[arg(long, default_value = "aws", value_parser = ["aws", "aws-us-gov", "aws-cn", "aws-iso", "aws-iso-b"])]
    pub partition: String,
    /// JSON policy: mutations only on resources tagged `nodemedic.io/managed=true`, for teams
    /// that keep an allow list of what nodemedic may change.
    #[arg(long)]
    pub managed_tag: bool,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// host:port of the daemon's HTTP server; `http.address` from the settings when omitted
    /// (a wildcard host is probed on loopback).
    #[arg(long)]
    pub address: Option<String>,
    #[arg(long, default_value = "/readyz")]
    pub path: String,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the settings (built-in defaults, the file, NODEMEDIC_* variables) and explain
    /// every problem. Exit 0 when they are usable, 2 when not.
    Check {
        #[command(flatten)]
        settings: SettingsArgs,
        /// The mode the daemon will run in, when not in the settings.
        #[arg(long, value_name = "MODE")]
        mode: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlansCommand {
    /// Plans awaiting approval (or every plan with --all).
    List {
        #[command(flatten)]
        settings: SettingsArgs,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct DecisionArgs {
    /// The plan id (plan-…).
    pub plan: String,
    /// Who decides; defaults to $USER.
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, Args)]
pub struct KillSwitchArgs {
    /// on, off or status.
    #[arg(value_parser = ["on", "off", "status"])]
    pub state: String,
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, Subcommand)]
pub enum BreakersCommand {
    List {
        #[command(flatten)]
        settings: SettingsArgs,
        #[arg(long)]
        json: bool,
    },
    /// Close an open breaker (e.g. `vpc:vpc-0abc`).
    Reset {
        scope: String,
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    #[arg(long)]
    pub cluster: String,
    /// One nodegroup; every nodegroup of the cluster when omitted.
    #[arg(long)]
    pub nodegroup: Option<String>,
    /// Examine this instance's subnet, and whether EKS reports that it failed to join.
    #[arg(long)]
    pub instance: Option<String>,
    /// The region; the SDK's usual chain when omitted.
    #[arg(long)]
    pub region: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Do not read the cluster's own API (Nodes, CSRs, aws-auth, aws-node): its checks are
    /// then skipped.
    #[arg(long)]
    pub no_cluster_api: bool,
    /// The bound on reading the cluster's API, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub cluster_api_timeout: u64,
    /// How long an instance may run without a Node before it counts as not registered.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub join_deadline: u64,
}

#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// A TOML settings file, layered over the built-in defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The SQLite audit database.
    #[arg(long, value_name = "PATH")]
    pub audit_db: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// The SQS queue URL EventBridge delivers to.
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,
    /// observe, dry-run (default), approve or auto.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Exit 0 once the queue is empty and every message in flight is done.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Incidents, newest first.
    List {
        #[command(flatten)]
        settings: SettingsArgs,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// At most this many incidents.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One incident: diagnosis, evidence, plan, decisions, results and timeline.
    Show {
        /// The incident id (inc-…).
        id: String,
        #[command(flatten)]
        settings: SettingsArgs,
        #[arg(long)]
        json: bool,
    },
    /// Walk the hash chains and report the first broken link.
    Verify {
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Every record as JSON lines (chain, seq, hashes, body), for a SIEM or an S3 bucket with
    /// object lock (`aws s3 cp FILE s3://bucket/key --object-lock-mode COMPLIANCE ...`).
    Export {
        #[command(flatten)]
        settings: SettingsArgs,
        /// Only records after this sequence number (SQLite's single chain; for incremental
        /// exports).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the DynamoDB tables the settings name (state and audit; TTL, point-in-time
    /// recovery) unless they exist. The CloudFormation template does the same.
    Init {
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Which lab to break: 000 (subnet without a NAT route), 002 (KMS key policy), auth (a node
    /// role missing from aws-auth), or both (all three).
    #[arg(long, default_value = "both", value_parser = ["000", "002", "auth", "both"])]
    pub lab: String,
    /// Keep the demo's audit database here instead of a temporary directory.
    #[arg(long, value_name = "PATH")]
    pub audit_db: Option<PathBuf>,
}
