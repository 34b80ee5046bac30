//! The evidence of a launch that went wrong, reused for the next launches of the same nodegroup
//! in the same situation for a short while (`remediation.failure_evidence_ttl_secs`), so that a
//! storm reads the nodegroup's configuration once instead of once per event (eight to thirteen
//! AWS calls each). Two situations qualify:
//! - a failed launch, by its status: it names no instance, so its evidence is the nodegroup's,
//!   the same for every failure with the same status;
//! - an instance launched into a subnet whose evidence was judged unhealthy: the subnet's network
//!   is the same for the next instance there, and the pipeline reads that instance afresh and
//!   reuses nothing when it differs from the first (subnet, security groups).
//!
//! Healthy launches are not kept here (a healthy route verdict covers them). Nothing is reused
//! across a fix: this process drops every entry when it applies a step, and the pipeline asks
//! the store, before reusing, whether any replica applied a fix to the nodegroup or to a shared
//! resource the evidence rests on since it was read.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::expiring::Expiring;
use crate::audit::NodegroupKey;
use crate::core::evidence::Evidence;
use crate::core::time::Timestamp;
use crate::core::trigger::{LaunchOutcome, Trigger};

/// Far more failing nodegroups and situations than one storm has; evidence is a few kilobytes.
const KEPT: usize = 128;

/// What makes two launches of a nodegroup alike enough to share evidence.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Situation {
    Failed {
        group: String,
        status_code: Option<String>,
        status_message: Option<String>,
    },
    /// An instance (the trigger names it) came up in `subnet`.
    Landed { subnet: String, instance: String },
}

impl Situation {
    /// The situation of a launch event; other events are not kept.
    pub fn of(trigger: &Trigger) -> Option<Situation> {
        let launch = trigger.launch()?;
        match launch.outcome {
            LaunchOutcome::Unsuccessful => Some(Situation::Failed {
                group: launch.asg_name.clone(),
                status_code: launch.status_code.clone(),
                status_message: launch.status_message.clone(),
            }),
            LaunchOutcome::Successful => Some(Situation::Landed {
                subnet: launch.subnet_id.clone()?,
                instance: launch.instance_id.clone()?,
            }),
        }
    }

    /// What entries are keyed by: for a landing, the subnet, not the instance.
    fn key(&self) -> Situation {
        match self {
            Situation::Landed { subnet, .. } => Situation::Landed {
                subnet: subnet.clone(),
                instance: String::new(),
            },
            failed => failed.clone(),
        }
    }
}

type FailureKey = (NodegroupKey, Situation);

fn key(nodegroup: &NodegroupKey, situation: &Situation) -> FailureKey {
    (nodegroup.clone(), situation.key())
}

/// Evidence read for an earlier failure, with what reusing it depends on.
#[derive(Debug, Clone)]
pub struct Reusable {
    pub evidence: Evidence,
    /// When it was read (taken before the first call).
    pub collected_at: Timestamp,
    /// The shared resources (storm subjects) its diagnosis rests on: a fix to any of them, by
    /// any replica, makes it stale.
    pub subjects: Vec<String>,
}

pub struct FailureEvidence {
    kept: Mutex<Kept>,
}

struct Kept {
    entries: Expiring<FailureKey, Reusable>,
    /// Moves on every `forget_all`, so that evidence whose reading began before a change is
    /// not kept when it arrives after it.
    generation: u64,
}

/// When a reading began: the moment, and the cache's generation then.
#[derive(Debug, Clone, Copy)]
pub struct ReadStart {
    at: Instant,
    generation: u64,
}

impl FailureEvidence {
    pub fn new(ttl: Duration) -> Self {
        Self {
            kept: Mutex::new(Kept {
                entries: Expiring::new(ttl, KEPT),
                generation: 0,
            }),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the start of a reading whose result may be kept.
    pub fn read_starts(&self) -> ReadStart {
        ReadStart {
            at: Instant::now(),
            generation: self.kept().generation,
        }
    }

    /// The evidence of an earlier launch of `nodegroup` in `situation`, read within the ttl.
    pub fn get(&self, nodegroup: &NodegroupKey, situation: &Situation) -> Option<Reusable> {
        self.kept().entries.get(&key(nodegroup, situation)).cloned()
    }

    /// Keeps `reusable` for the next launches in `situation`, unless this process changed
    /// something since its reading began.
    pub fn remember(
        &self,
        nodegroup: &NodegroupKey,
        situation: &Situation,
        reusable: Reusable,
        read: ReadStart,
    ) {
        let mut kept = self.kept();
        if read.generation == kept.generation {
            kept.entries
                .insert(key(nodegroup, situation), reusable, read.at);
        }
    }

    /// Drops the evidence of launches in `situation` (a fix made it stale, or it did not fit).
    pub fn forget(&self, nodegroup: &NodegroupKey, situation: &Situation) {
        self.kept().entries.remove(&key(nodegroup, situation));
    }

    /// Drops everything: this process just changed something in AWS.
    pub fn forget_all(&self) {
        let mut kept = self.kept();
        kept.generation = kept.generation.wrapping_add(1);
        kept.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodegroup(name: &str) -> NodegroupKey {
        NodegroupKey {
            account: "123456789012".into(),
            region: "us-west-2".into(),
            cluster: "eks-workshop".into(),
            nodegroup: name.into(),
        }
    }

    fn failure(message: &str) -> Situation {
        Situation::Failed {
            group: "eks-ng-1".into(),
            status_code: Some("Cancelled".into()),
            status_message: Some(message.into()),
        }
    }

    fn landed(subnet: &str, instance: &str) -> Situation {
        Situation::Landed {
            subnet: subnet.into(),
            instance: instance.into(),
        }
    }

    fn reusable() -> Reusable {
        Reusable {
            evidence: Evidence::lab_002(),
            collected_at: Timestamp::now(),
            subjects: vec![],
        }
    }

    #[test]
    fn the_same_failure_of_the_same_nodegroup_reuses_until_the_ttl_or_a_fix() {
        let kept = FailureEvidence::new(Duration::from_secs(30));
        let kms = failure("Client.InternalError: Client error on launch");
        kept.remember(&nodegroup("a"), &kms, reusable(), kept.read_starts());
        assert!(kept.get(&nodegroup("a"), &kms).is_some());
        assert!(
            kept.get(&nodegroup("b"), &kms).is_none(),
            "another nodegroup reads its own"
        );
        assert!(
            kept.get(&nodegroup("a"), &failure("InsufficientInstanceCapacity"))
                .is_none(),
            "another status is another failure"
        );
        kept.forget(&nodegroup("a"), &kms);
        assert!(kept.get(&nodegroup("a"), &kms).is_none());
        kept.remember(&nodegroup("a"), &kms, reusable(), kept.read_starts());
        kept.forget_all();
        assert!(kept.get(&nodegroup("a"), &kms).is_none(), "a fix drops all");

        let expiring = FailureEvidence::new(Duration::from_millis(20));
        expiring.remember(&nodegroup("a"), &kms, reusable(), expiring.read_starts());
        std::thread::sleep(Duration::from_millis(30));
        assert!(expiring.get(&nodegroup("a"), &kms).is_none(), "expired");
        let landings = FailureEvidence::new(Duration::from_secs(30));
        landings.remember(
            &nodegroup("a"),
            &landed("subnet-1", "i-1"),
            reusable(),
            landings.read_starts(),
        );
        assert!(
            landings
                .get(&nodegroup("a"), &landed("subnet-1", "i-2"))
                .is_some(),
            "the next instance in the subnet"
        );
        assert!(
            landings
                .get(&nodegroup("a"), &landed("subnet-2", "i-2"))
                .is_none()
        );

        let off = FailureEvidence::new(Duration::ZERO);
        off.remember(&nodegroup("a"), &kms, reusable(), off.read_starts());
        assert!(off.get(&nodegroup("a"), &kms).is_none(), "0 turns it off");
    }

    #[test]
    fn a_reading_begun_before_a_change_is_not_kept() {
        let kept = FailureEvidence::new(Duration::from_secs(30));
        let kms = failure("InvalidKMSKey");
        let before = kept.read_starts();
        kept.forget_all();
        kept.remember(&nodegroup("a"), &kms, reusable(), before);
        assert!(kept.get(&nodegroup("a"), &kms).is_none());
        kept.remember(&nodegroup("a"), &kms, reusable(), kept.read_starts());
        assert!(kept.get(&nodegroup("a"), &kms).is_some());
    }

    #[test]
    fn at_most_kept_failures_are_kept_the_oldest_dropped_first() {
        let kept = FailureEvidence::new(Duration::from_secs(30));
        let kms = failure("InvalidKMSKey");
        let first = kept.read_starts();
        kept.remember(&nodegroup("first"), &kms, reusable(), first);
        for n in 1..KEPT {
            let later = ReadStart {
                at: first.at + Duration::from_millis(1),
                ..first
            };
            kept.remember(&nodegroup(&format!("ng-{n}")), &kms, reusable(), later);
        }
        kept.remember(&nodegroup("last"), &kms, reusable(), kept.read_starts());
        assert!(kept.get(&nodegroup("first"), &kms).is_none());
        assert!(kept.get(&nodegroup("last"), &kms).is_some());
        assert!(kept.get(&nodegroup("ng-1"), &kms).is_some());
    }
}
