//! `nodemedic audit`: list, show, export and verify the audit trail.

use std::process::ExitCode;

use crate::audit::AnchorState;

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
            let key = crate::daemon::anchor_key(&load_settings(&settings)?);
            let store = open_store(settings).await?;
            let mut intact = match store.read(|r| r.verify_chain()).await? {
                Ok(count) => {
                    println!("audit chain intact: {count} records");
                    true
                }
                Err(broken) => {
                    println!(
                        "audit chain {} BROKEN at record {}: {}",
                        broken.chain, broken.seq, broken.why
                    );
                    false
                }
            };
            for anchor in store.anchors(key.as_ref()).await? {
                let head = &anchor.head;
                let age = crate::core::time::Timestamp::parse(&head.at)
                    .map(|at| {
                        format!(
                            "{} s ago",
                            crate::core::time::Timestamp::now().since(at).as_secs()
                        )
                    })
                    .unwrap_or_else(|_| "at an unknown time".into());
                let (verdict, holds) = match anchor.state {
                    AnchorState::Signed => ("signed with audit.anchor_key", true),
                    AnchorState::NoKey => (
                        "signed, but no audit.anchor_key was given to check it",
                        true,
                    ),
                    // With a key set, every write signs the head: an unsigned one was rewritten.
                    AnchorState::Unsigned if key.is_some() => {
                        ("NOT SIGNED although audit.anchor_key is set", false)
                    }
                    AnchorState::Unsigned => (
                        "unsigned (no audit.anchor_key): a rewrite of the whole file would not show",
                        true,
                    ),
                    AnchorState::Mismatch => {
                        ("SIGNATURE DOES NOT MATCH: the head was rewritten", false)
                    }
                };
                println!(
                    "anchor of chain {} at record {}, moved {age}: {verdict}",
                    head.chain, head.seq
                );
                intact &= holds;
            }
            Ok(if intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
