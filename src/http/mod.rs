//! The HTTP API: health for orchestrators, and the approvals API for people and tools. Off unless
//! an address is configured; the approvals API refuses every request unless bearer tokens are
//! configured, and records the token's name as the approver.

pub mod console;
mod gate;
mod serve;

pub use gate::FailureGate;
pub use serve::{Limits, MAX_BODY_BYTES};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
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
    pub limits: Limits,
    /// Peers that keep presenting wrong tokens, slowed down.
    pub gate: Arc<FailureGate>,
    /// When the store-backed gauges were last read: a scrape reads them at most this often.
    pub controls_read: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

/// How often a scrape may read the store for the gauges that mirror it.
const CONTROLS_EVERY: Duration = Duration::from_secs(10);

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
        // The last layer runs first: a request to the API is refused before its body is read.
        .layer(from_fn_with_state(state.clone(), serve::bounded_body))
        .layer(from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Serves until `shutdown`, then drains for at most `http.drain_secs`.
pub async fn serve(
    address: SocketAddr,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = state.limits;
    serve::serve(address, router(state), limits, shutdown).await
}

/// The approvals API needs a token before anything else: a refused request is logged (without
/// the token), counted, and a peer that keeps failing is turned away for a while.
async fn require_token(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    let now = Instant::now();
    if let Some(Err(wait)) = peer.map(|peer| state.gate.check(peer, now)) {
        state.metrics.refused("slowed_down");
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many refused tokens from this address; try again later",
        );
        if let Ok(seconds) = axum::http::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds);
        }
        return response;
    }
    match caller(&state.tokens, request.headers()) {
        Ok(approver) => {
            if let Some(peer) = peer {
                state.gate.succeeded(peer);
            }
            // The handlers read who it is from here: the token is checked once.
            let mut request = request;
            request.extensions_mut().insert(Approver(approver));
            next.run(request).await
        }
        Err(refused) => {
            let reason = refused.label();
            tracing::warn!(peer = ?peer, path = %request.uri().path(), reason, "HTTP request refused");
            state.metrics.refused(reason);
            if let Some(peer) = peer
                && refused != Refused::ApiOff
            {
                state.gate.failed(peer, now);
            }
            refused.into_response()
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The approver a request to the API was authenticated as, by [`require_token`].
#[derive(Debug, Clone)]
struct Approver(String);

/// Why a request was refused before it reached a handler's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No tokens are configured: the API is closed to everyone.
    ApiOff,
    MissingToken,
    UnknownToken,
}

impl Refused {
    /// The metric label and log field.
    pub fn label(&self) -> &'static str {
        match self {
            Refused::ApiOff => "api_off",
            Refused::MissingToken => "missing_token",
            Refused::UnknownToken => "unknown_token",
        }
    }
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

async fn list_plans(State(state): State<HttpState>, Query(filter): Query<PlanFilter>) -> Response {
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
    by: String,
    id: String,
    approve: bool,
    body: Option<Json<Decision>>,
) -> Response {
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
    Extension(Approver(by)): Extension<Approver>,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> Response {
    decide(state, by, id, true, body).await
}

async fn reject(
    State(state): State<HttpState>,
    Extension(Approver(by)): Extension<Approver>,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> Response {
    decide(state, by, id, false, body).await
}

async fn kill_switch(State(state): State<HttpState>) -> Response {
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
    Extension(Approver(by)): Extension<Approver>,
    Json(body): Json<KillSwitch>,
) -> Response {
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

/// Ready or not for anyone (an orchestrator's probe); why, with AWS's error text, only for a
/// token holder.
async fn ready(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let report = state.readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if caller(&state.tokens, &headers).is_ok() {
        (status, Json(report)).into_response()
    } else {
        (status, Json(json!({ "ready": report.ready }))).into_response()
    }
}

/// The metrics, with the gauges that mirror the shared store read at most every
/// [`CONTROLS_EVERY`], however often (and by however many) it is scraped.
async fn metrics(State(state): State<HttpState>) -> Response {
    if let Ok(mut last) = state.controls_read.try_lock()
        && last.is_none_or(|at| at.elapsed() >= CONTROLS_EVERY)
    {
        refresh_controls(&state).await;
        *last = Some(Instant::now());
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

async fn refresh_controls(state: &HttpState) {
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
}

async fn log_level(State(state): State<HttpState>) -> Response {
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
    Extension(Approver(by)): Extension<Approver>,
    Json(body): Json<NewLevel>,
) -> Response {
    let Some(level) = &state.log_level else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "the log level is not adjustable in this process",
        );
    };
    if let Err(refused) = crate::telemetry::level_directive_allowed(&body.level) {
        return error(StatusCode::BAD_REQUEST, refused.to_string());
    }
    // Building a filter can be slow; it never runs on the runtime's threads.
    let (level, directive) = (level.clone(), body.level.clone());
    let set = tokio::task::spawn_blocking(move || level.set(&directive)).await;
    match set.unwrap_or_else(|e| Err(crate::telemetry::TelemetryError::Reload(e.to_string()))) {
        Ok(()) => {
            tracing::info!(level = %body.level, %by, "log level changed");
            Json(json!({ "level": body.level })).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn list_breakers(State(state): State<HttpState>) -> Response {
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
