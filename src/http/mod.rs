//! The HTTP API: health for orchestrators, and the approvals API for people and tools. Off unless
//! an address is configured; the approvals API refuses every request unless bearer tokens are
//! configured, and records the token's name as the approver.

pub mod console;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditStore;
use crate::audit::control::{self, PlanStatus};
use crate::http::console::ConsoleContext;
use crate::operate::{self, OperateError};
use crate::telemetry::LogLevel;
use crate::telemetry::health::Readiness;
use crate::telemetry::metrics::Metrics;

#[derive(Clone)]
pub struct HttpState {
    pub store: AuditStore,
    /// Bearer token by approver name.
    pub tokens: BTreeMap<String, String>,
    /// Woken when a plan is approved, so the daemon acts without waiting for its next poll.
    pub approvals: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub log_level: Option<LogLevel>,
    /// How long a plan may await approval (`guard.plan_ttl_secs`).
    pub plan_ttl: Duration,
    /// The web console, when `http.console` is on.
    pub console: Option<Arc<ConsoleContext>>,
}

pub fn router(state: HttpState) -> Router {
    let console = if state.console.is_some() {
        crate::http::console::router()
    } else {
        Router::new()
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/log-level", get(log_level).put(set_log_level))
        .route("/v1/plans", get(list_plans))
        .route("/v1/plans/{id}/approve", post(approve))
        .route("/v1/plans/{id}/reject", post(reject))
        .route("/v1/kill-switch", get(kill_switch).put(set_kill_switch))
        .route("/v1/breakers", get(list_breakers))
        .merge(console)
        .with_state(state)
}

/// Serves until `shutdown`.
pub async fn serve(
    address: SocketAddr,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, "HTTP API listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Why a request was refused before it reached a handler's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No tokens are configured: the API is closed to everyone.
    ApiOff,
    MissingToken,
    UnknownToken,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::ApiOff => error(
                StatusCode::FORBIDDEN,
                "the approvals API is off: no tokens are configured (http.tokens)",
            ),
            Refused::MissingToken => error(StatusCode::UNAUTHORIZED, "a bearer token is required"),
            Refused::UnknownToken => error(StatusCode::UNAUTHORIZED, "unknown token"),
        }
    }
}

/// The approver a request's bearer token names. Tokens are compared by hash so that the time
/// taken does not depend on how much of a guess was right.
pub fn caller(tokens: &BTreeMap<String, String>, headers: &HeaderMap) -> Result<String, Refused> {
    if tokens.is_empty() {
        return Err(Refused::ApiOff);
    }
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(Refused::MissingToken)?;
    crate::http::console::session::approver_of(tokens, presented).ok_or(Refused::UnknownToken)
}

#[derive(Deserialize)]
struct PlanFilter {
    status: Option<String>,
}

async fn list_plans(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(filter): Query<PlanFilter>,
) -> Response {
    if let Err(refused) = caller(&state.tokens, &headers) {
        return refused.into_response();
    }
    let status = match filter.status.as_deref() {
        None => Some(PlanStatus::AwaitingApproval),
        Some("all") => None,
        Some(text) => match PlanStatus::parse(text) {
            Some(status) => Some(status),
            None => return error(StatusCode::BAD_REQUEST, format!("unknown status {text:?}")),
        },
    };
    match state.store.read(|c| control::plans(c, status)).await {
        Ok(plans) => Json(plans).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize, Default)]
struct Decision {
    reason: Option<String>,
}

async fn decide(
    state: HttpState,
    headers: HeaderMap,
    id: String,
    approve: bool,
    body: Option<Json<Decision>>,
) -> Response {
    let by = match caller(&state.tokens, &headers) {
        Ok(by) => by,
        Err(refused) => return refused.into_response(),
    };
    let reason = body.and_then(|Json(d)| d.reason);
    let store = state.store.clone();
    let decided = tokio::task::spawn_blocking(move || {
        operate::decide_plan(&store, &id, approve, &by, reason.as_deref(), state.plan_ttl)
    })
    .await;
    match decided {
        Ok(Ok(row)) => {
            if approve {
                state.approvals.notify_one();
            }
            Json(row).into_response()
        }
        Ok(Err(OperateError::NoSuchPlan(plan))) => {
            error(StatusCode::NOT_FOUND, format!("no plan {plan}"))
        }
        Ok(Err(refused @ OperateError::NotAwaiting { .. })) => {
            error(StatusCode::CONFLICT, refused.to_string())
        }
        Ok(Err(other)) => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn approve(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> Response {
    decide(state, headers, id, true, body).await
}

async fn reject(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> Response {
    decide(state, headers, id, false, body).await
}

async fn kill_switch(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(refused) = caller(&state.tokens, &headers) {
        return refused.into_response();
    }
    match state.store.read(control::kill_switch).await {
        Ok(Some(on)) => {
            Json(json!({ "on": true, "set_by": on.set_by, "at": on.at, "reason": on.reason }))
                .into_response()
        }
        Ok(None) => Json(json!({ "on": false })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct KillSwitch {
    on: bool,
    reason: Option<String>,
}

async fn set_kill_switch(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Json(body): Json<KillSwitch>,
) -> Response {
    let by = match caller(&state.tokens, &headers) {
        Ok(by) => by,
        Err(refused) => return refused.into_response(),
    };
    let store = state.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        operate::set_kill_switch(&store, body.on, &by, body.reason.as_deref())
    })
    .await;
    match result {
        Ok(Ok(())) => Json(json!({ "on": body.on })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn ready(State(state): State<HttpState>) -> Response {
    let report = state.readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// The metrics, with the gauges that mirror the shared store read at scrape time.
async fn metrics(State(state): State<HttpState>) -> Response {
    let controls = state
        .store
        .read(|c| {
            Ok((
                control::plans(c, Some(PlanStatus::AwaitingApproval))?.len(),
                control::breakers(c)?
                    .into_iter()
                    .filter(|b| b.state == "open")
                    .map(|b| b.scope)
                    .collect::<Vec<_>>(),
                control::kill_switch(c)?.is_some(),
            ))
        })
        .await;
    match controls {
        Ok((awaiting, open, kill_switch)) => {
            state.metrics.set_controls(awaiting, &open, kill_switch)
        }
        Err(error) => tracing::warn!(%error, "metrics: the store could not be read"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn log_level(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(refused) = caller(&state.tokens, &headers) {
        return refused.into_response();
    }
    match &state.log_level {
        Some(level) => Json(json!({ "level": level.current() })).into_response(),
        None => error(
            StatusCode::NOT_IMPLEMENTED,
            "the log level is not adjustable in this process",
        ),
    }
}

#[derive(Deserialize)]
struct NewLevel {
    level: String,
}

async fn set_log_level(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Json(body): Json<NewLevel>,
) -> Response {
    let by = match caller(&state.tokens, &headers) {
        Ok(by) => by,
        Err(refused) => return refused.into_response(),
    };
    let Some(level) = &state.log_level else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "the log level is not adjustable in this process",
        );
    };
    match level.set(&body.level) {
        Ok(()) => {
            tracing::info!(level = %body.level, %by, "log level changed");
            Json(json!({ "level": body.level })).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn list_breakers(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(refused) = caller(&state.tokens, &headers) {
        return refused.into_response();
    }
    match state.store.read(control::breakers).await {
        Ok(breakers) => Json(breakers).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// GETs `path` from a local HTTP server; the status code, or why there was none.
pub async fn probe(address: &str, path: &str) -> Result<u16, String> {
    let address = match address.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]" | "", port)) => format!("127.0.0.1:{port}"),
        _ => address.to_string(),
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = [0u8; 32];
        let read = tokio::io::AsyncReadExt::read(&mut stream, &mut head)
            .await
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&head[..read])
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| "not an HTTP answer".to_string())
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("{address} did not answer within 5 s"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(
                axum::http::header::AUTHORIZATION,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn a_token_names_its_approver_and_anything_else_is_refused() {
        let tokens: BTreeMap<String, String> =
            [("alice".to_string(), "alice-token-0123456789".to_string())].into();
        assert_eq!(
            caller(&tokens, &headers(Some("Bearer alice-token-0123456789"))),
            Ok("alice".to_string())
        );
        assert_eq!(
            caller(&tokens, &headers(Some("Bearer alice-token-012345678"))),
            Err(Refused::UnknownToken)
        );
        assert_eq!(
            caller(&tokens, &headers(Some("alice-token-0123456789"))),
            Err(Refused::MissingToken),
            "the scheme is required"
        );
        assert_eq!(caller(&tokens, &headers(None)), Err(Refused::MissingToken));
        assert_eq!(
            caller(&BTreeMap::new(), &headers(Some("Bearer anything"))),
            Err(Refused::ApiOff),
            "never open by default"
        );
    }
}
