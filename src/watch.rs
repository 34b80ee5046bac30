//! The nodegroup health watcher: EKS sends no event when a nodegroup turns DEGRADED, so nodemedic
//! polls DescribeNodegroup and publishes what it sees to its own queue. The event id is a hash of
//! the nodegroup's state, so several replicas watching the same clusters publish the same id and
//! the pipeline's dedupe keeps one incident.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::aws::{AwsClients, AwsError, AwsResultExt};
use crate::core::trigger::{HealthEvent, HealthEventIssue};
use crate::intake::HEALTH_ISSUE;
use crate::intake::publish::{Publisher, nodemedic_event};

pub struct Watcher {
    pub clients: Arc<AwsClients>,
    pub account: String,
    pub region: String,
    /// Cluster names, or `*` for every cluster.
    pub clusters: Vec<String>,
    pub interval: Duration,
    pub publisher: Publisher,
}

/// What one pass saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub nodegroups: usize,
    pub unhealthy: usize,
    pub published: usize,
}

/// What the watcher already published, by cluster and nodegroup.
pub type Published = HashMap<(String, String), String>;

impl Watcher {
    /// One pass now; used before the queue loop starts so that a drain-once run sees it.
    pub async fn first_pass(&self) -> Published {
        let mut published = Published::new();
        self.logged_pass(&mut published).await;
        published
    }

    /// Passes every interval until `shutdown`.
    pub async fn run(self, mut published: Published, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => return,
            }
            self.logged_pass(&mut published).await;
        }
    }

    async fn logged_pass(&self, published: &mut Published) {
        match self.pass(published).await {
            Ok(pass) => debug!(?pass, "health watch pass"),
            Err(error) => warn!(%error, "health watch pass failed; trying again next interval"),
        }
    }

    /// One look at every watched nodegroup; publishes each unhealthy state once per process
    /// (restarts and other replicas publish the same id, which the pipeline dedupes).
    pub async fn pass(
        &self,
        last_published: &mut HashMap<(String, String), String>,
    ) -> Result<Pass, AwsError> {
        let mut pass = Pass::default();
        for cluster in self.cluster_names().await? {
            for nodegroup in self.nodegroups(&cluster).await? {
                pass.nodegroups += 1;
                let Some(event) = self.health_of(&cluster, &nodegroup).await? else {
                    last_published.remove(&(cluster.clone(), nodegroup.clone()));
                    continue;
                };
                pass.unhealthy += 1;
                let id = event_id(&self.account, &self.region, &event.0, &event.1);
                let key = (cluster.clone(), nodegroup.clone());
                if last_published.get(&key) == Some(&id) {
                    continue;
                }
                let envelope = nodemedic_event(
                    HEALTH_ISSUE,
                    &id,
                    &self.account,
                    &self.region,
                    json!(event.0),
                );
                self.publisher.publish(&envelope, 0).await?;
                info!(cluster, nodegroup, status = %event.0.status, issues = event.0.issues.len(), "nodegroup health issue published");
                last_published.insert(key, id);
                pass.published += 1;
            }
        }
        Ok(pass)
    }

    async fn cluster_names(&self) -> Result<Vec<String>, AwsError> {
        if !self.clusters.iter().any(|c| c == "*") {
            return Ok(self.clusters.clone());
        }
        let mut names = Vec::new();
        let mut pages = self.clients.eks.list_clusters().into_paginator().send();
        while let Some(page) = pages.next().await {
            names.extend(page.op("eks:ListClusters")?.clusters().iter().cloned());
        }
        Ok(names)
    }

    async fn nodegroups(&self, cluster: &str) -> Result<Vec<String>, AwsError> {
        let mut names = Vec::new();
        let mut pages = self
            .clients
            .eks
            .list_nodegroups()
            .cluster_name(cluster)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            match page.op("eks:ListNodegroups") {
                Ok(page) => names.extend(page.nodegroups().iter().cloned()),
                Err(error) if error.is_code("ResourceNotFoundException") => {
                    warn!(cluster, "watched cluster does not exist");
                    return Ok(Vec::new());
                }
                Err(error) => return Err(error),
            }
        }
        Ok(names)
    }

    /// The nodegroup's health event and the state it was derived from, when it is unhealthy.
    async fn health_of(
        &self,
        cluster: &str,
        nodegroup: &str,
    ) -> Result<Option<(HealthEvent, String)>, AwsError> {
        let described = match self
            .clients
            .eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(nodegroup)
            .send()
            .await
            .op("eks:DescribeNodegroup")
        {
            Err(error) if error.is_code("ResourceNotFoundException") => return Ok(None),
            other => other?,
        };
        let Some(nodegroup_description) = described.nodegroup() else {
            return Ok(None);
        };
        let status = nodegroup_description
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let issues: Vec<HealthEventIssue> = nodegroup_description
            .health()
            .map(|h| h.issues())
            .unwrap_or_default()
            .iter()
            .map(|issue| HealthEventIssue {
                code: issue
                    .code()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
                message: issue.message().unwrap_or_default().to_string(),
                resource_ids: issue.resource_ids().to_vec(),
            })
            .collect();
        if status != "DEGRADED" && issues.is_empty() {
            return Ok(None);
        }
        // A change to the nodegroup (a fix, a cycle) makes a persisting problem a new event.
        let modified = nodegroup_description
            .modified_at()
            .map(|t| t.secs().to_string())
            .unwrap_or_default();
        Ok(Some((
            HealthEvent {
                cluster: cluster.into(),
                nodegroup: nodegroup.into(),
                status,
                issues,
            },
            modified,
        )))
    }
}

/// A stable id for one observed unhealthy state of a nodegroup.
pub fn event_id(account: &str, region: &str, event: &HealthEvent, modified: &str) -> String {
    let mut issues: Vec<String> = event
        .issues
        .iter()
        .map(|i| {
            let mut resources = i.resource_ids.clone();
            resources.sort();
            format!("{}|{}|{}", i.code, i.message, resources.join(","))
        })
        .collect();
    issues.sort();
    let mut hasher = Sha256::new();
    for part in [
        account,
        region,
        &event.cluster,
        &event.nodegroup,
        &event.status,
        modified,
        &issues.join(";"),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    format!("health-{}", &hex::encode(hasher.finalize())[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(issues: &[(&str, &[&str])]) -> HealthEvent {
        HealthEvent {
            cluster: "c".into(),
            nodegroup: "ng".into(),
            status: "DEGRADED".into(),
            issues: issues
                .iter()
                .map(|(code, resources)| HealthEventIssue {
                    code: code.to_string(),
                    message: "m".into(),
                    resource_ids: resources.iter().map(|r| r.to_string()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_same_state_gives_the_same_id_whatever_the_order() {
        let a = event(&[
            ("NodeCreationFailure", &["i-1", "i-2"]),
            ("AccessDenied", &[]),
        ]);
        let b = event(&[
            ("AccessDenied", &[]),
            ("NodeCreationFailure", &["i-2", "i-1"]),
        ]);
        assert_eq!(event_id("1", "r", &a, "100"), event_id("1", "r", &b, "100"));
    }

    #[test]
    fn a_new_instance_or_a_change_to_the_nodegroup_gives_a_new_id() {
        let a = event(&[("NodeCreationFailure", &["i-1"])]);
        let b = event(&[("NodeCreationFailure", &["i-3"])]);
        assert_ne!(event_id("1", "r", &a, "100"), event_id("1", "r", &b, "100"));
        assert_ne!(event_id("1", "r", &a, "100"), event_id("1", "r", &a, "200"));
    }
}
