//! Item encoding: attribute values, keys and index keys, and records and plans read back from
//! items.

use super::*;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn text(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    }
}

pub(super) fn number(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

pub(super) fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

pub(super) fn backend_error(error: impl std::fmt::Display) -> AuditError {
    AuditError::Backend(error.to_string())
}

pub(super) fn sdk_error<E: std::error::Error + 'static>(
    error: aws_sdk_dynamodb::error::SdkError<E>,
) -> AuditError {
    AuditError::Backend(aws_sdk_dynamodb::error::DisplayErrorContext(&error).to_string())
}

pub(super) fn nodegroup_index(key: &NodegroupKey) -> String {
    format!(
        "NG#{}/{}/{}/{}",
        key.account, key.region, key.cluster, key.nodegroup
    )
}

pub(super) fn subject_index(account: &str, region: &str, subject: &str) -> String {
    format!("SUBJ#{account}/{region}/{subject}")
}

pub(super) fn record_from_item(item: &Item) -> Result<Record, AuditError> {
    let body = text(item, "body").unwrap_or_else(|| "null".into());
    Ok(Record {
        seq: number(item, "seq").unwrap_or(0),
        at: text(item, "at").unwrap_or_default(),
        incident_id: text(item, "incident_id"),
        event_id: text(item, "event_id"),
        kind: text(item, "kind").unwrap_or_default(),
        body: serde_json::from_str(&body)?,
        prev_hash: text(item, "prev_hash").unwrap_or_default(),
        hash: text(item, "hash").unwrap_or_default(),
        chain: text(item, "chain").unwrap_or_default(),
    })
}

pub(super) fn plan_from_item(item: &Item) -> Result<PlanRow, AuditError> {
    Ok(PlanRow {
        plan_id: text(item, "plan_id").unwrap_or_default(),
        incident_id: text(item, "incident_id").unwrap_or_default(),
        status: text(item, "status")
            .as_deref()
            .and_then(PlanStatus::parse)
            .ok_or_else(|| backend_error("a plan item has no known status"))?,
        created_at: text(item, "created_at").unwrap_or_default(),
        updated_at: text(item, "updated_at").unwrap_or_default(),
        plan: serde_json::from_str(&text(item, "plan").unwrap_or_else(|| "null".into()))?,
        trigger: serde_json::from_str(&text(item, "trigger").unwrap_or_else(|| "null".into()))?,
        decided_by: text(item, "decided_by"),
        decided_at: text(item, "decided_at"),
        decision_reason: text(item, "decision_reason"),
        cluster: text(item, "cluster").unwrap_or_default(),
        nodegroup: text(item, "nodegroup").unwrap_or_default(),
        cause: text(item, "cause").unwrap_or_default(),
    })
}

/// The loose chain of a record of no incident: by day, spread over shards by event id.
pub(super) fn loose_chain(event_id: Option<&str>, day: &str) -> String {
    let shard = match event_id {
        Some(id) => {
            let digest = <sha2::Sha256 as sha2::Digest>::digest(id.as_bytes());
            u64::from(digest[0]) % LOOSE_SHARDS
        }
        None => (uuid::Uuid::new_v4().as_u128() % u128::from(LOOSE_SHARDS)) as u64,
    };
    format!("loose/{day}/{shard}")
}

pub(super) fn status_fields(status: PlanStatus, at: &str) -> Vec<(&'static str, AttributeValue)> {
    vec![
        ("status", s(status.as_str())),
        ("updated_at", s(at)),
        ("gsi3pk", s(format!("PLANS#{}", status.as_str()))),
        ("gsi3sk", s(at)),
    ]
}
