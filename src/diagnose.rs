//! `nodemedic diagnose`: the whole checklist on a cluster's nodegroups, read-only and one-shot,
//! with the same evidence collection, rules and planner the daemon uses.

use serde::Serialize;
use time::OffsetDateTime;

use crate::aws::collect::{CollectError, Scope, collect};
use crate::aws::{AwsClients, AwsError, AwsResultExt};
use crate::core::checks::{Diagnosis, diagnose};
use crate::core::evidence::CallLog;
use crate::core::evidence::Target;
use crate::core::plan::{Plan, plan};
use crate::core::trigger::{JoinCheck, NodegroupApiCall, Trigger, TriggerKind};

/// What to look at.
#[derive(Debug, Clone)]
pub struct Request {
    pub account: String,
    pub region: String,
    pub cluster: String,
    /// `None`: every nodegroup of the cluster.
    pub nodegroup: Option<String>,
    /// Examine this instance's subnet (and whether EKS says it failed to join).
    pub instance: Option<String>,
}

/// The verdict on one nodegroup.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cluster: String,
    pub nodegroup: String,
    pub healthy: bool,
    pub cause: Option<String>,
    pub diagnosis: Diagnosis,
    pub plan: Plan,
    pub aws_calls: CallLog,
}

#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("nodegroup {cluster}/{nodegroup} does not exist")]
    NoSuchNodegroup { cluster: String, nodegroup: String },
    #[error("cluster {0} has no nodegroups")]
    NoNodegroups(String),
}

pub async fn run(clients: &AwsClients, request: &Request) -> Result<Vec<Report>, DiagnoseError> {
    let nodegroups = match &request.nodegroup {
        Some(name) => vec![name.clone()],
        None => list_nodegroups(clients, &request.cluster).await?,
    };
    if nodegroups.is_empty() {
        return Err(DiagnoseError::NoNodegroups(request.cluster.clone()));
    }
    let mut reports = Vec::new();
    for nodegroup in nodegroups {
        let trigger = trigger_for(request, &nodegroup);
        let target = Target {
            cluster: request.cluster.clone(),
            nodegroup: nodegroup.clone(),
            group: None,
        };
        let evidence =
            match collect(clients, &trigger, target, Scope::FULL, CallLog::default()).await {
                Ok(evidence) => evidence,
                Err(CollectError::NodegroupGone { cluster, nodegroup }) => {
                    return Err(DiagnoseError::NoSuchNodegroup { cluster, nodegroup });
                }
                Err(CollectError::Aws(error)) => return Err(error.into()),
            };
        let diagnosis = diagnose(&evidence);
        let plan = plan(&diagnosis, &evidence);
        reports.push(Report {
            cluster: request.cluster.clone(),
            nodegroup,
            healthy: diagnosis.is_healthy(),
            cause: diagnosis.cause().map(|c| c.code().to_string()),
            diagnosis,
            plan,
            aws_calls: evidence.calls,
        });
    }
    Ok(reports)
}

/// A diagnosis is framed as the trigger that would have asked for it: a join check for one
/// instance, else a preflight of the whole nodegroup.
fn trigger_for(request: &Request, nodegroup: &str) -> Trigger {
    let now = OffsetDateTime::now_utc();
    let kind = match &request.instance {
        Some(instance) => TriggerKind::JoinCheck(JoinCheck {
            cluster: request.cluster.clone(),
            nodegroup: nodegroup.to_string(),
            asg_name: String::new(),
            instance_id: instance.clone(),
            subnet_id: None,
            launched_at: now,
            due_at: now,
        }),
        None => TriggerKind::Preflight(NodegroupApiCall {
            cluster: request.cluster.clone(),
            nodegroup: nodegroup.to_string(),
            event_name: "diagnose".into(),
        }),
    };
    Trigger {
        event_id: format!("diagnose-{}", uuid::Uuid::new_v4().simple()),
        account: request.account.clone(),
        region: request.region.clone(),
        time: now,
        kind,
    }
}

async fn list_nodegroups(
    clients: &AwsClients,
    cluster: &str,
) -> Result<Vec<String>, DiagnoseError> {
    let mut names = Vec::new();
    let mut pages = clients
        .eks
        .list_nodegroups()
        .cluster_name(cluster)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        names.extend(page.op("eks:ListNodegroups")?.nodegroups().iter().cloned());
    }
    Ok(names)
}
