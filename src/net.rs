//! The TLS set-up shared by the edges that call out over HTTPS (webhooks, the OTLP exporter):
//! the platform's roots and the AWS SDK's crypto provider.

use std::sync::Arc;

use hyper_util::client::legacy::connect::HttpConnector;
pub use rustls::Error as TlsError;

pub type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// An HTTP(S) connector with the platform's roots and the SDK's crypto provider (the OTLP
/// exporter uses it).
pub fn https_connector() -> Result<Https, TlsError> {
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_client_config()?)
        .https_or_http()
        .enable_http1()
        .build())
}

/// TLS for outbound HTTPS: the platform's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` are
/// honoured, as corporate proxies that re-sign traffic need) and the SDK's crypto provider.
pub fn tls_client_config() -> Result<rustls::ClientConfig, TlsError> {
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
