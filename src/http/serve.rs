//! Serving the router over HTTP/1 with limits a slow or hostile client cannot get past: a
//! deadline for each request head (idle keep-alive connections included), a bound on the
//! connections served at once, a deadline and a size limit for bodies, and a drain on shutdown
//! that ends after a few seconds whatever the clients do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::HttpState;
use crate::settings::HttpSettings;

/// The API's bodies are a few hundred bytes; the console's forms a little more.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read: Duration,
    pub body_read: Duration,
    pub max_connections: usize,
    pub drain: Duration,
}

impl From<&HttpSettings> for Limits {
    fn from(settings: &HttpSettings) -> Limits {
        Limits {
            header_read: Duration::from_secs(settings.header_read_timeout_secs),
            body_read: Duration::from_secs(settings.body_read_timeout_secs),
            max_connections: settings.max_connections,
            drain: Duration::from_secs(settings.drain_secs),
        }
    }
}

/// Serves `router` on `address` until `shutdown`, then drains for at most `limits.drain`.
pub async fn serve(
    address: SocketAddr,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    // The bound address, not the configured one: with port 0 the kernel picks the port, and
    // whoever reads the log (an operator, the integration tests) needs the real one.
    let address = listener.local_addr()?;
    tracing::info!(%address, max_connections = limits.max_connections, "HTTP API listening");
    // Taken before a connection is accepted: clients over the limit wait in the kernel's
    // backlog and hold none of the process's descriptors, which its AWS calls need.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let draining = CancellationToken::new();
    let dropping = CancellationToken::new();
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before accept: try again shortly.
                    tracing::warn!(%error, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let service =
            TowerToHyperService::new(router.clone().layer(axum::Extension(ConnectInfo(peer))));
        let (draining, dropping) = (draining.clone(), dropping.clone());
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .max_buf_size(64 * 1024);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = draining.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            // Dropping the connection closes its socket.
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = dropping.cancelled() => {}
            }
        });
    }
    drop(listener);
    connections.close();
    draining.cancel();
    if tokio::time::timeout(limits.drain, connections.wait())
        .await
        .is_err()
    {
        tracing::info!(
            open = connections.len(),
            "HTTP connections still open after the drain; dropping them"
        );
        dropping.cancel();
        connections.wait().await;
    }
    Ok(())
}

/// Reads a request's body, at most [`MAX_BODY_BYTES`] and within the body deadline, before the
/// handler sees it: a client that trickles or floods a body is answered, not waited for.
pub(super) async fn bounded_body(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Response {
    let deadline = state.limits.body_read;
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )
            .into_response(),
        Ok(Err(_)) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is over 16 KiB or broken",
        )
            .into_response(),
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}
