//! Auto Scaling group → nodegroup resolutions, so that a storm of launches of one group (and of
//! groups that are not a nodegroup's) resolves it once instead of once per message. A group's
//! EKS tags do not change while it exists; an entry expires after a while anyway, is dropped when
//! collection finds its nodegroup gone, and the map keeps at most [`KEPT`] groups. Only which
//! nodegroup a group belongs to is kept, never the group's instances: collection reads those
//! fresh.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::expiring::Expiring;
use crate::aws::resolve::Resolution;

/// Far more groups than one account and region have.
const KEPT: usize = 4096;

type GroupKey = (String, String, String);

pub struct Resolutions {
    known: Mutex<Expiring<GroupKey, Resolution>>,
}

fn key(account: &str, region: &str, group: &str) -> GroupKey {
    (account.into(), region.into(), group.into())
}

impl Resolutions {
    pub fn new(ttl: Duration) -> Self {
        Self {
            known: Mutex::new(Expiring::new(ttl, KEPT)),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Expiring<GroupKey, Resolution>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `group` resolved to within the last `ttl`, if anything.
    pub fn get(&self, account: &str, region: &str, group: &str) -> Option<Resolution> {
        self.known().get(&key(account, region, group)).cloned()
    }

    pub fn remember(&self, account: &str, region: &str, group: &str, resolution: &Resolution) {
        let kept = match resolution {
            Resolution::Nodegroup(target) => {
                let mut target = target.clone();
                target.group = None;
                Resolution::Nodegroup(target)
            }
            not_ours => not_ours.clone(),
        };
        self.known()
            .insert(key(account, region, group), kept, Instant::now());
    }

    /// Drops what `group` resolved to (its nodegroup is gone).
    pub fn forget(&self, account: &str, region: &str, group: &str) {
        self.known().remove(&key(account, region, group));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::evidence::{GroupFacts, Target};

    fn nodegroup() -> Resolution {
        Resolution::Nodegroup(Target {
            cluster: "c".into(),
            nodegroup: "ng".into(),
            group: Some(GroupFacts {
                name: "eks-ng".into(),
                service_linked_role_arn: None,
                instances: Vec::new(),
                launch_template: None,
            }),
        })
    }

    #[test]
    fn a_group_resolves_once_without_its_instances_until_forgotten_or_expired() {
        let resolutions = Resolutions::new(Duration::from_secs(600));
        assert_eq!(resolutions.get("1", "r", "eks-ng"), None);
        resolutions.remember("1", "r", "eks-ng", &nodegroup());
        let Some(Resolution::Nodegroup(target)) = resolutions.get("1", "r", "eks-ng") else {
            panic!("remembered");
        };
        assert_eq!((target.cluster.as_str(), target.group), ("c", None));
        assert_eq!(resolutions.get("2", "r", "eks-ng"), None, "per account");
        resolutions.forget("1", "r", "eks-ng");
        assert_eq!(resolutions.get("1", "r", "eks-ng"), None);
        let expiring = Resolutions::new(Duration::ZERO);
        expiring.remember("1", "r", "eks-ng", &nodegroup());
        assert_eq!(expiring.get("1", "r", "eks-ng"), None);
    }

    #[test]
    fn the_map_stays_bounded() {
        let resolutions = Resolutions::new(Duration::from_secs(600));
        let not_ours = Resolution::NotOurs {
            reason: "no eks:nodegroup-name tag".into(),
        };
        for n in 0..KEPT + 10 {
            resolutions.remember("1", "r", &format!("web-{n}"), &not_ours);
        }
        assert_eq!(resolutions.known().len(), KEPT);
        assert!(
            resolutions
                .get("1", "r", &format!("web-{}", KEPT + 9))
                .is_some()
        );
    }
}
