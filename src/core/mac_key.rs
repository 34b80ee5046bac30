//! A secret key for HMAC-SHA256 signatures: nodemedic's own queue events, the audit chain's
//! signed heads. Never printed; signatures are compared in constant time.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone, PartialEq, Eq)]
pub struct MacKey(Vec<u8>);

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(..)")
    }
}

impl MacKey {
    pub fn new(bytes: Vec<u8>) -> MacKey {
        MacKey(bytes)
    }

    /// 32 bytes written as hex, as the store keeps a generated key.
    pub fn from_hex(text: &str) -> Option<MacKey> {
        hex::decode(text.trim())
            .ok()
            .filter(|bytes| bytes.len() == 32)
            .map(MacKey)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    fn mac(&self, parts: &[&str]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac
    }

    /// The signature of `parts` (each followed by a NUL, so that parts cannot run together), hex.
    pub fn sign(&self, parts: &[&str]) -> String {
        hex::encode(self.mac(parts).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is the signature of `parts`.
    pub fn verifies(&self, parts: &[&str], signature: &str) -> bool {
        hex::decode(signature).is_ok_and(|bytes| self.mac(parts).verify_slice(&bytes).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_parts_and_key() {
        let key = MacKey::new(vec![7; 32]);
        let signature = key.sign(&["global", "12", "abc"]);
        assert!(key.verifies(&["global", "12", "abc"], &signature));
        assert!(
            !key.verifies(&["global", "1", "2abc"], &signature),
            "parts cannot run together"
        );
        assert!(!MacKey::new(vec![8; 32]).verifies(&["global", "12", "abc"], &signature));
        assert!(!key.verifies(&["global", "12", "abc"], "zz"));
        assert_eq!(format!("{key:?}"), "MacKey(..)");
        assert_eq!(MacKey::from_hex(&key.to_hex()), Some(key));
        assert_eq!(MacKey::from_hex("abcd"), None);
    }
}
