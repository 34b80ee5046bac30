//! The dry-run permission check of a step the guard holds in dry-run mode, recorded as a
//! mutation would be: the DryRun=true calls are announced before they are sent, because an
//! endpoint that ignores DryRun performs them; a call performed anyway is recorded and undone.

use tracing::warn;

use super::execute::Run;
use super::{Accounts, Pipeline, PipelineError};
use crate::act::{self, Actuator, Permission, StepStatus};
use crate::audit::NodegroupKey;
use crate::core::journal::{self, Entry};
use crate::core::plan::Step;
use crate::core::time::now;

impl<W: Accounts> Pipeline<W> {
    pub(super) async fn check_permission<A: Actuator>(
        &self,
        actuator: &A,
        incident_id: &str,
        key: &NodegroupKey,
        position: usize,
        step: &Step,
        run: &mut Run,
    ) -> Result<Permission, PipelineError> {
        if !step.action.takes_dry_run() {
            // Nothing is sent: the actuator answers why it cannot check.
            return Ok(act::check_permission(actuator, step).await.permission);
        }
        let intent = Entry::StepIntent(journal::StepIntent {
            position,
            fix: step.fix,
            rollback: None,
            dry_run: Some(true),
            calls: step.action.api_calls(),
            at: now(),
        });
        self.store
            .write(|tx| tx.record(Some(incident_id), None, &intent).map(drop))
            .await?;
        let check = act::check_permission(actuator, step).await;
        if let Some(performed) = &check.performed {
            self.failure_evidence.forget_all();
            warn!(fix = %step.fix, "the endpoint ignored DryRun and performed the call; undoing it");
            let undo = self
                .undo_step(actuator, incident_id, key, position, step, performed, false)
                .await?;
            run.escalations.push(format!(
                "{}: the endpoint ignored DryRun and performed the call; {}",
                step.fix,
                match undo.result.status {
                    StepStatus::RolledBack => "nodemedic undid it".to_string(),
                    _ => format!("it was not undone: {}", undo.result.detail),
                }
            ));
        }
        Ok(check.permission)
    }
}
