//! Publishing nodemedic's own events (health findings, join checks) to its queue, so that they
//! flow through the same pipeline, dedupe and audit as EventBridge's, and survive restarts.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::signing::EventKey;
use crate::aws::{AwsError, AwsResultExt};

/// SQS refuses a longer delay.
pub const MAX_DELAY_SECS: i64 = 900;

#[derive(Clone, Debug)]
pub struct Publisher {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    /// Signs every event, so that the pipeline can tell its own from a forgery.
    pub key: EventKey,
}

impl Publisher {
    /// Sends `envelope` signed, visible after `delay_secs` (clamped to what SQS accepts).
    pub async fn publish(&self, envelope: &Value, delay_secs: i64) -> Result<(), AwsError> {
        let mut signed = envelope.clone();
        self.key.sign(&mut signed);
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(signed.to_string())
            .delay_seconds(delay_secs.clamp(0, MAX_DELAY_SECS) as i32)
            .send()
            .await
            .op("sqs:SendMessage")?;
        Ok(())
    }
}

/// An EventBridge-shaped envelope for an event of nodemedic's own.
pub fn nodemedic_event(
    detail_type: &str,
    id: &str,
    account: &str,
    region: &str,
    detail: Value,
) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": super::NODEMEDIC_SOURCE,
        "account": account,
        "time": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "region": region,
        "resources": [],
        "detail": detail,
    })
}
