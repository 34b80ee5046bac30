//! In-process state shared by concurrent handlers: one lock per nodegroup, so that at most one
//! incident per nodegroup is worked at a time, and a short-lived cache of healthy route verdicts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

use crate::audit::NodegroupKey;

#[derive(Default)]
pub struct NodegroupLocks {
    locks: Mutex<HashMap<NodegroupKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl NodegroupLocks {
    pub async fn lock(&self, key: &NodegroupKey) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Forget locks nobody holds or waits for, so the map stays as small as the work in flight.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            locks.entry(key.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// Healthy verdicts for subnets, keyed by the route table that decided them, so that a burst of
/// launches into one subnet is checked once.
pub struct RouteVerdicts {
    ttl: Duration,
    healthy: Mutex<HashMap<String, (String, Instant)>>,
}

impl RouteVerdicts {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            healthy: Mutex::new(HashMap::new()),
        }
    }

    /// The route table whose healthy verdict still covers `subnet`, if any.
    pub fn healthy(&self, subnet: &str) -> Option<String> {
        let mut healthy = self.healthy.lock().unwrap_or_else(|p| p.into_inner());
        match healthy.get(subnet) {
            Some((table, at)) if at.elapsed() < self.ttl => Some(table.clone()),
            Some(_) => {
                healthy.remove(subnet);
                None
            }
            None => None,
        }
    }

    pub fn remember_healthy(&self, subnet: &str, route_table: &str) {
        if self.ttl.is_zero() {
            return;
        }
        self.healthy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                subnet.to_string(),
                (route_table.to_string(), Instant::now()),
            );
    }

    /// Drops every verdict that rests on `route_table` (it was just changed).
    pub fn forget_table(&self, route_table: &str) {
        self.healthy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (table, _)| table != route_table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(nodegroup: &str) -> NodegroupKey {
        NodegroupKey {
            account: "1".into(),
            region: "r".into(),
            cluster: "c".into(),
            nodegroup: nodegroup.into(),
        }
    }

    #[tokio::test]
    async fn one_nodegroup_is_worked_by_one_handler_at_a_time() {
        let locks = NodegroupLocks::default();
        let held = locks.lock(&key("a")).await;
        let other = tokio::time::timeout(Duration::from_millis(20), locks.lock(&key("b"))).await;
        assert!(other.is_ok(), "another nodegroup is not blocked");
        let same = tokio::time::timeout(Duration::from_millis(20), locks.lock(&key("a"))).await;
        assert!(same.is_err(), "the same nodegroup waits");
        drop(held);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), locks.lock(&key("a")))
                .await
                .is_ok()
        );
    }

    #[test]
    fn verdicts_expire_and_are_forgotten_when_their_table_changes() {
        let verdicts = RouteVerdicts::new(Duration::from_secs(60));
        verdicts.remember_healthy("subnet-1", "rtb-1");
        verdicts.remember_healthy("subnet-2", "rtb-1");
        verdicts.remember_healthy("subnet-3", "rtb-3");
        assert_eq!(verdicts.healthy("subnet-1").as_deref(), Some("rtb-1"));
        verdicts.forget_table("rtb-1");
        assert_eq!(verdicts.healthy("subnet-1"), None);
        assert_eq!(verdicts.healthy("subnet-2"), None);
        assert_eq!(verdicts.healthy("subnet-3").as_deref(), Some("rtb-3"));
        let expired = RouteVerdicts::new(Duration::ZERO);
        expired.remember_healthy("subnet-1", "rtb-1");
        assert_eq!(expired.healthy("subnet-1"), None);
    }
}
