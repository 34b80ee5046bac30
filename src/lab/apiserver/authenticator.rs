//! The stand-in's authenticator: it checks an EKS bearer token the way aws-iam-authenticator
//! does before it asks STS (the prefix, the presigned GetCallerIdentity URL, its host, its query,
//! the signed `x-k8s-aws-id` header naming this cluster, the 15-minute window), then verifies the
//! SigV4 signature itself with the emulator's secret key, where the real authenticator would
//! send the request to STS. It shares no code with nodemedic's signer.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const PREFIX: &str = "k8s-aws-v1.";
const ALLOWED: [&str; 9] = [
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
];

/// Who the token proves the caller is: its access key id.
#[derive(Debug, PartialEq, Eq)]
pub struct Caller {
    pub access_key_id: String,
}

/// Checks `authorization` (the whole header) for `cluster` in `region`; `secret_for` gives the
/// secret of an access key id, as STS knows it.
pub fn authenticate(
    authorization: Option<&str>,
    cluster: &str,
    region: &str,
    now: time::OffsetDateTime,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<Caller, String> {
    let token = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or("no bearer token")?;
    if token.len() > 4096 {
        return Err("token longer than 4096 bytes".into());
    }
    let encoded = token
        .strip_prefix(PREFIX)
        .ok_or("token without k8s-aws-v1. prefix")?;
    let url = URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or("token is not base64url of a URL")?;
    let rest = url.strip_prefix("https://").ok_or("not an https URL")?;
    let (host, query) = rest.split_once("/?").ok_or("URL path is not /")?;
    let expected_host = format!("sts.{region}.amazonaws.com");
    if host != expected_host && host != "sts.amazonaws.com" {
        return Err(format!("unexpected STS host {host}"));
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').ok_or("malformed query")?;
        let decoded = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| "query value is not UTF-8")?
            .into_owned();
        if !ALLOWED.contains(&key.to_ascii_lowercase().as_str()) {
            return Err(format!("query parameter {key} is not allowed"));
        }
        if pairs.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
            return Err(format!("query parameter {key} repeated"));
        }
        pairs.push((key.to_string(), decoded));
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or(format!("{name} missing"))
    };
    if get("Action")? != "GetCallerIdentity" {
        return Err("not GetCallerIdentity".into());
    }
    let signed_headers = get("X-Amz-SignedHeaders")?;
    if !signed_headers.split(';').any(|h| h == "x-k8s-aws-id") {
        return Err("x-k8s-aws-id is not signed".into());
    }
    let expires: i64 = get("X-Amz-Expires")?
        .parse()
        .map_err(|_| "bad X-Amz-Expires")?;
    if !(0..=900).contains(&expires) {
        return Err("X-Amz-Expires outside 0-900".into());
    }
    let date = get("X-Amz-Date")?;
    let signed_at = time::PrimitiveDateTime::parse(
        date,
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .map_err(|_| "bad X-Amz-Date")?
    .assume_utc();
    if now - signed_at > time::Duration::minutes(15) || signed_at - now > time::Duration::minutes(5)
    {
        return Err("token expired".into());
    }
    let credential = get("X-Amz-Credential")?;
    let mut scope = credential.split('/');
    let access_key_id = scope.next().unwrap_or_default().to_string();
    let day = scope.next().unwrap_or_default();
    let scope_region = scope.next().unwrap_or_default();
    if scope.next() != Some("sts") || scope.next() != Some("aws4_request") || scope_region != region
    {
        return Err(format!(
            "credential scope {credential} is not sts in {region}"
        ));
    }
    let secret = secret_for(&access_key_id).ok_or("unknown access key")?;
    // The canonical request STS computes, with this cluster's name as the header's value: a
    // token made for another cluster fails here.
    let mut canonical_query: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    canonical_query.sort();
    let canonical_query: Vec<String> = canonical_query
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut headers = String::new();
    for name in signed_headers.split(';') {
        let value = match name {
            "host" => host,
            "x-k8s-aws-id" => cluster,
            other => return Err(format!("unexpected signed header {other}")),
        };
        headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical = format!(
        "GET\n/\n{}\n{headers}\n{signed_headers}\n{}",
        canonical_query.join("&"),
        hex::encode(Sha256::digest(b""))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{day}/{region}/sts/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    for part in [region, "sts", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    if get("X-Amz-Signature")? != expected {
        return Err("signature does not match (a token for another cluster?)".into());
    }
    Ok(Caller { access_key_id })
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SigV4's URI encoding: unreserved characters as they are, everything else %XX.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use secrecy::ExposeSecret;
    use std::time::SystemTime;

    fn header(cluster: &str, at: SystemTime) -> String {
        let credentials = Credentials::new("AKID", "testing", Some("session".into()), None, "test");
        let token =
            crate::kubernetes::token::token(&credentials, "us-west-2", cluster, at).unwrap();
        format!("Bearer {}", token.expose_secret())
    }

    fn check(header: &str, now: time::OffsetDateTime) -> Result<Caller, String> {
        authenticate(Some(header), "prod", "us-west-2", now, |key| {
            (key == "AKID").then(|| "testing".to_string())
        })
    }

    #[test]
    fn accepts_nodemedics_token_and_refuses_another_clusters_a_stale_one_and_a_forged_one() {
        let now = SystemTime::now();
        let at = time::OffsetDateTime::now_utc();
        assert_eq!(
            check(&header("prod", now), at).unwrap().access_key_id,
            "AKID"
        );
        assert!(
            check(&header("staging", now), at)
                .unwrap_err()
                .contains("signature")
        );
        let old = now - std::time::Duration::from_secs(16 * 60);
        assert!(
            check(&header("prod", old), at)
                .unwrap_err()
                .contains("expired")
        );
        let forged = header("prod", now).replace("k8s-aws-v1.", "k8s-aws-v2.");
        assert!(check(&forged, at).is_err());
        assert!(authenticate(None, "prod", "us-west-2", at, |_| None).is_err());
    }
}
