//! `nodemedic diagnose`: the whole checklist on a cluster's nodegroups now, read-only.

use std::process::ExitCode;

use super::*;

/// Exit code of `diagnose` when a nodegroup has a blocking cause.
const EXIT_BLOCKED: u8 = 3;

pub(super) async fn diagnose(args: DiagnoseArgs) -> Result<ExitCode, CliError> {
    let sdk = crate::aws::load_config(args.region.as_deref()).await;
    let region = sdk.region().map(|r| r.to_string()).ok_or_else(|| {
        CliError::Refused("no AWS region: pass --region or set AWS_REGION".into())
    })?;
    let account = crate::aws::caller_account(&aws_sdk_sts::Client::new(&sdk)).await?;
    let mut clients = crate::aws::AwsClients::new(&sdk);
    clients.cluster_api = crate::kubernetes::ClusterApiOptions {
        enabled: !args.no_cluster_api,
        timeout: std::time::Duration::from_secs(args.cluster_api_timeout),
        join_deadline_secs: args.join_deadline,
    };
    let request = crate::diagnose::Request {
        account,
        region,
        cluster: args.cluster,
        nodegroup: args.nodegroup,
        instance: args.instance,
    };
    let reports = crate::diagnose::run(&clients, &request).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", crate::report::diagnose_text(&reports));
    }
    Ok(if reports.iter().all(|r| r.healthy) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BLOCKED)
    })
}
