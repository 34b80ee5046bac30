//! The HTTPS client stack shared by the edges that call out over HTTP (webhooks, the OTLP
//! exporter): the platform's roots and the AWS SDK's crypto provider.

use std::sync::Arc;

use hyper_util::client::legacy::connect::HttpConnector;
pub use rustls::Error as TlsError;

pub type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// An HTTP(S) connector with the platform's roots and the SDK's crypto provider (webhooks and
/// the OTLP exporter use it).
pub fn https_connector() -> Result<Https, TlsError> {
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
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build())
}
