//! The mutation rows this process reserved, by the id handed out for them, so that a
//! reservation the guard turns down can be deleted again in the same run. Only the newest
//! [`KEPT`] are kept: a reservation is released, if at all, within the step that made it, and an
//! unbounded map would grow by one entry per mutation for the life of the daemon.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use super::Item;

/// Far more than the steps that can be in flight at once.
const KEPT: usize = 1024;

pub(super) struct Reservations {
    rows: Mutex<BTreeMap<i64, Vec<Item>>>,
    next: AtomicI64,
}

impl Reservations {
    pub(super) fn new() -> Self {
        Self {
            rows: Mutex::new(BTreeMap::new()),
            next: AtomicI64::new(1),
        }
    }

    /// Keeps the keys of a reserved mutation and returns its id.
    pub(super) fn reserve(&self, keys: Vec<Item>) -> i64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.insert(id, keys);
        while rows.len() > KEPT {
            rows.pop_first();
        }
        id
    }

    /// The keys of a reservation, to delete them; none for an unknown or forgotten id.
    pub(super) fn keys(&self, id: i64) -> Vec<Item> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.get(&id).cloned().unwrap_or_default()
    }

    /// Forgets reservations whose release was committed.
    pub(super) fn forget(&self, ids: &[i64]) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            rows.remove(id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: i64) -> Vec<Item> {
        let mut item = Item::new();
        item.insert(
            "pk".into(),
            aws_sdk_dynamodb::types::AttributeValue::S(format!("MUT#{n}")),
        );
        vec![item]
    }

    #[test]
    fn a_reservation_is_released_once_and_the_map_stays_bounded() {
        let reservations = Reservations::new();
        let first = reservations.reserve(item(0));
        assert_eq!(reservations.keys(first), item(0));
        reservations.forget(&[first]);
        assert!(reservations.keys(first).is_empty());
        for n in 0..3 * KEPT as i64 {
            reservations.reserve(item(n));
        }
        assert_eq!(reservations.len(), KEPT, "only the newest are kept");
        let newest = reservations.reserve(item(-1));
        assert_eq!(reservations.keys(newest), item(-1));
        assert!(
            reservations.keys(first + 1).is_empty(),
            "the oldest went first"
        );
    }
}
