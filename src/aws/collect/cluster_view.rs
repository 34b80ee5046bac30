//! The cluster's own view, collected with the whole checklist: its API (through `kubernetes`),
//! the access entry aws-auth is judged against, and the console output of the instances that
//! ran past the join deadline without a Node.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::nodegroup::access_entry;
use crate::aws::{AwsClients, AwsError, AwsResultExt};
use crate::core::boot_log::digest;
use crate::core::evidence::{
    AccessEntryLookup, BootLog, BootLogLookup, CallLog, ClusterView, Evidence, InstanceFacts,
    NodeInstance,
};
use crate::kubernetes::{ClusterRef, read_view};

/// Console outputs read per incident: the first few unregistered instances tell the story.
const BOOT_LOGS_READ: usize = 3;

/// Reads the cluster's view into `evidence`, then what it calls for.
pub(super) async fn cluster_view(
    clients: &AwsClients,
    evidence: &mut Evidence,
    instances: &BTreeMap<String, InstanceFacts>,
    calls: &mut CallLog,
) -> Result<(), AwsError> {
    let options = &clients.cluster_api;
    let Some(cluster) = evidence.cluster.as_ref().filter(|_| options.enabled) else {
        return Ok(());
    };
    let ours: Vec<NodeInstance> = evidence
        .group
        .iter()
        .flat_map(|group| group.instances.iter())
        .filter_map(|member| instances.get(&member.id))
        .filter(|instance| instance.state == "running")
        .map(|instance| NodeInstance {
            id: instance.id.clone(),
            availability_zone: instance.availability_zone.clone(),
            private_dns_name: instance.private_dns_name.clone(),
            launched_at: instance.launched_at,
        })
        .collect();
    let credentials = clients.credentials.get().await;
    let reference = ClusterRef {
        name: &cluster.name,
        region: &clients.region,
        endpoint: cluster.endpoint.as_deref(),
        certificate_authority: cluster.certificate_authority.as_deref(),
        nodegroup: &evidence.nodegroup.name,
    };
    let view = read_view(&reference, credentials, ours, options).await;
    let mode = cluster.authentication_mode.clone();
    if let ClusterView::Seen(objects) = &view {
        // aws-auth is judged against the access entries too on a cluster that reads both.
        if mode.as_deref() == Some("API_AND_CONFIG_MAP")
            && let Some(identity) = evidence.identity.as_mut()
            && identity.access_entry == AccessEntryLookup::NotApplicable
        {
            identity.access_entry = access_entry(
                clients,
                &evidence.nodegroup.cluster,
                &identity.node_role_arn,
                calls,
            )
            .await?;
        }
        for instance in objects.unregistered().into_iter().take(BOOT_LOGS_READ) {
            let lookup = console_output(clients, &instance.id, calls).await?;
            evidence.boot_logs.push(BootLog {
                instance_id: instance.id.clone(),
                lookup,
            });
        }
    }
    evidence.kubernetes = Some(view);
    Ok(())
}

/// GetConsoleOutput, the newest output where the instance supports it (Nitro), else the
/// buffered one.
async fn console_output(
    clients: &AwsClients,
    instance_id: &str,
    calls: &mut CallLog,
) -> Result<BootLogLookup, AwsError> {
    // Latest=true is for Nitro instances only; the others keep a buffered copy. A refusal is
    // refused again without Latest, and then recorded.
    let mut refused = None;
    let mut answer = None;
    for latest in [true, false] {
        calls.record("ec2:GetConsoleOutput");
        match clients
            .ec2
            .get_console_output()
            .instance_id(instance_id)
            .set_latest(latest.then_some(true))
            .send()
            .await
            .op("ec2:GetConsoleOutput")
        {
            Ok(output) => {
                answer = Some(output);
                break;
            }
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => refused = Some(error),
        }
    }
    let Some(output) = answer else {
        let reason = refused
            .map(|e| format!("ec2:GetConsoleOutput: {}: {}", e.code, e.message))
            .unwrap_or_default();
        return Ok(BootLogLookup::Unavailable { reason });
    };
    let Some(encoded) = output.output().filter(|o| !o.is_empty()) else {
        return Ok(BootLogLookup::Unavailable {
            reason: "EC2 has no console output for the instance yet".into(),
        });
    };
    match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
        Ok(raw) => Ok(BootLogLookup::Read(digest(&raw))),
        Err(error) => Ok(BootLogLookup::Unavailable {
            reason: format!("the console output is not base64: {error}"),
        }),
    }
}
