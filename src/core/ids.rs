//! The identities nodemedic keys its state by: a nodegroup, the shared resource a storm is about,
//! a circuit breaker's scope, and a lock. Typed here, text only where they are stored, logged or
//! used as a metric label; the text forms are the ones the stores already hold.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::checks::Subject;
use crate::core::evidence::{Evidence, KeyLookup};
use crate::core::plan::{Action, Step};

/// Which nodegroup an incident is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodegroupKey {
    pub account: String,
    pub region: String,
    pub cluster: String,
    pub nodegroup: String,
}

impl fmt::Display for NodegroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.account, self.region, self.cluster, self.nodegroup
        )
    }
}

/// A shared resource whose failures, across nodegroups, are one incident with one fix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StormSubject {
    /// A KMS key, by ARN or by the reference a launch template gives.
    Key(String),
    RouteTable(String),
    Vpc(String),
    Role(String),
    AccessEntry {
        cluster: String,
        principal: String,
    },
}

impl fmt::Display for StormSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StormSubject::Key(key) => write!(f, "key:{key}"),
            StormSubject::RouteTable(table) => write!(f, "route-table:{table}"),
            StormSubject::Vpc(vpc) => write!(f, "vpc:{vpc}"),
            StormSubject::Role(role) => write!(f, "role:{role}"),
            StormSubject::AccessEntry { cluster, principal } => {
                write!(f, "access-entry:{cluster}/{principal}")
            }
        }
    }
}

impl StormSubject {
    /// The shared resource a finding is about, when failures of other nodegroups can share it.
    pub fn of(subject: &Subject) -> Option<StormSubject> {
        match subject {
            Subject::Key { key_arn, .. } => Some(StormSubject::Key(key_arn.clone())),
            Subject::UnusableKey { reference, .. } => Some(StormSubject::Key(reference.clone())),
            Subject::Subnet {
                route_table_id: Some(table),
                ..
            } => Some(StormSubject::RouteTable(table.clone())),
            Subject::DefaultRoute { route_table_id, .. } => {
                Some(StormSubject::RouteTable(route_table_id.clone()))
            }
            Subject::Vpc { vpc_id, .. } | Subject::Endpoints { vpc_id, .. } => {
                Some(StormSubject::Vpc(vpc_id.clone()))
            }
            Subject::NodeRole { role_name, .. } | Subject::ClusterRole { role_name, .. } => {
                Some(StormSubject::Role(role_name.clone()))
            }
            Subject::AccessEntry {
                cluster,
                principal_arn,
            } => Some(StormSubject::AccessEntry {
                cluster: cluster.clone(),
                principal: principal_arn.clone(),
            }),
            _ => None,
        }
    }

    /// The shared resources a nodegroup's launches depend on, sorted by their text, each once.
    pub fn related(evidence: &Evidence) -> Vec<StormSubject> {
        let mut subjects = Vec::new();
        for key in &evidence.keys {
            subjects.push(StormSubject::Key(key.reference.clone()));
            if let KeyLookup::Found(metadata) = &key.lookup {
                subjects.push(StormSubject::Key(metadata.arn.clone()));
            }
        }
        if let Some(network) = &evidence.network {
            for subnet in &evidence.nodegroup.subnets {
                if let Some(table) = network.route_table_for(subnet) {
                    subjects.push(StormSubject::RouteTable(table.id.clone()));
                }
            }
            subjects.push(StormSubject::Vpc(network.vpc.id.clone()));
        }
        subjects.sort_by_key(|s| s.to_string());
        subjects.dedup();
        subjects
    }
}

/// What a lock serialises: one nodegroup's incidents, or one shared resource's storm.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockKey<'a> {
    Nodegroup(&'a NodegroupKey),
    /// A storm subject within its account and region.
    Subject {
        account: &'a str,
        region: &'a str,
        subject: &'a str,
    },
}

impl fmt::Display for LockKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockKey::Nodegroup(key) => write!(f, "nodegroup:{key}"),
            LockKey::Subject {
                account,
                region,
                subject,
            } => write!(f, "subject:{account}/{region}/{subject}"),
        }
    }
}

/// The kind of a circuit breaker's scope: its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Nodegroup,
    Vpc,
    Key,
    Account,
    Global,
}

impl ScopeKind {
    pub const ALL: [ScopeKind; 5] = [
        ScopeKind::Nodegroup,
        ScopeKind::Vpc,
        ScopeKind::Key,
        ScopeKind::Account,
        ScopeKind::Global,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Nodegroup => "nodegroup",
            ScopeKind::Vpc => "vpc",
            ScopeKind::Key => "key",
            ScopeKind::Account => "account",
            ScopeKind::Global => "global",
        }
    }

    /// The kind of a stored scope, by its text (`vpc:vpc-1`, `global`, …).
    pub fn of_stored(scope: &str) -> Option<ScopeKind> {
        let kind = scope.split(':').next()?;
        ScopeKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

/// Where failures count and a breaker opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerScope {
    Nodegroup(NodegroupKey),
    Vpc(String),
    Key(String),
    Account(String),
    Global,
}

impl fmt::Display for BreakerScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerScope::Nodegroup(key) => write!(f, "nodegroup:{key}"),
            BreakerScope::Vpc(vpc) => write!(f, "vpc:{vpc}"),
            BreakerScope::Key(key) => write!(f, "key:{key}"),
            BreakerScope::Account(account) => write!(f, "account:{account}"),
            BreakerScope::Global => f.write_str("global"),
        }
    }
}

impl BreakerScope {
    pub fn kind(&self) -> ScopeKind {
        match self {
            BreakerScope::Nodegroup(_) => ScopeKind::Nodegroup,
            BreakerScope::Vpc(_) => ScopeKind::Vpc,
            BreakerScope::Key(_) => ScopeKind::Key,
            BreakerScope::Account(_) => ScopeKind::Account,
            BreakerScope::Global => ScopeKind::Global,
        }
    }

    /// Failures that open this scope's breaker: wider scopes tolerate more, so that one bad
    /// nodegroup does not stop a whole account.
    pub fn threshold(kind: ScopeKind, per_resource: u32) -> u32 {
        match kind {
            ScopeKind::Global => per_resource.saturating_mul(4),
            ScopeKind::Account => per_resource.saturating_mul(2),
            ScopeKind::Nodegroup | ScopeKind::Vpc | ScopeKind::Key => per_resource,
        }
    }

    /// The scopes a step's failure counts against, narrowest first.
    pub fn for_step(step: &Step, evidence: &Evidence, key: &NodegroupKey) -> Vec<BreakerScope> {
        let mut scopes = vec![
            BreakerScope::Nodegroup(key.clone()),
            BreakerScope::Account(key.account.clone()),
            BreakerScope::Global,
        ];
        let vpc = evidence.network.as_ref().map(|n| n.vpc.id.clone());
        match &step.action {
            Action::CreateRoute { .. }
            | Action::ReplaceRoute { .. }
            | Action::ModifyVpcAttribute { .. }
            | Action::ModifyVpcEndpointPrivateDns { .. }
            | Action::ModifySubnetAttribute { .. } => {
                if let Some(vpc) = vpc {
                    scopes.insert(1, BreakerScope::Vpc(vpc));
                }
            }
            Action::PutKeyPolicy { key_id, .. } => {
                scopes.insert(1, BreakerScope::Key(key_id.clone()))
            }
            _ => {}
        }
        scopes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> NodegroupKey {
        NodegroupKey {
            account: "123456789012".into(),
            region: "us-west-2".into(),
            cluster: "eks-workshop".into(),
            nodegroup: "ng".into(),
        }
    }

    #[test]
    fn every_id_keeps_the_text_the_stores_hold() {
        let key = key();
        let cases: Vec<(String, &str)> = vec![
            (key.to_string(), "123456789012/us-west-2/eks-workshop/ng"),
            (
                LockKey::Nodegroup(&key).to_string(),
                "nodegroup:123456789012/us-west-2/eks-workshop/ng",
            ),
            (
                LockKey::Subject {
                    account: "1",
                    region: "r",
                    subject: "vpc:vpc-1",
                }
                .to_string(),
                "subject:1/r/vpc:vpc-1",
            ),
            (StormSubject::Key("arn".into()).to_string(), "key:arn"),
            (
                StormSubject::RouteTable("rtb-1".into()).to_string(),
                "route-table:rtb-1",
            ),
            (StormSubject::Vpc("vpc-1".into()).to_string(), "vpc:vpc-1"),
            (StormSubject::Role("node".into()).to_string(), "role:node"),
            (
                StormSubject::AccessEntry {
                    cluster: "c".into(),
                    principal: "arn:role".into(),
                }
                .to_string(),
                "access-entry:c/arn:role",
            ),
            (
                BreakerScope::Nodegroup(key.clone()).to_string(),
                "nodegroup:123456789012/us-west-2/eks-workshop/ng",
            ),
            (BreakerScope::Vpc("vpc-1".into()).to_string(), "vpc:vpc-1"),
            (BreakerScope::Key("k".into()).to_string(), "key:k"),
            (
                BreakerScope::Account("123456789012".into()).to_string(),
                "account:123456789012",
            ),
            (BreakerScope::Global.to_string(), "global"),
        ];
        for (typed, text) in cases {
            assert_eq!(typed, text);
        }
    }

    #[test]
    fn a_stored_scope_has_its_kind_and_wider_scopes_tolerate_more() {
        for scope in [
            BreakerScope::Nodegroup(key()),
            BreakerScope::Vpc("vpc-1".into()),
            BreakerScope::Key("k".into()),
            BreakerScope::Account("1".into()),
            BreakerScope::Global,
        ] {
            assert_eq!(ScopeKind::of_stored(&scope.to_string()), Some(scope.kind()));
        }
        assert_eq!(ScopeKind::of_stored("moon:1"), None);
        assert_eq!(BreakerScope::threshold(ScopeKind::Vpc, 3), 3);
        assert_eq!(BreakerScope::threshold(ScopeKind::Account, 3), 6);
        assert_eq!(BreakerScope::threshold(ScopeKind::Global, 3), 12);
        assert_eq!(
            BreakerScope::threshold(ScopeKind::Global, u32::MAX),
            u32::MAX
        );
    }
}
