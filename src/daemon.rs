//! Wiring for `nodemedic run`: settings to a running queue loop, and a clean stop.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use tokio_util::sync::CancellationToken;

use crate::shutdown::Shutdown;
use tracing::info;

use crate::audit::{AuditError, AuditStore};
use crate::aws::check_credentials;
use crate::aws::{self, ClientPool, MemberAccess};
use crate::core::mac_key::MacKey;
use crate::http::HttpState;
use crate::http::console::ConsoleContext;
use crate::intake::publish::Publisher;
use crate::intake::queue::{IntakeStats, QueueLoop, max_receives};
use crate::intake::signing::EventKey;
use crate::notify::Notifier;
use crate::pipeline::{AwsAccounts, Pipeline, PipelineConfig};
use crate::settings::{ConfigError, Settings, StoreBackend};
use crate::telemetry::LogLevel;
use crate::telemetry::health::Readiness;
use crate::telemetry::metrics::Metrics;
use crate::watch::Watcher;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("no AWS region: set `region` in the config, NODEMEDIC_REGION or AWS_REGION")]
    NoRegion,
    #[error("cannot tell which AWS account the credentials belong to: {0}")]
    Identity(#[from] crate::aws::AwsError),
    #[error("notifications: {0}")]
    Notify(String),
    #[error("the key nodemedic signs its own events with: {0}")]
    EventKey(String),
}

async fn approval_worker(
    pipeline: Arc<Pipeline>,
    wake: Arc<tokio::sync::Notify>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = wake.notified() => {}
            _ = stop.cancelled() => return,
        }
        match pipeline.process_approvals().await {
            Ok(pass) if pass != Default::default() => info!(?pass, "approved plans processed"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "approved plans could not be processed"),
        }
    }
}

/// The HTTP API, probes, metrics and console, until the services wind down.
fn start_http(
    address: std::net::SocketAddr,
    state: HttpState,
    shutdown: &Shutdown,
) -> tokio::task::JoinHandle<()> {
    let stop = shutdown.winding_down();
    tokio::spawn(async move {
        if let Err(error) = crate::http::serve(address, state, stop).await {
            tracing::error!(%error, %address, "the HTTP API could not start");
        }
    })
}

/// The health watchers: one per served account (the hub, and every member through its role) in
/// the daemon's region, each publishing to the hub's queue, where the event is handled in its own
/// account. They stop when the services wind down.
async fn start_watchers(
    settings: &Settings,
    clients: &ClientPool,
    hub_account: &str,
    region: &str,
    publisher: &Publisher,
    shutdown: &Shutdown,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut watchers = Vec::new();
    if !settings.watch.enabled() {
        return watchers;
    }
    let mut watched = vec![(hub_account.to_string(), clients.for_hub(region))];
    for member in clients.members() {
        match clients.for_account(&member, region).await {
            Ok(member_clients) => watched.push((member, member_clients)),
            Err(refused) => tracing::warn!(%refused, "member account not watched"),
        }
    }
    info!(clusters = ?settings.watch.clusters, interval_secs = settings.watch.interval_secs,
        accounts = watched.len(), "health watcher on");
    for (account, account_clients) in watched {
        let watcher = Watcher {
            clients: account_clients,
            account,
            region: region.to_string(),
            clusters: settings.watch.clusters.clone(),
            interval: Duration::from_secs(settings.watch.interval_secs),
            publisher: publisher.clone(),
        };
        let published = watcher.first_pass().await;
        watchers.push(tokio::spawn(
            watcher.run(published, shutdown.winding_down()),
        ));
    }
    watchers
}

/// What a run did, printed when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub received: u64,
    pub deleted: u64,
    pub kept: u64,
    pub receive_errors: u64,
}

/// Opens the store the settings name: the SQLite file, or the DynamoDB tables (with the SDK's
/// configuration, which is loaded when not given).
pub async fn open_store(
    settings: &Settings,
    sdk: Option<&SdkConfig>,
) -> Result<AuditStore, DaemonError> {
    match settings.store.backend {
        StoreBackend::Dynamodb => {
            let loaded;
            let sdk = match sdk {
                Some(sdk) => sdk,
                None => {
                    loaded = aws::load_config(settings.region.as_deref()).await;
                    &loaded
                }
            };
            Ok(AuditStore::open_dynamo(
                aws_sdk_dynamodb::Client::new(sdk),
                &settings.store.state_table,
                &settings.store.audit_table,
                Duration::from_secs(settings.store.event_ttl_days * 86_400),
            )?)
        }
        StoreBackend::Sqlite => {
            let store = AuditStore::open_with_journal(
                &settings.audit.path,
                settings.audit.journal_mode.as_str(),
            )?;
            if let Some(key) = anchor_key(settings) {
                store.anchor_with(key);
            }
            Ok(store)
        }
    }
}

/// The key the audit chain's head is signed with, when one is set.
pub fn anchor_key(settings: &Settings) -> Option<MacKey> {
    let key = settings.audit.anchor_key.as_bytes();
    (!key.is_empty()).then(|| MacKey::new(key.to_vec()))
}

/// What the process set up before the daemon starts, for the HTTP API to control.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    /// Changes the log level at runtime (`PUT /v1/log-level`); `None` when another subscriber
    /// was installed first.
    pub log_level: Option<LogLevel>,
}

/// Runs the daemon until a stop is requested (or, with `once`, until the queue is drained).
pub async fn run(
    settings: Settings,
    once: bool,
    shutdown: Shutdown,
    runtime: Runtime,
) -> Result<RunSummary, DaemonError> {
    let sdk = aws::load_config(settings.region.as_deref()).await;
    run_with(settings, sdk, once, shutdown, runtime).await
}

/// [`run`] with an SDK configuration already loaded (the demo points it at the emulator).
pub async fn run_with(
    settings: Settings,
    sdk: SdkConfig,
    once: bool,
    shutdown: Shutdown,
    runtime: Runtime,
) -> Result<RunSummary, DaemonError> {
    let queue_url = settings.require_queue()?.to_string();
    let store = open_store(&settings, Some(&sdk)).await?;
    let store_location = store.location();
    let Some(region) = sdk.region().map(|r| r.to_string()) else {
        return Err(DaemonError::NoRegion);
    };
    let sqs = aws::sqs_client(&sdk, Duration::from_secs(settings.intake.wait_time_secs));
    // The replicas share one key through the store: the first to start makes it.
    let fresh = EventKey::generate().to_hex();
    let stored = store.write(|tx| tx.event_key(&fresh)).await?;
    let event_key =
        EventKey::from_hex(&stored).map_err(|e| DaemonError::EventKey(e.to_string()))?;
    let publisher = Publisher {
        sqs: sqs.clone(),
        queue_url: queue_url.clone(),
        key: event_key.clone(),
    };
    let sts = aws_sdk_sts::Client::new(&sdk);
    // The one GetCallerIdentity at start: which account is the hub (served with the daemon's
    // own credentials) and its partition (for member role ARNs); the watcher reuses it.
    let hub = aws::caller_identity(&sts).await?;
    let sdk_for_notify = sdk.clone();
    let clients = Arc::new(
        ClientPool::new(
            sdk,
            hub.clone(),
            MemberAccess::from_settings(&settings.accounts),
        )
        .with_cluster_api(crate::kubernetes::ClusterApiOptions {
            enabled: settings.cluster_api.enabled,
            timeout: Duration::from_secs(settings.cluster_api.timeout_secs),
            join_deadline_secs: settings.join_deadline_secs(),
        }),
    );
    if settings.accounts.hub_and_spoke() {
        info!(hub = %hub.account, members = ?clients.members(), role = %settings.accounts.role_name,
            "hub and spoke: member accounts are served through their role");
    }
    let notifier = Notifier::new(&settings.notify, &sdk_for_notify)
        .map_err(|e| DaemonError::Notify(e.to_string()))?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new(Duration::from_secs(
        settings.http.ready_window_secs,
    )));
    let mut pipeline = Pipeline::new(
        PipelineConfig::from_settings(&settings),
        store,
        AwsAccounts(clients.clone()),
    )
    .with_notifier(notifier)
    .with_metrics(metrics.clone())
    .with_event_key(event_key)
    .with_stopping(shutdown.overdue());
    if settings.join_deadline_secs() > 0 {
        pipeline = pipeline.with_join_checks(
            publisher.clone(),
            Duration::from_secs(settings.join_deadline_secs()),
        );
    }
    let pipeline = Arc::new(pipeline);
    let store = pipeline.store().clone();
    // Approved plans are acted on before the queue is read (so a drain-once run applies them),
    // then whenever the approvals API wakes the worker or its poll interval passes.
    let approvals = Arc::new(tokio::sync::Notify::new());
    if let Err(error) = pipeline.process_approvals().await {
        tracing::warn!(%error, "approved plans could not be processed");
    }
    let worker = tokio::spawn(approval_worker(
        pipeline.clone(),
        approvals.clone(),
        Duration::from_secs(settings.guard.approval_poll_secs),
        shutdown.winding_down(),
    ));
    let http = settings.http.address.parse().ok().map(|address| {
        let state = HttpState {
            store,
            tokens: settings.http.tokens.clone(),
            approvals: approvals.clone(),
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            log_level: runtime.log_level.clone(),
            plan_ttl: Duration::from_secs(settings.guard.plan_ttl_secs),
            console: settings.http.console.then(|| {
                Arc::new(ConsoleContext::new(
                    settings.mode.as_str(),
                    Some((sqs.clone(), queue_url.clone())),
                ))
            }),
            limits: crate::http::Limits::from(&settings.http),
            gate: Default::default(),
            controls_read: Default::default(),
        };
        start_http(address, state, &shutdown)
    });
    let watchers = start_watchers(
        &settings,
        &clients,
        &hub.account,
        &region,
        &publisher,
        &shutdown,
    )
    .await;
    let stats = Arc::new(IntakeStats::default());
    let credentials = tokio::spawn(check_credentials(
        sts.clone(),
        readiness.clone(),
        shutdown.winding_down(),
    ));
    let intake = QueueLoop {
        max_receives: max_receives(&sqs, &queue_url).await,
        sqs,
        queue_url: queue_url.clone(),
        settings: settings.intake.clone(),
        handler: pipeline,
        stats: stats.clone(),
        metrics,
        readiness,
        shutdown: shutdown.clone(),
    };
    info!(queue = %queue_url, mode = %settings.mode, store = %store_location, once, "nodemedic running");
    intake.run(once).await;
    shutdown.wind_down();
    for watcher in watchers {
        let _ = watcher.await;
    }
    // An approved plan being applied gets the same grace as the queue's work in flight.
    let mut worker = worker;
    let grace = Duration::from_secs(settings.intake.shutdown_grace_secs);
    if tokio::time::timeout(grace, &mut worker).await.is_err() {
        shutdown.give_up();
        let _ = worker.await;
    }
    let _ = credentials.await;
    if let Some(http) = http {
        let _ = http.await;
    }
    let (received, deleted, kept, receive_errors) = stats.snapshot();
    info!(received, deleted, kept, receive_errors, "nodemedic stopped");
    Ok(RunSummary {
        received,
        deleted,
        kept,
        receive_errors,
    })
}
