//! Tampering with the audit trail as someone with write access to the store would: through the
//! real binary (`nodemedic audit verify`) for the SQLite file, on the store for DynamoDB.

use nodemedic::audit::{AuditStore, RecordKind};
use rusqlite::{Connection, params};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::World;

const ANCHOR_KEY: &str = "anchor-key-0123456789abcdefghijklmnop";

/// A store with a few records, written by the binary's own code with the anchor key set.
fn world_with_records(world: &World, records: usize) -> std::path::PathBuf {
    let path = world.audit_db();
    let store = AuditStore::open(&path).expect("store");
    store.anchor_with(nodemedic::core::mac_key::MacKey::new(
        ANCHOR_KEY.as_bytes().to_vec(),
    ));
    for n in 0..records {
        store
            .write_blocking(|tx| {
                tx.append(None, None, RecordKind::Evidence, &json!({ "n": n }))
                    .map(drop)
            })
            .expect("append");
    }
    path
}

/// `nodemedic audit verify` on the world's file: success, and what it printed.
fn verify(world: &World, key: Option<&str>) -> (bool, String) {
    let path = world.audit_db();
    let env: Vec<(&str, &str)> = key
        .map(|key| vec![("NODEMEDIC_AUDIT__ANCHOR_KEY", key)])
        .unwrap_or_default();
    let output = world.nodemedic(
        &[
            "audit",
            "verify",
            "--audit-db",
            path.to_str().expect("utf-8"),
        ],
        &env,
    );
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// What an attacker who knows the record format (it is open source) but not the key does.
fn writable(path: &std::path::Path) -> Connection {
    let connection = Connection::open(path).expect("open");
    connection
        .execute_batch(
            "DROP TRIGGER records_are_append_only_update; DROP TRIGGER records_are_append_only_delete;",
        )
        .expect("drop the triggers");
    connection
}

/// The record hash of version 2, as the store computes it.
fn v2_hash(
    seq: i64,
    prev: &str,
    at: &str,
    incident: Option<&str>,
    event: Option<&str>,
    kind: &str,
    body: &str,
) -> String {
    let mut hasher = Sha256::new();
    for part in [
        "nodemedic-record-v2",
        "global",
        &seq.to_string(),
        prev,
        at,
        incident.unwrap_or(""),
        event.unwrap_or(""),
        kind,
        body,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize())
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_newest_records_is_detected_even_with_the_head_moved_back() {
    let world = World::new(3).await;
    let path = world_with_records(&world, 600);
    assert!(
        verify(&world, Some(ANCHOR_KEY)).0,
        "{}",
        verify(&world, Some(ANCHOR_KEY)).1
    );
    let connection = writable(&path);
    connection
        .execute("DELETE FROM records WHERE seq > 100", [])
        .expect("delete the newest 500");
    let (ok, printed) = verify(&world, None);
    assert!(!ok && printed.contains("ends before its head"), "{printed}");
    // Move the head back too: the chain is then consistent, but its head's signature is not.
    connection
        .execute(
            "UPDATE chain_heads SET seq = 100, hash = (SELECT hash FROM records WHERE seq = 100)",
            [],
        )
        .expect("move the head");
    let (ok, printed) = verify(&world, Some(ANCHOR_KEY));
    assert!(
        !ok && printed.contains("SIGNATURE DOES NOT MATCH"),
        "{printed}"
    );
    // Deleting the head outright is as plain.
    connection
        .execute("DELETE FROM chain_heads", [])
        .expect("delete the head");
    let (ok, printed) = verify(&world, Some(ANCHOR_KEY));
    assert!(!ok && printed.contains("no head"), "{printed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_record_with_every_later_hash_recomputed_is_detected() {
    let world = World::new(3).await;
    let path = world_with_records(&world, 20);
    let connection = writable(&path);
    connection
        .execute("UPDATE records SET body = '{\"n\":999}' WHERE seq = 5", [])
        .expect("edit");
    // Recompute the chain from there on, and the head, exactly as the store would.
    type Row = (i64, String, Option<String>, Option<String>, String, String);
    let mut rows: Vec<Row> = connection
        .prepare("SELECT seq, at, incident_id, event_id, kind, body FROM records WHERE seq >= 5 ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev: String = connection
        .query_row("SELECT hash FROM records WHERE seq = 4", [], |r| r.get(0))
        .unwrap();
    for (seq, at, incident, event, kind, body) in rows.drain(..) {
        let hash = v2_hash(
            seq,
            &prev,
            &at,
            incident.as_deref(),
            event.as_deref(),
            &kind,
            &body,
        );
        connection
            .execute(
                "UPDATE records SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                params![prev, hash, seq],
            )
            .unwrap();
        prev = hash;
    }
    connection
        .execute("UPDATE chain_heads SET hash = ?1", params![prev])
        .unwrap();
    let (ok, printed) = verify(&world, None);
    assert!(ok, "without the key the rewrite is consistent: {printed}");
    assert!(
        printed.contains("unsigned") || printed.contains("no audit.anchor_key"),
        "{printed}"
    );
    let (ok, printed) = verify(&world, Some(ANCHOR_KEY));
    assert!(
        !ok && printed.contains("SIGNATURE DOES NOT MATCH"),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn control_rows_changed_behind_the_records_are_detected() {
    let world = World::new(3).await;
    let path = world.audit_db();
    let _ = world_with_records(&world, 1);
    world.operate(&["kill-switch", "on", "--reason", "incident review"]);
    assert!(verify(&world, None).0);
    let connection = writable(&path);
    // Turning the switch off by deleting its row, not through nodemedic.
    connection
        .execute("DELETE FROM controls WHERE name = 'kill_switch'", [])
        .unwrap();
    let (ok, printed) = verify(&world, None);
    assert!(!ok && printed.contains("kill switch"), "{printed}");
    connection
        .execute(
            "INSERT INTO controls (name, value, set_by, at) VALUES ('kill_switch', 'on', 'x', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
    assert!(verify(&world, None).0);
    // A plan marked approved by hand, which the approvals worker would apply.
    connection
        .execute(
            "INSERT INTO plans (plan_id, incident_id, status, decided_by, plan, trigger, created_at, updated_at)
             VALUES ('plan-x', 'inc-x', 'approved', 'mallory', '{}', '{}', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
    let (ok, printed) = verify(&world, None);
    assert!(
        !ok && printed.contains("plan-x is approved but no record"),
        "{printed}"
    );
}
