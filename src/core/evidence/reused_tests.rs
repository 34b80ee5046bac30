//! How reused evidence is stored.

use super::*;

#[test]
fn reused_evidence_names_its_reading_and_older_records_still_read() {
    let mut evidence = Evidence::lab_002();
    let fresh = serde_json::to_value(&evidence).unwrap();
    assert!(
        fresh.get("reused").is_none(),
        "absent when read for the event"
    );
    let at = Timestamp::parse("2026-12-02T13:00:00.123Z").unwrap();
    evidence.reused = Some(ReusedEvidence {
        event_id: "kms-1".into(),
        collected_at: at,
    });
    let stored = serde_json::to_value(&evidence).unwrap();
    assert_eq!(
        stored["reused"],
        serde_json::json!({"event_id": "kms-1", "collected_at": "2026-12-02T13:00:00.123Z"})
    );
    let read: Evidence = serde_json::from_value(stored).unwrap();
    assert_eq!(read, evidence);
    let older: Evidence = serde_json::from_value(fresh).unwrap();
    assert_eq!(older.reused, None);
}
