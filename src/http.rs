//! The HTTP API: health for orchestrators, and the approvals API for people and tools. Off unless
//! an address is configured; the approvals API refuses every request unless bearer tokens are
//! configured, and records the token's name as the approver.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditStore;
use crate::audit::control::{self, PlanStatus};
use crate::operate::{self, OperateError};

#[derive(Clone)]
pub struct HttpState {
    pub store: AuditStore,
    /// Bearer token by approver name.
    pub tokens: BTreeMap<String, String>,
    /// Woken when a plan is approved, so the daemon acts without waiting for its next poll.
    pub approvals: Arc<Notify>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/plans", get(list_plans))
        .route("/v1/plans/{id}/approve", post(approve))
        .route("/v1/plans/{id}/reject", post(reject))
        .route("/v1/kill-switch", get(kill_switch).put(set_kill_switch))
        .route("/v1/breakers", get(list_breakers))
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
    let digest = Sha256::digest(presented.as_bytes());
    tokens
        .iter()
        .find(|(_, token)| Sha256::digest(token.as_bytes()) == digest)
        .map(|(name, _)| name.clone())
        .ok_or(Refused::UnknownToken)
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
    match state.store.read(move |c| control::plans(c, status)).await {
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
        operate::decide_plan(&store, &id, approve, &by, reason.as_deref())
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

async fn list_breakers(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(refused) = caller(&state.tokens, &headers) {
        return refused.into_response();
    }
    match state.store.read(control::breakers).await {
        Ok(breakers) => Json(breakers).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
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
