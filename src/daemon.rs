//! Wiring for `nodemedic run`: settings to a running queue loop, and a clean stop.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::audit::{AuditError, AuditStore};
use crate::aws::{self, ClientPool};
use crate::config::{ConfigError, Settings};
use crate::intake::queue::{IntakeStats, QueueLoop};
use crate::pipeline::Pipeline;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("no AWS region: set `region` in the config, NODEMEDIC_REGION or AWS_REGION")]
    NoRegion,
}

/// What a run did, printed when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub received: u64,
    pub deleted: u64,
    pub kept: u64,
    pub receive_errors: u64,
}

/// Runs the daemon until `shutdown` fires (or, with `once`, until the queue is drained).
pub async fn run(
    settings: Settings,
    once: bool,
    shutdown: CancellationToken,
) -> Result<RunSummary, DaemonError> {
    let sdk = aws::load_config(settings.region.as_deref()).await;
    run_with(settings, sdk, once, shutdown).await
}

/// [`run`] with an SDK configuration already loaded (the demo points it at the emulator).
pub async fn run_with(
    settings: Settings,
    sdk: SdkConfig,
    once: bool,
    shutdown: CancellationToken,
) -> Result<RunSummary, DaemonError> {
    let queue_url = settings.require_queue()?.to_string();
    let store = AuditStore::open(&settings.audit.path)?;
    if sdk.region().is_none() {
        return Err(DaemonError::NoRegion);
    }
    let sqs = aws::sqs_client(&sdk, Duration::from_secs(settings.intake.wait_time_secs));
    let clients = Arc::new(ClientPool::new(sdk));
    let pipeline = Arc::new(Pipeline::new(
        settings.mode,
        settings.remediation.clone(),
        store,
        clients,
    ));
    let stats = Arc::new(IntakeStats::default());
    let intake = QueueLoop {
        sqs,
        queue_url: queue_url.clone(),
        settings: settings.intake.clone(),
        pipeline,
        stats: stats.clone(),
    };
    info!(queue = %queue_url, mode = %settings.mode, audit = %settings.audit.path.display(), once, "nodemedic running");
    intake.run(shutdown, once).await;
    let (received, deleted, kept, receive_errors) = stats.snapshot();
    info!(received, deleted, kept, receive_errors, "nodemedic stopped");
    Ok(RunSummary {
        received,
        deleted,
        kept,
        receive_errors,
    })
}
