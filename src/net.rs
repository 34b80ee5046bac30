//! The HTTP client shared by the edges that call out (webhooks, the OTLP exporter): the proxy
//! in `HTTPS_PROXY` / `HTTP_PROXY` (except `NO_PROXY` hosts), as VPCs whose egress goes through
//! a proxy need, the platform's roots and the AWS SDK's crypto provider.

use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// An HTTP(S) client for outbound calls that give up after `timeout`.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, NetError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls_client_config()?)
        .user_agent(concat!("nodemedic/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .build()?)
}

/// TLS for outbound HTTPS: the platform's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` are
/// honoured, as corporate proxies that re-sign traffic need) and the SDK's crypto provider.
fn tls_client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    // The SDK's own provider: a second one would make rustls unable to pick a default.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}
