//! Signatures on nodemedic's own queue events (health findings, join checks). Anyone who may send
//! to the queue could otherwise forge one: a health event that opens an incident and plans a
//! cycle, or a join check due in a year that hops through the queue for ever. The key is shared
//! by the replicas through the store, so a queue writer without the store cannot sign.

use serde_json::{Map, Value};

use crate::core::mac_key::MacKey;

/// The envelope field that carries the signature. EventBridge never sends it.
pub const SIGNATURE_FIELD: &str = "nodemedic-signature";

/// The key own events are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey(MacKey);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("a nodemedic event without a signature")]
    Missing,
    #[error(
        "a nodemedic event whose signature does not match: forged, altered, or from another deployment"
    )]
    Mismatch,
    #[error("the stored event key is not 32 bytes of hex")]
    BadKey,
}

impl EventKey {
    /// A fresh random key: 32 bytes from the operating system's generator (two v4 UUIDs carry
    /// 244 random bits).
    pub fn generate() -> EventKey {
        let mut bytes = uuid::Uuid::new_v4().as_bytes().to_vec();
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        EventKey(MacKey::new(bytes))
    }

    pub fn from_hex(text: &str) -> Result<EventKey, SignatureError> {
        MacKey::from_hex(text)
            .map(EventKey)
            .ok_or(SignatureError::BadKey)
    }

    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }

    /// What is signed: everything in the envelope but the signature, in canonical form.
    fn signed_text(envelope: &Map<String, Value>) -> String {
        let mut unsigned = envelope.clone();
        unsigned.remove(SIGNATURE_FIELD);
        canonical(&Value::Object(unsigned))
    }

    /// Adds the signature of everything else in the envelope.
    pub fn sign(&self, envelope: &mut Value) {
        if let Value::Object(fields) = envelope {
            let signature = self.0.sign(&[&Self::signed_text(fields)]);
            fields.insert(SIGNATURE_FIELD.into(), Value::String(signature));
        }
    }

    /// Checks a received body's signature, in constant time.
    pub fn verify(&self, body: &str) -> Result<(), SignatureError> {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(body) else {
            return Err(SignatureError::Missing);
        };
        let Some(signature) = fields.get(SIGNATURE_FIELD).and_then(Value::as_str) else {
            return Err(SignatureError::Missing);
        };
        if self.0.verifies(&[&Self::signed_text(&fields)], signature) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// JSON with every object's keys sorted, so that the signature does not depend on the order a
/// writer or reader keeps them in (serde_json preserves order here).
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|key| {
                    format!(
                        "{}:{}",
                        Value::String(key.clone()),
                        canonical(&fields[key.as_str()])
                    )
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> Value {
        json!({"id": "join-1", "source": "nodemedic", "detail-type": "Join Check",
            "detail": {"cluster": "c", "due_at": "2026-12-01T00:00:00Z", "nested": {"b": 1, "a": 2}}})
    }

    #[test]
    fn a_signed_event_verifies_whatever_the_key_order() {
        let key = EventKey::generate();
        let mut signed = event();
        key.sign(&mut signed);
        assert_eq!(key.verify(&signed.to_string()), Ok(()));
        // The same fields in another order, as another writer may send them.
        let reordered = json!({"detail": {"nested": {"a": 2, "b": 1}, "due_at": "2026-12-01T00:00:00Z", "cluster": "c"},
            "detail-type": "Join Check", "source": "nodemedic", "id": "join-1",
            SIGNATURE_FIELD: signed[SIGNATURE_FIELD].clone()});
        assert_eq!(key.verify(&reordered.to_string()), Ok(()));
    }

    #[test]
    fn an_altered_unsigned_or_foreign_event_is_refused() {
        let key = EventKey::generate();
        let mut signed = event();
        key.sign(&mut signed);
        let mut altered = signed.clone();
        altered["detail"]["due_at"] = json!("2099-01-01T00:00:00Z");
        assert_eq!(
            key.verify(&altered.to_string()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key.verify(&event().to_string()),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            EventKey::generate().verify(&signed.to_string()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(key.verify("not json"), Err(SignatureError::Missing));
    }

    #[test]
    fn the_key_round_trips_as_hex_and_is_never_printed() {
        let key = EventKey::generate();
        assert_eq!(EventKey::from_hex(&key.to_hex()), Ok(key.clone()));
        assert_eq!(format!("{key:?}"), "EventKey(MacKey(..))");
        assert_eq!(EventKey::from_hex("abcd"), Err(SignatureError::BadKey));
    }
}
