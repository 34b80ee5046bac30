//! The join checklist as text: one row per check (check, result, evidence, fix), and what
//! nodemedic cannot see.

use std::fmt::Write as _;

use crate::core::checks::{CheckResult, CheckStatus, NOT_CHECKED, Unseen};

const EVIDENCE_WIDTH: usize = 58;
const FIX_WIDTH: usize = 48;

/// The checklist table, indented by two spaces.
pub fn checklist_table(checks: &[CheckResult]) -> String {
    let mut out = String::new();
    if checks.is_empty() {
        return out;
    }
    let id_width = checks
        .iter()
        .map(|result| result.check.id().len())
        .max()
        .unwrap_or(0);
    let _ = writeln!(out, "  checklist:");
    let _ = writeln!(
        out,
        "    {:id_width$}  {:7}  {:EVIDENCE_WIDTH$}  FIX",
        "CHECK", "RESULT", "EVIDENCE"
    );
    for result in checks {
        let evidence = match (&result.skipped, result.evidence.first()) {
            (Some(skip), _) => skip.to_string(),
            (None, Some(fact)) => {
                let more = result.evidence.len().saturating_sub(1);
                let first = format!("{}: {}", fact.resource, fact.observed);
                if more > 0 {
                    format!("{first} (+{more} more)")
                } else {
                    first
                }
            }
            (None, None) => "nothing to examine".into(),
        };
        let fix = match result.result {
            CheckStatus::Fail | CheckStatus::Warn => result
                .remedy
                .as_deref()
                .and_then(|remedy| remedy.lines().next())
                .unwrap_or(""),
            CheckStatus::Pass | CheckStatus::Skipped => "",
        };
        let _ = writeln!(
            out,
            "    {:id_width$}  {:7}  {:EVIDENCE_WIDTH$}  {}",
            result.check.id(),
            result.result.as_str(),
            clip(&evidence, EVIDENCE_WIDTH),
            clip(fix, FIX_WIDTH)
        );
    }
    out
}

/// What nodemedic does not check, grouped by why, with the NJ ids of each group.
pub fn not_checked_text() -> String {
    let mut out = String::from("  not checked (nodemedic cannot see these):\n");
    for why in [
        Unseen::ClusterObjects,
        Unseen::OnTheNode,
        Unseen::Logs,
        Unseen::NotManagedNodegroups,
        Unseen::NotYet,
    ] {
        let ids: Vec<&str> = NOT_CHECKED
            .iter()
            .filter(|unseen| unseen.why == why)
            .map(|unseen| unseen.nj)
            .collect();
        if !ids.is_empty() {
            let _ = writeln!(out, "    {}: {}", ids.join(" "), why.explain());
        }
    }
    out
}

/// `text` cut to `width` characters, ending in `…` when cut.
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(width.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::checks::diagnose;
    use crate::core::evidence::Evidence;

    #[test]
    fn the_table_has_a_row_per_check_with_its_result() {
        let diagnosis = diagnose(&Evidence::lab_000());
        let table = checklist_table(&diagnosis.checks);
        assert_eq!(table.lines().count(), diagnosis.checks.len() + 2, "{table}");
        let route = table
            .lines()
            .find(|line| line.trim_start().starts_with("net.default_route"))
            .expect("row");
        assert!(route.contains(" fail "), "{route}");
        assert!(route.contains("aws ec2 create-route"), "{route}");
        assert!(table.contains("kms.volume_keys"), "{table}");
    }

    #[test]
    fn not_checked_names_every_reason_with_its_nj_ids() {
        let text = not_checked_text();
        assert!(text.contains("NJ35"), "{text}");
        assert!(text.contains("on the instance"), "{text}");
        assert!(text.contains("Kubernetes object"), "{text}");
    }

    #[test]
    fn long_text_is_clipped_with_an_ellipsis() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
