//! `nodemedic audit`: list, show, export and verify the audit trail.

use std::process::ExitCode;

use super::*;

pub(super) async fn audit(command: AuditCommand) -> Result<ExitCode, CliError> {
    match command {
        AuditCommand::List {
            settings,
            json,
            limit,
        } => {
            let store = open_store(settings).await?;
            let incidents = store.read(|c| c.list(limit)).await?;
            if json {
                for incident in &incidents {
                    println!("{}", crate::report::incident_json(incident));
                }
            } else {
                print!("{}", crate::report::list_text(&incidents));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Show { id, settings, json } => {
            let store = open_store(settings).await?;
            let incident = store
                .read(|c| c.incident(&id))
                .await?
                .ok_or_else(|| CliError::Refused(format!("no incident {id}")))?;
            let records = store.read(|c| c.records(&id)).await?;
            if json {
                println!("{}", crate::report::show_json(&incident, &records));
            } else {
                print!("{}", crate::report::show_text(&incident, &records));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export {
            settings,
            after,
            out,
        } => {
            let store = open_store(settings).await?;
            let records = store.read(|r| r.all_records(after)).await?;
            let mut lines = String::new();
            for record in &records {
                lines.push_str(&serde_json::to_string(record)?);
                lines.push('\n');
            }
            match out {
                Some(path) => std::fs::write(&path, lines).map_err(|source| CliError::Write {
                    path: path.display().to_string(),
                    source,
                })?,
                None => print!("{lines}"),
            }
            eprintln!("{} records exported", records.len());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { settings } => {
            let store = open_store(settings).await?;
            match store.read(|r| r.verify_chain()).await? {
                Ok(count) => {
                    println!("audit chain intact: {count} records");
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    println!(
                        "audit chain {} BROKEN at record {}: {}",
                        broken.chain, broken.seq, broken.why
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
