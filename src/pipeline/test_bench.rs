//! A test bench for the pipeline: a real pipeline on a temporary SQLite store, and one in-memory
//! account behind the [`Accounts`] seam, whose evidence is what collection would have given and
//! whose actuator is `act::fake`'s world. No AWS call is made.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{Account, Accounts, Pipeline, PipelineConfig};
use crate::act::fake::FakeWorld;
use crate::audit::{AuditStore, Outcome, Record};
use crate::aws::collect::{CollectError, Scope};
use crate::aws::resolve::Resolution;
use crate::aws::{AccountRefused, AwsError, AwsFailure};
use crate::core::evidence::fixtures::GROUP;
use crate::core::evidence::{CallLog, Evidence, InstanceFacts, Target};
use crate::core::guard::Mode;
use crate::core::journal::{Entry, OutcomeEntry};
use crate::core::trigger::Trigger;
use crate::intake::{Disposition, Inbound};
use crate::settings::{Overrides, Settings};

/// What an account's collection gives this time.
pub(super) enum Collected {
    Evidence(Box<Evidence>),
    Gone,
    Throttled,
}

/// One in-memory account (every account id but the refused ones is served by it).
pub(super) struct FakeSource {
    pub(super) world: FakeWorld,
    /// Auto Scaling group name → the nodegroup it belongs to.
    groups: HashMap<String, Target>,
    refused: HashSet<String>,
    collected: Mutex<Collected>,
    /// The scope of every collection asked for, in order.
    pub(super) scopes: Mutex<Vec<Scope>>,
    /// How many times a group was resolved (DescribeAutoScalingGroups).
    resolved: Mutex<usize>,
    /// Every instance read alone, in order.
    pub(super) instances_read: Mutex<Vec<String>>,
    /// The security groups the next instances read alone have, when not the collected ones'.
    instance_groups: Mutex<Option<Vec<String>>>,
}

#[derive(Clone)]
pub(super) struct FakeAccounts(pub(super) Arc<FakeSource>);

impl FakeAccounts {
    fn new(world: FakeWorld, evidence: Evidence) -> Self {
        let target = Target {
            cluster: evidence.nodegroup.cluster.clone(),
            nodegroup: evidence.nodegroup.name.clone(),
            group: None,
        };
        Self(Arc::new(FakeSource {
            world,
            groups: HashMap::from([(GROUP.to_string(), target)]),
            refused: HashSet::from(["999999999999".to_string()]),
            collected: Mutex::new(Collected::Evidence(Box::new(evidence))),
            scopes: Mutex::default(),
            resolved: Mutex::default(),
            instances_read: Mutex::default(),
            instance_groups: Mutex::default(),
        }))
    }

    pub(super) fn collect_next(&self, collected: Collected) {
        *self.0.collected.lock().unwrap() = collected;
    }

    /// Instances read from now on have `groups` as their security groups.
    pub(super) fn instances_in_groups(&self, groups: &[&str]) {
        *self.0.instance_groups.lock().unwrap() =
            Some(groups.iter().map(|g| g.to_string()).collect());
    }

    pub(super) fn resolutions(&self) -> usize {
        *self.0.resolved.lock().unwrap()
    }

    pub(super) fn collections(&self) -> usize {
        self.0.scopes.lock().unwrap().len()
    }
}

impl Accounts for FakeAccounts {
    type Account = FakeAccounts;

    async fn account(&self, account: &str, _region: &str) -> Result<Self, AccountRefused> {
        if self.0.refused.contains(account) {
            return Err(AccountRefused {
                account: account.into(),
                reason: "not in accounts.members".into(),
            });
        }
        Ok(self.clone())
    }
}

impl Account for FakeAccounts {
    type Actuator = FakeWorld;

    async fn resolve(&self, asg_name: &str, calls: &mut CallLog) -> Result<Resolution, AwsError> {
        calls.record("autoscaling:DescribeAutoScalingGroups");
        *self.0.resolved.lock().unwrap() += 1;
        Ok(match self.0.groups.get(asg_name) {
            Some(target) => Resolution::Nodegroup(target.clone()),
            None => Resolution::NotOurs {
                reason: format!("Auto Scaling group {asg_name} has no eks:nodegroup-name tag"),
            },
        })
    }

    async fn collect(
        &self,
        trigger: &Trigger,
        target: Target,
        scope: Scope,
        _calls: CallLog,
    ) -> Result<Evidence, CollectError> {
        self.0.scopes.lock().unwrap().push(scope);
        match &*self.0.collected.lock().unwrap() {
            Collected::Evidence(evidence) => {
                let mut evidence = (**evidence).clone();
                evidence.trigger = trigger.clone();
                Ok(evidence)
            }
            Collected::Gone => Err(CollectError::NodegroupGone {
                cluster: target.cluster,
                nodegroup: target.nodegroup,
            }),
            Collected::Throttled => Err(CollectError::Aws(AwsError {
                operation: "ec2:DescribeSubnets",
                code: "Throttling".into(),
                message: "Rate exceeded".into(),
                failure: AwsFailure::Service,
            })),
        }
    }

    async fn instance(
        &self,
        instance_id: &str,
        calls: &mut CallLog,
    ) -> Result<InstanceFacts, AwsError> {
        calls.record("ec2:DescribeInstances");
        self.0
            .instances_read
            .lock()
            .unwrap()
            .push(instance_id.to_string());
        let collected = match &*self.0.collected.lock().unwrap() {
            Collected::Evidence(evidence) => evidence.instance.clone(),
            _ => None,
        };
        let mut instance = collected.unwrap_or_else(|| InstanceFacts {
            id: String::new(),
            state: "missing".into(),
            subnet_id: None,
            public_ip: None,
            security_group_ids: Vec::new(),
            launched_at: None,
            availability_zone: None,
            private_dns_name: None,
        });
        instance.id = instance_id.to_string();
        if let Some(groups) = &*self.0.instance_groups.lock().unwrap() {
            instance.security_group_ids = groups.clone();
        }
        Ok(instance)
    }

    fn actuator(&self) -> &FakeWorld {
        &self.0.world
    }
}

pub(super) struct Bench {
    pub(super) pipeline: Pipeline<FakeAccounts>,
    pub(super) accounts: FakeAccounts,
    pub(super) store: AuditStore,
    dir: std::path::PathBuf,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Bench {
    pub(super) fn new(mode: Mode, world: FakeWorld, evidence: Evidence) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "nodemedic-pipeline-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = AuditStore::open(&dir.join("audit.db")).unwrap();
        let settings =
            Settings::load_with_env(&Overrides::default(), Some(HashMap::new())).unwrap();
        let mut config = PipelineConfig::from_settings(&settings);
        config.policy.mode = mode;
        config.verify.poll_secs = 0.01;
        config.remediation.nodegroup_poll_secs = 0.01;
        let accounts = FakeAccounts::new(world, evidence);
        Bench {
            pipeline: Pipeline::new(config, store.clone(), accounts.clone()),
            accounts,
            store,
            dir,
        }
    }

    /// The account's in-memory world, where fixes land.
    pub(super) fn world(&self) -> &FakeWorld {
        &self.accounts.0.world
    }

    pub(super) async fn deliver(&self, body: String) -> Disposition {
        let message = Inbound {
            message_id: Some(uuid::Uuid::new_v4().to_string()),
            body,
            receive_count: 1,
        };
        self.pipeline.handle(&message).await
    }

    pub(super) fn records(&self) -> Vec<Record> {
        self.store.read_blocking(|c| c.all_records(0)).unwrap()
    }

    pub(super) fn kinds_of_event(&self, event_id: &str) -> Vec<String> {
        self.records()
            .into_iter()
            .filter(|r| r.event_id.as_deref() == Some(event_id))
            .map(|r| r.kind)
            .collect()
    }

    pub(super) fn outcomes(&self) -> Vec<Outcome> {
        self.records()
            .iter()
            .filter_map(|r| match Entry::decode(&r.kind, &r.body) {
                Ok(Entry::Outcome(OutcomeEntry::Concluded { outcome, .. })) => Some(outcome),
                _ => None,
            })
            .collect()
    }
}

/// Lab 000's world: the node subnet's table has no default route; the nodegroup relaunches
/// into an instance that comes InService.
pub(super) fn lab_000_world() -> FakeWorld {
    let world = FakeWorld::default()
        .with_table("rtb-new", Vec::new())
        .with_nodegroup("ACTIVE", 0, 1, 1);
    *world.in_service.lock().unwrap() = 1;
    world
}
