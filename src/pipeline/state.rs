//! In-process state shared by concurrent handlers: one lock per nodegroup (and per shared resource
//! a fix changes), so that at most one incident per nodegroup is worked at a time and a storm on
//! one key is fixed once, and a short-lived cache of healthy route verdicts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

use super::expiring::Expiring;

#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Forget locks nobody holds or waits for, so the map stays as small as the work in flight.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            locks.entry(key.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Whether nobody in this process holds `key` now.
    #[cfg(test)]
    pub fn is_free(&self, key: &str) -> bool {
        let locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.get(key).is_none_or(|lock| lock.try_lock().is_ok())
    }
}

/// Healthy verdicts for subnets, keyed by the route table that decided them, so that a burst of
/// launches into one subnet is checked once.
pub struct RouteVerdicts {
    /// Subnet id → the route table that decided it.
    healthy: Mutex<Expiring<String, String>>,
}

/// Far more subnets than the nodegroups of one daemon launch into.
const SUBNETS_KEPT: usize = 4096;

impl RouteVerdicts {
    pub fn new(ttl: Duration) -> Self {
        Self {
            healthy: Mutex::new(Expiring::new(ttl, SUBNETS_KEPT)),
        }
    }

    fn verdicts(&self) -> std::sync::MutexGuard<'_, Expiring<String, String>> {
        self.healthy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The route table whose healthy verdict still covers `subnet`, if any.
    pub fn healthy(&self, subnet: &str) -> Option<String> {
        self.verdicts().get(subnet).cloned()
    }

    pub fn remember_healthy(&self, subnet: &str, route_table: &str) {
        self.verdicts()
            .insert(subnet.to_string(), route_table.to_string(), Instant::now());
    }

    /// Drops every verdict that rests on `route_table` (it was just changed).
    pub fn forget_table(&self, route_table: &str) {
        self.verdicts().retain(|_, table| table != route_table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_is_held_by_one_handler_at_a_time() {
        let locks = KeyedLocks::default();
        let held = locks.lock("a").await;
        let other = tokio::time::timeout(Duration::from_millis(20), locks.lock("b")).await;
        assert!(other.is_ok(), "another key is not blocked");
        let same = tokio::time::timeout(Duration::from_millis(20), locks.lock("a")).await;
        assert!(same.is_err(), "the same key waits");
        drop(held);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), locks.lock("a"))
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
