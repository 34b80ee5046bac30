//! `nodemedic config check`: the effective settings and their warnings, for people.

use std::fmt::Write as _;

/// The effective settings, for `nodemedic config check`: what the daemon will do, then warnings.
pub fn settings_text(settings: &crate::settings::Settings) -> String {
    let mut out = String::new();
    let policy = settings.policy();
    let _ = writeln!(out, "settings: ok");
    let _ = writeln!(out, "  mode            {}", settings.mode);
    let _ = writeln!(
        out,
        "  queue           {}",
        if settings.queue_url.is_empty() {
            "(none)"
        } else {
            &settings.queue_url
        }
    );
    let _ = writeln!(out, "  audit database  {}", settings.audit.path.display());
    let accounts = &settings.accounts;
    let _ = writeln!(
        out,
        "  accounts        {}",
        if accounts.hub_and_spoke() {
            format!(
                "this one, and through role {} ({} external id, {}s sessions): {}",
                accounts.role_name,
                if accounts.external_id.is_empty() {
                    "no"
                } else {
                    "with an"
                },
                accounts.session_duration_secs,
                if accounts.members.is_empty() {
                    "(no members)".to_string()
                } else {
                    accounts.members.join(", ")
                }
            )
        } else {
            "this one only".to_string()
        }
    );
    for fix in crate::core::plan::FixKind::ALL {
        let _ = writeln!(
            out,
            "  fix {:<24} {}",
            fix.code(),
            policy.fix_policy(fix).as_str()
        );
    }
    let scope = &settings.scope;
    let _ = writeln!(
        out,
        "  ignore tag      {}",
        if scope.ignore_tag.is_empty() {
            "(none)"
        } else {
            &scope.ignore_tag
        }
    );
    for (name, list) in [
        ("allow accounts", &scope.accounts),
        ("allow regions", &scope.regions),
        ("allow clusters", &scope.clusters),
        ("allow nodegroups", &scope.nodegroups),
        ("allow tags", &scope.tags),
        ("deny accounts", &scope.deny_accounts),
        ("deny regions", &scope.deny_regions),
        ("deny clusters", &scope.deny_clusters),
        ("deny nodegroups", &scope.deny_nodegroups),
        ("deny tags", &scope.deny_tags),
    ] {
        if !list.is_empty() {
            let _ = writeln!(out, "  {name:<15} {}", list.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "  limits          cooldown {}s, at most {} mutations per account per hour, breakers after {} failures in {}s",
        settings.guard.cooldown_secs,
        settings.guard.max_mutations_per_hour,
        settings.guard.breaker_failures,
        settings.guard.breaker_window_secs
    );
    let _ = writeln!(
        out,
        "  approvals       expire after {}s; HTTP API {}",
        settings.guard.approval_ttl_secs,
        if settings.http.address.is_empty() {
            "off".to_string()
        } else {
            format!(
                "on {} for {}",
                settings.http.address,
                if settings.http.tokens.is_empty() {
                    "nobody".to_string()
                } else {
                    settings
                        .http
                        .tokens
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        }
    );
    let _ = writeln!(
        out,
        "  notifications   {} webhook(s){}",
        settings.notify.webhooks.len(),
        if settings.notify.sns_topic_arn.is_empty() {
            String::new()
        } else {
            format!(", SNS {}", settings.notify.sns_topic_arn)
        }
    );
    let warnings = settings.warnings();
    for warning in &warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}
