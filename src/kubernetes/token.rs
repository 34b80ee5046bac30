//! The bearer token EKS's authenticator accepts, made as `aws eks get-token` makes it: an STS
//! GetCallerIdentity request presigned (SigV4 in the query, 60 s) with the `x-k8s-aws-id` header
//! naming the cluster signed in, its URL base64url-encoded behind `k8s-aws-v1.`.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::SecretString;

pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header the authenticator requires to be signed, naming the cluster.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// STS honours a presigned URL for 15 minutes whatever it says; clients renew after 14.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// RFC 3986 unreserved characters stay as they are; everything else is escaped.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("signing the STS request failed: {0}")]
    Signing(String),
}

/// The regional STS host of `region` (`sts.<region>.amazonaws.com`, `.amazonaws.com.cn` in
/// China), as current AWS CLIs sign for.
pub fn sts_host(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("sts.{region}.amazonaws.com.cn")
    } else {
        format!("sts.{region}.amazonaws.com")
    }
}

/// The presigned GetCallerIdentity URL for `cluster`, signed with `credentials` at `now`.
pub fn presigned_url(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, TokenError> {
    let base = format!(
        "https://{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_host(region)
    );
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(60));
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| TokenError::Signing(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        "GET",
        &base,
        std::iter::once((CLUSTER_ID_HEADER, cluster)),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| TokenError::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| TokenError::Signing(e.to_string()))?
        .into_parts();
    let (_headers, query) = instructions.into_parts();
    let mut url = base;
    for (name, value) in query {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.extend(utf8_percent_encode(&value, QUERY_VALUE));
    }
    Ok(url)
}

/// The bearer token for `cluster`.
pub fn token(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<SecretString, TokenError> {
    let url = presigned_url(credentials, region, cluster, now)?;
    Ok(SecretString::from(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(url)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn credentials(session: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            session.map(str::to_string),
            None,
            "test",
        )
    }

    #[test]
    fn the_token_is_a_presigned_get_caller_identity_with_the_cluster_header_signed() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_547_200);
        let token = token(&credentials(Some("session")), "us-west-2", "prod", at).unwrap();
        let encoded = token.expose_secret().strip_prefix(TOKEN_PREFIX).unwrap();
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
        assert!(url.starts_with(
            "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
        ));
        let query: Vec<(String, String)> = url::form_urlencoded_pairs(&url);
        let get = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("X-Amz-SignedHeaders"), Some("host;x-k8s-aws-id"));
        assert_eq!(get("X-Amz-Expires"), Some("60"));
        assert_eq!(get("X-Amz-Security-Token"), Some("session"));
        assert_eq!(get("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert!(
            get("X-Amz-Credential")
                .unwrap()
                .ends_with("/us-west-2/sts/aws4_request")
        );
        assert_eq!(get("X-Amz-Signature").map(str::len), Some(64));
        // A different cluster signs differently: the header is part of the signature.
        let other =
            presigned_url(&credentials(Some("session")), "us-west-2", "staging", at).unwrap();
        assert_ne!(other, url);
        assert!(
            !url.contains("prod"),
            "the cluster name is signed, not sent in the URL"
        );
    }

    /// A tiny query reader for the test, decoding percent escapes.
    mod url {
        pub fn form_urlencoded_pairs(url: &str) -> Vec<(String, String)> {
            let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        percent_encoding::percent_decode_str(v)
                            .decode_utf8_lossy()
                            .into_owned(),
                    )
                })
                .collect()
        }
    }
}
