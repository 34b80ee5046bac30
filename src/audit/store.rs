//! The audit store: an append-only, hash-chained audit trail plus the incident index and the
//! guard's shared state, behind one façade over a backend ([`SqliteBackend`] for one replica).
//! Every write is one transaction that appends records and updates the index together,
//! committed before it returns: a message is deleted only after this returns.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::core::mac_key::MacKey;

use super::backend::{Reads, Writes};
use super::dynamo::DynamoBackend;
use super::sqlite::SqliteBackend;
use super::tx::Tx;
use super::*;

/// How often a transaction is redone after losing a race with another writer (about 4 s of
/// backoff in all) before the conflict is reported.
const MAX_CONFLICT_RETRIES: u32 = 10;

pub(super) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 over parts, each followed by a NUL so that parts cannot run together.
fn hash_parts(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize())
}

/// The hash of one record (version 1), over its predecessor's hash and its own content.
pub(super) fn chain_hash(
    prev_hash: &str,
    at: &str,
    incident_id: Option<&str>,
    event_id: Option<&str>,
    kind: &str,
    body: &str,
) -> String {
    hash_parts(&[
        prev_hash,
        at,
        incident_id.unwrap_or(""),
        event_id.unwrap_or(""),
        kind,
        body,
    ])
}

/// The hash of a record of version 2: also over its chain and its sequence number, so that a
/// record cannot be moved or renumbered without breaking the chain.
#[allow(clippy::too_many_arguments)]
pub(super) fn chain_hash_v2(
    chain: &str,
    seq: i64,
    prev_hash: &str,
    at: &str,
    incident_id: Option<&str>,
    event_id: Option<&str>,
    kind: &str,
    body: &str,
) -> String {
    hash_parts(&[
        "nodemedic-record-v2",
        chain,
        &seq.to_string(),
        prev_hash,
        at,
        incident_id.unwrap_or(""),
        event_id.unwrap_or(""),
        kind,
        body,
    ])
}

/// The signature of a chain's head: without the key, a rewritten file cannot carry one.
pub(super) fn head_mac(key: &MacKey, chain: &str, seq: i64, hash: &str, at: &str) -> String {
    key.sign(&["nodemedic-head-v1", chain, &seq.to_string(), hash, at])
}

/// A chain's head and what its signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub head: super::backend::ChainHead,
    pub state: AnchorState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorState {
    /// Signed with the key given.
    Signed,
    /// No signature: no key was set when the head last moved.
    Unsigned,
    /// Signed, but no key was given to check it.
    NoKey,
    /// The signature is not the key's: the head (and what it covers) was rewritten.
    Mismatch,
}

enum Backend {
    Sqlite(SqliteBackend),
    Dynamo(DynamoBackend),
}

#[derive(Clone)]
pub struct AuditStore {
    backend: Arc<Backend>,
}

impl std::fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.backend.as_ref() {
            Backend::Sqlite(sqlite) => f
                .debug_struct("AuditStore")
                .field("sqlite", &sqlite.path())
                .finish(),
            Backend::Dynamo(dynamo) => f
                .debug_struct("AuditStore")
                .field("dynamodb", &dynamo.tables())
                .finish(),
        }
    }
}

impl AuditStore {
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        Self::open_with_journal(path, "wal")
    }

    /// Opens an SQLite store with a journal mode: `wal` (the default), or `delete` for a database
    /// on a network filesystem (EFS, NFS), where WAL's shared memory index is not safe.
    pub fn open_with_journal(path: &Path, journal_mode: &str) -> Result<Self, AuditError> {
        Ok(Self {
            backend: Arc::new(Backend::Sqlite(SqliteBackend::open(path, journal_mode)?)),
        })
    }

    /// A DynamoDB store on two tables (see [`super::dynamo`]); call within a Tokio runtime,
    /// which then runs its DynamoDB calls.
    pub fn open_dynamo(
        client: aws_sdk_dynamodb::Client,
        state_table: &str,
        audit_table: &str,
        event_ttl: std::time::Duration,
    ) -> Result<Self, AuditError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| AuditError::Backend(format!("no async runtime: {e}")))?;
        Ok(Self {
            backend: Arc::new(Backend::Dynamo(DynamoBackend::new(
                client,
                state_table,
                audit_table,
                event_ttl,
                runtime,
            ))),
        })
    }

    /// Signs the chain's head with `key` after every write (SQLite; DynamoDB's heads are items
    /// only nodemedic's role may write, and are not signed).
    pub fn anchor_with(&self, key: MacKey) {
        if let Backend::Sqlite(sqlite) = self.backend.as_ref() {
            sqlite.anchor_with(key);
        }
    }

    /// What the chains' heads say against `key`: signed and by whom, how old.
    pub async fn anchors(&self, key: Option<&MacKey>) -> Result<Vec<Anchor>, AuditError> {
        let heads = self.read(|r| r.chain_heads()).await?;
        Ok(heads
            .into_iter()
            .map(|head| {
                let state = match (&head.mac, key) {
                    (None, _) => AnchorState::Unsigned,
                    (Some(_), None) => AnchorState::NoKey,
                    (Some(mac), Some(key)) => {
                        let expected = head_mac(key, &head.chain, head.seq, &head.hash, &head.at);
                        // Compared as MACs are: through the key, in constant time.
                        if key.verifies(&[mac.as_str()], &key.sign(&[expected.as_str()])) {
                            AnchorState::Signed
                        } else {
                            AnchorState::Mismatch
                        }
                    }
                };
                Anchor { head, state }
            })
            .collect())
    }

    /// Where the store lives, for people.
    pub fn location(&self) -> String {
        match self.backend.as_ref() {
            Backend::Sqlite(sqlite) => sqlite.path().display().to_string(),
            Backend::Dynamo(dynamo) => {
                let (state, audit) = dynamo.tables();
                format!("dynamodb:{state},{audit}")
            }
        }
    }

    /// Runs `work` in one transaction and commits it. A backend may run `work` again when a
    /// concurrent writer got in first, so it must not have effects outside the transaction.
    pub fn write_blocking<T>(
        &self,
        work: impl Fn(&Tx) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        let work = |writes: &dyn Writes| work(&Tx::new(writes));
        let mut attempt = 0u32;
        loop {
            let result = match self.backend.as_ref() {
                Backend::Sqlite(sqlite) => sqlite.write(&work),
                Backend::Dynamo(dynamo) => dynamo.write(&work),
            };
            match result {
                // Another writer changed what this transaction read: read again and redo, after
                // an exponential backoff with full jitter, so that writers that collided once
                // spread out instead of colliding again.
                Err(AuditError::Conflict) if attempt < MAX_CONFLICT_RETRIES => {
                    attempt += 1;
                    let ceiling_ms = (10u64 << attempt.min(7)).min(1_000);
                    let jitter = (uuid::Uuid::new_v4().as_u128() as u64) % ceiling_ms;
                    std::thread::sleep(std::time::Duration::from_millis(5 + jitter));
                }
                result => return result,
            }
        }
    }

    pub fn read_blocking<T>(
        &self,
        work: impl Fn(&dyn Reads) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        match self.backend.as_ref() {
            Backend::Sqlite(sqlite) => sqlite.read(&work),
            Backend::Dynamo(dynamo) => dynamo.read(&work),
        }
    }

    /// [`write_blocking`](Self::write_blocking) from async code. On the multi-threaded runtime
    /// the worker hands its other tasks to a new worker for the duration
    /// ([`tokio::task::block_in_place`]), so `work` may borrow from the caller; on a
    /// current-thread runtime (unit tests, one-shot commands) it runs in place.
    pub async fn write<T>(
        &self,
        work: impl Fn(&Tx) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        let _commit = tracing::info_span!("store_write").entered();
        off_the_runtime(|| self.write_blocking(work))
    }

    /// [`read_blocking`](Self::read_blocking) from async code, as [`write`](Self::write) runs.
    pub async fn read<T>(
        &self,
        work: impl Fn(&dyn Reads) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        off_the_runtime(|| self.read_blocking(work))
    }
}

/// Runs blocking store work without stalling the other tasks of a multi-threaded runtime.
fn off_the_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use serde_json::json;

    fn store() -> (AuditStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("nodemedic-audit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.db");
        (AuditStore::open(&path).unwrap(), dir)
    }

    fn key() -> NodegroupKey {
        NodegroupKey {
            account: "123456789012".into(),
            region: "us-west-2".into(),
            cluster: "eks-workshop".into(),
            nodegroup: "ng-1".into(),
        }
    }

    #[test]
    fn records_chain_and_verify() {
        let (store, dir) = store();
        store
            .write_blocking(|tx| {
                tx.open_incident("inc-1", &key(), "unknown", None, "dry-run", "s")?;
                tx.append(
                    Some("inc-1"),
                    Some("e1"),
                    RecordKind::EventReceived,
                    &json!({"a": 1}),
                )?;
                tx.append(
                    Some("inc-1"),
                    None,
                    RecordKind::Outcome,
                    &json!({"outcome": "planned"}),
                )?;
                tx.append(None, Some("e2"), RecordKind::EventIgnored, &json!({}))?;
                Ok(())
            })
            .unwrap();
        let verified = store.read_blocking(|r| r.verify_chain()).unwrap();
        assert_eq!(verified, Ok(3));
        let records = store.read_blocking(|c| c.records("inc-1")).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].prev_hash, records[0].hash);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_run_died_when_a_step_follows_the_last_outcome_whatever_came_between() {
        let (store, dir) = store();
        let died = |store: &AuditStore| store.read_blocking(|c| c.run_died("inc-1")).unwrap();
        let append = |kind: RecordKind| {
            store
                .write_blocking(|tx| tx.append(Some("inc-1"), None, kind, &json!({})))
                .unwrap()
        };
        assert!(!died(&store), "no records");
        append(RecordKind::Plan);
        append(RecordKind::StepIntent);
        assert!(died(&store), "an intent and no outcome");
        append(RecordKind::StepResult);
        append(RecordKind::Outcome);
        assert!(!died(&store), "concluded");
        for _ in 0..50 {
            append(RecordKind::EventSuperseded);
        }
        assert!(!died(&store), "events joining a concluded incident");
        append(RecordKind::StepResult);
        assert!(died(&store), "a result after the outcome");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let (store, dir) = store();
        let result: Result<(), AuditError> = store.write_blocking(|tx| {
            tx.append(None, Some("e1"), RecordKind::EventIgnored, &json!({}))?;
            tx.mark_event("e1", None, "ignored", None)?;
            Err(AuditError::NoSuchIncident("forced".into()))
        });
        assert!(result.is_err());
        assert_eq!(store.read_blocking(|c| c.event_seen("e1")).unwrap(), None);
        assert_eq!(store.read_blocking(|r| r.verify_chain()).unwrap(), Ok(0));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_index_lists_incidents_with_their_steps_and_events() {
        let (store, dir) = store();
        store
            .write_blocking(|tx| {
                tx.open_incident(
                    "inc-1",
                    &key(),
                    "subnet_no_egress_route",
                    None,
                    "auto",
                    "no route",
                )?;
                tx.mark_event("e1", Some("m1"), "incident", Some("inc-1"))?;
                tx.mark_event("e1", Some("m2"), "duplicate", Some("inc-1"))?;
                tx.set_plan(
                    "inc-1",
                    "plan-1",
                    &[
                        ("add_nat_route".into(), "planned".into(), String::new()),
                        ("cycle_nodegroup".into(), "planned".into(), String::new()),
                    ],
                )?;
                tx.set_step("inc-1", 0, "applied", "route added")?;
                tx.set_outcome("inc-1", "auto", Outcome::Failed)
            })
            .unwrap();
        let listed = store.read_blocking(|c| c.list(10)).unwrap();
        assert_eq!(listed.len(), 1);
        let incident = &listed[0];
        assert_eq!(incident.events, 1, "the first disposition of an event wins");
        assert_eq!(incident.outcome, Outcome::Failed);
        assert_eq!(incident.plan_id.as_deref(), Some("plan-1"));
        assert_eq!(incident.actions[0].status, "applied");
        assert_eq!(incident.actions[1].status, "planned");
        assert_eq!(
            store
                .read_blocking(|c| c.event_seen("e1"))
                .unwrap()
                .unwrap()
                .disposition,
            "incident"
        );
        let found = store
            .read_blocking(|c| c.incidents_for(&key(), "subnet_no_egress_route"))
            .unwrap();
        assert_eq!(found.len(), 1);
        let fixed = store.read_blocking(|c| c.last_fix_applied(&key())).unwrap();
        assert_eq!(fixed.map(|(id, _)| id), Some("inc-1".to_string()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
