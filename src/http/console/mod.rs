//! The web console: incidents with their timelines, plans to approve or reject, and the daemon's
//! health, served by the daemon's HTTP server under `/console/` when `http.console` is on.
//! Server-rendered HTML that reads without JavaScript. Signing in takes an approver token (the
//! same tokens as the approvals API, so it is closed when there are none); every form carries a
//! CSRF token, and every decision is recorded with the approver's name.

pub mod diff;
pub mod links;
mod records;
pub mod session;
pub mod view;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::audit::IncidentSummary;
use crate::audit::control::{self, PlanStatus};
use crate::http::HttpState;
use crate::operate::{self, OperateError};
use session::{COOKIE, Session, SessionError};
use view::{Filters, Health, QueueDepth, Viewer};

/// What the console needs beyond the HTTP API's state.
pub struct ConsoleContext {
    pub mode: String,
    pub queue: Option<(aws_sdk_sqs::Client, String)>,
    /// The last verification of the audit chain: walking it reads every record, so a page view
    /// reuses a recent answer.
    chain: Mutex<Option<(Instant, Result<u64, String>)>>,
}

const CHAIN_CHECK_EVERY: Duration = Duration::from_secs(30);
const INCIDENTS_READ: usize = 1000;

impl ConsoleContext {
    pub fn new(mode: &str, queue: Option<(aws_sdk_sqs::Client, String)>) -> ConsoleContext {
        ConsoleContext {
            mode: mode.to_string(),
            queue,
            chain: Mutex::new(None),
        }
    }
}

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(index))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/plans", get(plans))
        .route("/console/plans/{id}/approve", post(approve))
        .route("/console/plans/{id}/reject", post(reject))
        .route("/console/incidents/{id}", get(incident))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/static/console.js", get(script))
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // same-origin, not no-referrer: under no-referrer browsers send `Origin: null` with forms,
        // and the origin check could not tell our own forms from a forged one.
        .layer(security_header(header::REFERRER_POLICY, "same-origin"))
        .layer(security_header(header::CACHE_CONTROL, "no-store"))
}

/// A header every console response carries, whatever the handler set.
fn security_header(
    name: header::HeaderName,
    value: &'static str,
) -> tower_http::set_header::SetResponseHeaderLayer<HeaderValue> {
    tower_http::set_header::SetResponseHeaderLayer::overriding(
        name,
        HeaderValue::from_static(value),
    )
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// The session a request's cookie proves, checked against the approver's sign-out epoch in the
/// store (shared by replicas): a session signed out anywhere is over everywhere. A store that
/// cannot be read proves nothing.
async fn session_of(state: &HttpState, headers: &HeaderMap) -> Result<Session, SessionError> {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| session::cookie_from_header(v, COOKIE));
    let epoch = match cookie.as_deref().and_then(session::claimed_approver) {
        Some(approver) => state
            .store
            .read(|c| control::session_epoch(c, approver))
            .await
            .map_err(|_| SessionError::Invalid)?,
        None => 0,
    };
    session::verify(&state.tokens, cookie.as_deref(), epoch, now_unix())
}

fn viewer(state: &HttpState, session: &Session) -> Viewer {
    Viewer {
        approver: session.approver.clone(),
        csrf: session.csrf(&state.tokens),
    }
}

/// A page view without a valid session: sign in first (nothing of the store is shown).
fn refused_read(error: SessionError) -> Response {
    match error {
        SessionError::NoTokens => page(
            StatusCode::FORBIDDEN,
            view::message(None, "Console closed", &error.to_string(), "/console/login"),
        ),
        _ => Redirect::to("/console/login").into_response(),
    }
}

/// A form post without a valid session or CSRF token.
fn refused_write(error: SessionError) -> Response {
    let status = match error {
        SessionError::NoTokens | SessionError::BadCsrf => StatusCode::FORBIDDEN,
        SessionError::Missing | SessionError::Invalid => StatusCode::UNAUTHORIZED,
    };
    page(
        status,
        view::message(None, "Refused", &error.to_string(), "/console/login"),
    )
}

/// A cross-site form post: the browser names another origin than this host.
fn foreign_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin != format!("http://{host}") && origin != format!("https://{host}")
}

fn secure_cookie(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

async fn login_page(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if state.tokens.is_empty() {
        return refused_read(SessionError::NoTokens);
    }
    if session_of(&state, &headers).await.is_ok() {
        return Redirect::to("/console/").into_response();
    }
    page(StatusCode::OK, view::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if state.tokens.is_empty() {
        return refused_write(SessionError::NoTokens);
    }
    if foreign_origin(&headers) {
        return refused_write(SessionError::BadCsrf);
    }
    let approver = session::approver_of(&state.tokens, form.token.trim());
    let epoch = match &approver {
        Some(approver) => state
            .store
            .read(|c| control::session_epoch(c, approver))
            .await
            .unwrap_or(0),
        None => 0,
    };
    let issued =
        approver.and_then(|approver| session::issue(&state.tokens, &approver, epoch, now_unix()));
    let Some(session) = issued else {
        tracing::warn!("console: sign-in with an unknown token");
        return page(
            StatusCode::UNAUTHORIZED,
            view::login(Some(
                "That token is not one of nodemedic's approver tokens.",
            )),
        );
    };
    tracing::info!(approver = %session.approver, "console: signed in");
    let cookie = session::set_cookie(Some(session.cookie_value()), secure_cookie(&headers));
    let mut response = Redirect::to("/console/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match checked_post(&state, &headers, &form.csrf).await {
        Ok(session) => session,
        Err(error) => return refused_write(error),
    };
    // Server-side: every session of this approver ends, on every replica, not just the cookie.
    if let Err(error) = state
        .store
        .write(|tx| tx.end_sessions(&session.approver))
        .await
    {
        tracing::warn!(%error, "console: the sign-out could not be recorded");
        return refused_write(SessionError::Invalid);
    }
    tracing::info!(approver = %session.approver, "console: signed out");
    let mut response = Redirect::to("/console/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&session::set_cookie(None, false)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The session of a form post whose origin and CSRF token check out.
async fn checked_post(
    state: &HttpState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session, SessionError> {
    let session = session_of(state, headers).await?;
    if foreign_origin(headers) {
        return Err(SessionError::BadCsrf);
    }
    session.check_csrf(&state.tokens, csrf)?;
    Ok(session)
}

#[derive(Deserialize, Default)]
struct FilterQuery {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    nodegroup: String,
    #[serde(default)]
    cause: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    since: String,
}

/// The earliest opening time `since` admits, as the store's timestamps spell it.
fn since_cutoff(since: &str, now: OffsetDateTime) -> Option<String> {
    let span = match since {
        "1h" => time::Duration::hours(1),
        "24h" => time::Duration::hours(24),
        "7d" => time::Duration::days(7),
        "30d" => time::Duration::days(30),
        _ => return None,
    };
    Some(crate::core::time::timestamp(now - span))
}

/// The incidents a filter keeps, newest first.
pub fn filter_incidents(
    incidents: Vec<IncidentSummary>,
    cluster: &str,
    nodegroup: &str,
    cause: &str,
    outcome: &str,
    opened_after: Option<&str>,
) -> Vec<IncidentSummary> {
    let mut kept: Vec<IncidentSummary> = incidents
        .into_iter()
        .filter(|i| cluster.is_empty() || i.cluster == cluster)
        .filter(|i| {
            nodegroup.is_empty()
                || i.nodegroup == nodegroup
                || i.nodegroups
                    .iter()
                    .any(|n| n.rsplit('/').next() == Some(nodegroup))
        })
        .filter(|i| cause.is_empty() || i.cause == cause)
        .filter(|i| outcome.is_empty() || i.outcome.as_str() == outcome)
        .filter(|i| opened_after.is_none_or(|after| i.opened_at.as_str() >= after))
        .collect();
    kept.sort_by(|a, b| b.opened_at.cmp(&a.opened_at));
    kept
}

fn choices(incidents: &[IncidentSummary]) -> view::Choices {
    let distinct = |pick: &dyn Fn(&IncidentSummary) -> &str| {
        incidents
            .iter()
            .map(|i| pick(i).to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    view::Choices {
        clusters: distinct(&|i| &i.cluster),
        nodegroups: distinct(&|i| &i.nodegroup),
        causes: distinct(&|i| &i.cause),
        outcomes: distinct(&|i| i.outcome.as_str()),
    }
}

fn server_error(error: impl std::fmt::Display) -> Response {
    tracing::warn!(%error, "console: the store could not be read");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        view::message(
            None,
            "The store could not be read",
            &error.to_string(),
            "/console/",
        ),
    )
}

async fn health(state: &HttpState, context: &ConsoleContext) -> Health {
    let controls = state
        .store
        .read(|c| {
            Ok((
                control::kill_switch(c)?,
                control::breakers(c)?
                    .into_iter()
                    .filter(|b| b.state == "open")
                    .collect::<Vec<_>>(),
                control::plans(c, Some(PlanStatus::AwaitingApproval))?.len(),
            ))
        })
        .await;
    let (kill_switch, open_breakers, awaiting) = match controls {
        Ok(controls) => controls,
        Err(error) => {
            tracing::warn!(%error, "console: controls could not be read");
            (None, Vec::new(), 0)
        }
    };
    let queue = match &context.queue {
        Some((sqs, url)) => crate::intake::queue::depth(sqs, url)
            .await
            .map(|(visible, in_flight, delayed)| QueueDepth {
                visible,
                in_flight,
                delayed,
            })
            .map_err(|e| e.to_string()),
        None => Err("no queue in this process".into()),
    };
    let ready = state.readiness.report();
    let (last_receive_ms, receive_error) = state.readiness.last_receive();
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64;
    Health {
        mode: context.mode.clone(),
        kill_switch,
        open_breakers,
        queue,
        last_receive: (
            last_receive_ms.map(|at| now_ms.saturating_sub(at) / 1000),
            receive_error,
        ),
        oldest_message_age: state.readiness.last_message_age(),
        chain: chain_status(state, context).await,
        ready: ready.ready,
        not_ready_because: ready.reasons,
        awaiting,
    }
}

async fn chain_status(state: &HttpState, context: &ConsoleContext) -> Result<u64, String> {
    if let Ok(cached) = context.chain.lock()
        && let Some((at, status)) = cached.as_ref()
        && at.elapsed() < CHAIN_CHECK_EVERY
    {
        return status.clone();
    }
    let status = match state.store.read(|r| r.verify_chain()).await {
        Ok(Ok(records)) => Ok(records),
        Ok(Err(broken)) => Err(format!(
            "chain {} at record {}: {}",
            broken.chain, broken.seq, broken.why
        )),
        Err(error) => Err(format!("not verified: {error}")),
    };
    if let Ok(mut cached) = context.chain.lock() {
        *cached = Some((Instant::now(), status.clone()));
    }
    status
}

fn context(state: &HttpState) -> Option<&ConsoleContext> {
    state.console.as_deref()
}

async fn index(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(filter): Query<FilterQuery>,
) -> Response {
    let session = match session_of(&state, &headers).await {
        Ok(session) => session,
        Err(error) => return refused_read(error),
    };
    let Some(context) = context(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let incidents = match state.store.read(|c| c.list(INCIDENTS_READ)).await {
        Ok(incidents) => incidents,
        Err(error) => return server_error(error),
    };
    let options = choices(&incidents);
    let cutoff = since_cutoff(&filter.since, OffsetDateTime::now_utc());
    let shown = filter_incidents(
        incidents,
        &filter.cluster,
        &filter.nodegroup,
        &filter.cause,
        &filter.outcome,
        cutoff.as_deref(),
    );
    let health = health(&state, context).await;
    let filters = Filters {
        cluster: filter.cluster,
        nodegroup: filter.nodegroup,
        cause: filter.cause,
        outcome: filter.outcome,
        since: filter.since,
    };
    page(
        StatusCode::OK,
        view::index(
            &viewer(&state, &session),
            &health,
            &filters,
            &options,
            &shown,
        ),
    )
}

async fn plans(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let session = match session_of(&state, &headers).await {
        Ok(session) => session,
        Err(error) => return refused_read(error),
    };
    let all = match state.store.read(|c| control::plans(c, None)).await {
        Ok(all) => all,
        Err(error) => return server_error(error),
    };
    let (mut awaiting, mut recent): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|p| p.status == PlanStatus::AwaitingApproval);
    awaiting.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
    recent.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
    recent.truncate(20);
    page(
        StatusCode::OK,
        view::plans(
            &viewer(&state, &session),
            &awaiting,
            &recent,
            state.plan_ttl,
            OffsetDateTime::now_utc(),
        ),
    )
}

#[derive(Deserialize, Default)]
struct IncidentQuery {
    decided: Option<String>,
}

async fn incident(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<IncidentQuery>,
) -> Response {
    let session = match session_of(&state, &headers).await {
        Ok(session) => session,
        Err(error) => return refused_read(error),
    };
    let viewer = viewer(&state, &session);
    let read = state
        .store
        .read(|c| {
            let Some(summary) = c.incident(&id)? else {
                return Ok(None);
            };
            let records = c.records(&id)?;
            let plans: Vec<_> = control::plans(c, None)?
                .into_iter()
                .filter(|p| p.incident_id == id)
                .collect();
            Ok(Some((summary, records, plans)))
        })
        .await;
    match read {
        Ok(Some((summary, records, mut plans))) => {
            plans.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
            let notice = match query.decided.as_deref() {
                Some("approved") => Some(
                    "Approved. The daemon collects the evidence again and applies the plan if the world still matches it.",
                ),
                Some("rejected") => Some("Rejected."),
                _ => None,
            };
            page(
                StatusCode::OK,
                view::incident(
                    &viewer,
                    &summary,
                    &records,
                    &plans,
                    state.plan_ttl,
                    OffsetDateTime::now_utc(),
                    notice,
                ),
            )
        }
        Ok(None) => page(
            StatusCode::NOT_FOUND,
            view::message(
                Some(&viewer),
                "No such incident",
                &format!("There is no incident {id}."),
                "/console/",
            ),
        ),
        Err(error) => server_error(error),
    }
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn approve(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    decide(state, headers, id, true, form).await
}

async fn reject(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    decide(state, headers, id, false, form).await
}

async fn decide(
    state: HttpState,
    headers: HeaderMap,
    id: String,
    approve: bool,
    form: DecisionForm,
) -> Response {
    let session = match checked_post(&state, &headers, &form.csrf).await {
        Ok(session) => session,
        Err(error) => return refused_write(error),
    };
    let viewer = viewer(&state, &session);
    let reason = Some(form.reason.trim().to_string()).filter(|r| !r.is_empty());
    let store = state.store.clone();
    let by = session.approver.clone();
    let plan_ttl = state.plan_ttl;
    let plan = id.clone();
    let decided = tokio::task::spawn_blocking(move || {
        operate::decide_plan(&store, &plan, approve, &by, reason.as_deref(), plan_ttl)
    })
    .await;
    match decided {
        Ok(Ok(row)) => {
            tracing::info!(plan_id = %row.plan_id, approver = %session.approver, status = %row.status, "console: plan decided");
            if approve {
                state.approvals.notify_one();
            }
            let decided = if approve { "approved" } else { "rejected" };
            Redirect::to(&format!(
                "/console/incidents/{}?decided={decided}",
                row.incident_id
            ))
            .into_response()
        }
        Ok(Err(OperateError::NoSuchPlan(plan))) => page(
            StatusCode::NOT_FOUND,
            view::message(
                Some(&viewer),
                "No such plan",
                &format!("There is no plan {plan}."),
                "/console/plans",
            ),
        ),
        Ok(Err(refused @ OperateError::NotAwaiting { .. })) => page(
            StatusCode::CONFLICT,
            view::message(
                Some(&viewer),
                "Refused",
                &refused.to_string(),
                "/console/plans",
            ),
        ),
        Ok(Err(other)) => server_error(other),
        Err(error) => server_error(error),
    }
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/console.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
