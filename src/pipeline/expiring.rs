//! A map whose entries expire after a ttl and which holds at most a bound of them: when full, it
//! drops the expired entries, then the oldest. The caches that spare a storm its AWS calls
//! (resolutions, route verdicts, failure evidence) are each one of these behind their owner's
//! lock, so that an owner can change its own state (a generation) in the same critical section.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

pub struct Expiring<K, V> {
    ttl: Duration,
    bound: usize,
    entries: HashMap<K, (V, Instant)>,
}

impl<K: Eq + Hash + Clone, V> Expiring<K, V> {
    /// A ttl of zero keeps nothing.
    pub fn new(ttl: Duration, bound: usize) -> Self {
        Self {
            ttl,
            bound,
            entries: HashMap::new(),
        }
    }

    /// The entry for `key` if it was stored within the ttl; an expired one is dropped.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let expired = self.entries.get(key)?.1.elapsed() >= self.ttl;
        if expired {
            self.entries.remove(key);
            return None;
        }
        self.entries.get(key).map(|(value, _)| value)
    }

    /// Stores `value` as of `at` (when what it says was read), making room if the map is full.
    pub fn insert(&mut self, key: K, value: V, at: Instant) {
        if self.ttl.is_zero() || self.bound == 0 {
            return;
        }
        if self.entries.len() >= self.bound && !self.entries.contains_key(&key) {
            let ttl = self.ttl;
            self.entries.retain(|_, (_, stored)| stored.elapsed() < ttl);
            if self.entries.len() >= self.bound
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, stored))| *stored)
                    .map(|(key, _)| key.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (value, at));
    }

    pub fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.remove(key);
    }

    /// Keeps only the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.entries.retain(|key, (value, _)| keep(key, value));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_for_the_ttl_counted_from_when_it_was_read() {
        let mut map = Expiring::new(Duration::from_secs(30), 8);
        map.insert("fresh", 1, Instant::now());
        assert_eq!(map.get("fresh"), Some(&1));
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(31))
            .expect("the clock has run for 31 s");
        map.insert("stale", 2, long_ago);
        assert_eq!(map.get("stale"), None, "read more than a ttl ago");
        assert_eq!(map.len(), 1, "and dropped on the way");
        map.remove("fresh");
        assert!(map.is_empty());
        let mut off = Expiring::new(Duration::ZERO, 8);
        off.insert("any", 1, Instant::now());
        assert!(off.is_empty(), "a ttl of zero keeps nothing");
    }

    #[test]
    fn a_full_map_drops_the_expired_then_the_oldest_and_never_for_an_update() {
        let now = Instant::now();
        let earlier = |secs| now.checked_sub(Duration::from_secs(secs)).expect("clock");
        let mut map = Expiring::new(Duration::from_secs(30), 3);
        map.insert("expired", 0, earlier(40));
        map.insert("oldest", 1, earlier(20));
        map.insert("newer", 2, earlier(10));
        map.insert("new", 3, now);
        assert_eq!(map.len(), 3);
        assert_eq!(map.get("expired"), None, "the expired went first");
        assert_eq!(map.get("oldest"), Some(&1));
        map.insert("newest", 4, now);
        assert_eq!(map.get("oldest"), None, "then the oldest");
        map.insert("newer", 5, now);
        assert_eq!(
            (
                map.get("newer").copied(),
                map.get("new").copied(),
                map.get("newest").copied()
            ),
            (Some(5), Some(3), Some(4)),
            "an update makes no room"
        );
        map.retain(|key, _| *key != "new");
        assert_eq!(map.get("new"), None);
        map.clear();
        assert!(map.is_empty());
    }
}
