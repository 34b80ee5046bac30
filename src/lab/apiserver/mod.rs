//! A stand-in for an EKS cluster's API server, for the demo and the tests: no kube-apiserver
//! installs on these machines. It serves HTTPS with a certificate of its own CA (given to the
//! emulated cluster as `certificateAuthority.data`, so nodemedic finds and trusts it through
//! DescribeCluster as in AWS), checks the EKS bearer token as the authenticator would
//! ([`authenticator`]), and answers the reads nodemedic makes with objects shaped as the
//! Kubernetes API reference gives them. It is not a Kubernetes API server: it serves only the
//! paths below, and answers writes with 405.

pub mod authenticator;
pub mod objects;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::net::TcpListener;

/// The secret of the emulator's credentials, which the stand-in's "STS" knows.
pub const EMULATOR_SECRET: &str = "testing";

/// What the cluster holds, and how it behaves.
#[derive(Debug, Default)]
pub struct ClusterState {
    pub nodes: Vec<Value>,
    pub aws_auth: Option<Value>,
    pub csrs: Vec<Value>,
    pub aws_node: Option<Value>,
    /// Authenticated callers get 403, as with no access entry or RBAC binding.
    pub forbid: bool,
    /// Requests are accepted and never answered, as a private endpoint reached from outside.
    pub hang: bool,
    /// Every request: method, path and whether its token was accepted.
    pub requests: Vec<(String, String, bool)>,
}

struct Shared {
    cluster: String,
    region: String,
    state: Mutex<ClusterState>,
}

/// A running stand-in; it stops when dropped.
pub struct StandInApiServer {
    /// `https://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The CA bundle as DescribeCluster gives it: base64 of PEM.
    pub certificate_authority: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandInApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StandInError {
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("listening: {0}")]
    Io(#[from] std::io::Error),
}

impl StandInApiServer {
    /// Serves `cluster` of `region` on 127.0.0.1 and a free port.
    pub async fn start(cluster: &str, region: &str) -> Result<Self, StandInError> {
        let (ca_pem, server_config) = stand_in_certificates(&["127.0.0.1", "localhost"])?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("https://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            cluster: cluster.to_string(),
            region: region.to_string(),
            state: Mutex::new(ClusterState::default()),
        });
        let router = Router::new().fallback(serve).with_state(shared.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    }
                });
            }
        });
        Ok(Self {
            endpoint,
            certificate_authority: base64::engine::general_purpose::STANDARD.encode(ca_pem),
            shared,
            task,
        })
    }

    /// The cluster's objects and behaviour, to change or inspect.
    pub fn state(&self) -> MutexGuard<'_, ClusterState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A fresh CA (as PEM) and a server configuration whose certificate, for `hosts`, it signed:
/// what a stand-in peer needs to be trusted only by clients told about that CA.
pub fn stand_in_certificates(
    hosts: &[&str],
) -> Result<(String, rustls::ServerConfig), StandInError> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubernetes");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate()?;
    let mut server_params =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())?;
    server_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    let server = server_params.signed_by(&server_key, &issuer)?;
    let key = rustls_pki_types::PrivateKeyDer::try_from(server_key.serialize_der())
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![server.der().clone()], key)?;
    Ok((ca.pem(), config))
}

async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let accepted = authenticator::authenticate(
        authorization,
        &shared.cluster,
        &shared.region,
        time::OffsetDateTime::now_utc(),
        |_| Some(EMULATOR_SECRET.to_string()),
    );
    let path = request.uri().path().to_string();
    let (answer, hang) = {
        let mut state = shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .requests
            .push((request.method().to_string(), path.clone(), accepted.is_ok()));
        (
            answer(&state, request.method(), &path, accepted),
            state.hang,
        )
    };
    if hang {
        std::future::pending::<()>().await;
    }
    answer
}

fn answer(
    state: &ClusterState,
    method: &Method,
    path: &str,
    caller: Result<authenticator::Caller, String>,
) -> Response {
    if let Err(why) = caller {
        return reply(
            StatusCode::UNAUTHORIZED,
            objects::status(401, "Unauthorized", &format!("Unauthorized: {why}")),
        );
    }
    if state.forbid {
        return reply(
            StatusCode::FORBIDDEN,
            objects::status(
                403,
                "Forbidden",
                "User \"nodemedic\" cannot list resource \"nodes\" in API group \"\" at the cluster scope",
            ),
        );
    }
    if method != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            objects::status(405, "MethodNotAllowed", "the stand-in serves reads only"),
        );
    }
    let found = match path {
        "/api/v1/nodes" => Some(objects::list("v1", "NodeList", state.nodes.clone())),
        "/api/v1/namespaces/kube-system/configmaps/aws-auth" => state.aws_auth.clone(),
        "/apis/certificates.k8s.io/v1/certificatesigningrequests" => Some(objects::list(
            "certificates.k8s.io/v1",
            "CertificateSigningRequestList",
            state.csrs.clone(),
        )),
        "/apis/apps/v1/namespaces/kube-system/daemonsets/aws-node" => state.aws_node.clone(),
        _ => None,
    };
    match found {
        Some(body) => reply(StatusCode::OK, body),
        None => reply(
            StatusCode::NOT_FOUND,
            objects::status(404, "NotFound", &format!("{path} not found")),
        ),
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}
