//! Who works what: a lock per nodegroup (and per shared resource a fix changes) that holds across
//! replicas. In-process handlers queue on a local mutex; across processes the holder takes a lease
//! in the shared store, renews it while it works, and releases it when done. A replica that dies
//! holding a lease loses it when the lease expires.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::state::KeyedLocks;
use crate::audit::AuditStore;
use crate::core::ids::LockKey;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub struct Leases {
    local: KeyedLocks,
    store: AuditStore,
    holder: String,
    ttl: Duration,
    /// Every hold gets a token of its own, so that releasing one never frees a later hold of the
    /// same process.
    holds: std::sync::atomic::AtomicU64,
}

impl Leases {
    pub fn new(store: AuditStore, ttl: Duration) -> Leases {
        let holder = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "nodemedic".into()),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Leases {
            local: KeyedLocks::default(),
            store,
            holder,
            ttl,
            holds: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Waits until this process holds `key`, in-process first, then across replicas.
    pub async fn lock(&self, key: &LockKey<'_>) -> LeaseGuard {
        // The store and the in-process locks key on the lock's text.
        let key = key.to_string();
        let key = key.as_str();
        let local = self.local.lock(key).await;
        let hold = self
            .holds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let holder = format!("{}/{hold}", self.holder);
        let mut wait = Duration::from_millis(100);
        loop {
            match self.try_acquire(key, &holder).await {
                Ok(true) => break,
                Ok(false) => debug!(key, "held by another replica; waiting"),
                // Without the store nothing can be recorded either; the caller's writes fail next.
                Err(error) => warn!(key, %error, "lease could not be taken; trying again"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.ttl / 4).max(Duration::from_millis(100));
        }
        let renewing = CancellationToken::new();
        tokio::spawn(renew(
            self.store.clone(),
            key.to_string(),
            holder.clone(),
            self.ttl,
            renewing.clone(),
        ));
        LeaseGuard {
            local: Some(local),
            renewing,
            store: self.store.clone(),
            key: key.to_string(),
            holder,
        }
    }

    async fn try_acquire(&self, key: &str, holder: &str) -> Result<bool, crate::audit::AuditError> {
        let ttl = self.ttl.as_millis() as i64;
        self.store
            .write(|tx| {
                let now = now_ms();
                tx.acquire_lease(key, holder, now, now + ttl)
            })
            .await
    }
}

/// Renews the lease a third of the way into each term until the guard is dropped.
async fn renew(
    store: AuditStore,
    key: String,
    holder: String,
    ttl: Duration,
    done: CancellationToken,
) {
    let every = ttl / 3;
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let ttl_ms = ttl.as_millis() as i64;
        let renewed = store
            .write(|tx| {
                let now = now_ms();
                tx.acquire_lease(&key, &holder, now, now + ttl_ms)
            })
            .await;
        match renewed {
            Ok(true) => {}
            Ok(false) => warn!(%key, "lease lost to another replica while working"),
            Err(error) => warn!(%key, %error, "lease could not be renewed"),
        }
    }
}

/// Held while a handler works; dropping it releases the lease.
pub struct LeaseGuard {
    /// Handed to the next in-process waiter only once the lease is released in the store: freed
    /// earlier, that waiter finds the row still held, takes it for another replica's and waits
    /// out a retry interval (100 ms) although nobody holds it.
    local: Option<OwnedMutexGuard<()>>,
    renewing: CancellationToken,
    store: AuditStore,
    key: String,
    holder: String,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renewing.cancel();
        let (store, key, holder, local) = (
            self.store.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.holder),
            self.local.take(),
        );
        // Off the runtime's threads; if the process dies first, the lease simply expires.
        tokio::task::spawn_blocking(move || {
            if let Err(error) = store.write_blocking(|tx| tx.release_lease(&key, &holder)) {
                warn!(%key, %error, "lease could not be released; it expires");
            }
            drop(local);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: LockKey<'static> = LockKey::Subject {
        account: "111122223333",
        region: "us-west-2",
        subject: "subnet:subnet-a",
    };

    #[tokio::test]
    async fn a_second_replica_waits_until_the_first_releases() {
        let dir = std::env::temp_dir().join(format!("nodemedic-leases-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.db");
        let first = Leases::new(AuditStore::open(&path).unwrap(), Duration::from_secs(5));
        let second = Leases::new(AuditStore::open(&path).unwrap(), Duration::from_secs(5));
        let held = first.lock(&KEY).await;
        let waiting = tokio::spawn(async move {
            let _guard = second.lock(&KEY).await;
            std::time::Instant::now()
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!waiting.is_finished(), "the other replica holds the lease");
        let released = std::time::Instant::now();
        drop(held);
        let acquired = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("acquired after the release")
            .unwrap();
        assert!(acquired >= released);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_next_holder_in_this_process_gets_in_only_once_the_lease_is_released() {
        let dir = std::env::temp_dir().join(format!("nodemedic-leases-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.db");
        let leases = Leases::new(AuditStore::open(&path).unwrap(), Duration::from_secs(5));
        let key = KEY.to_string();
        let held = leases.lock(&KEY).await;
        // Another connection keeps the store's write lock, so the release has to wait for it.
        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        drop(held);
        assert!(
            !leases.local.is_free(&key),
            "the in-process lock is kept while the lease is still in the store"
        );
        blocker.execute_batch("COMMIT").unwrap();
        let _next = tokio::time::timeout(Duration::from_secs(5), leases.lock(&KEY))
            .await
            .expect("taken once the release went through");
        let someone_else = leases
            .store
            .write_blocking(|tx| {
                tx.acquire_lease(&key, "another replica", now_ms(), now_ms() + 5000)
            })
            .unwrap();
        assert!(!someone_else, "the lease is held again, by the next holder");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_lease_whose_holder_died_expires() {
        let dir = std::env::temp_dir().join(format!("nodemedic-leases-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.db");
        let store = AuditStore::open(&path).unwrap();
        // A holder that took the lease and vanished without renewing or releasing it.
        store
            .write_blocking(|tx| {
                tx.acquire_lease(&KEY.to_string(), "dead", now_ms(), now_ms() + 300)
            })
            .unwrap();
        let survivor = Leases::new(store, Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(5), survivor.lock(&KEY))
            .await
            .expect("taken over once expired");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
