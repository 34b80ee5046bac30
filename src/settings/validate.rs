//! Validation: raw settings in, typed settings out, or every problem at once, each named by its
//! key. One function per section.

use crate::core::time::Timestamp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: &str, text: String) {
        self.0.push(Problem {
            key: key.into(),
            problem: text,
        })
    }

    /// A [`Choice`] from its text, or a problem that lists the values it takes.
    fn choice<T: Choice>(&mut self, key: &str, text: &str, expected: &str) -> Option<T> {
        let found = T::parse(text);
        if found.is_none() {
            self.add(key, format!("{text:?} is {expected}"));
        }
        found
    }
}

/// `"a", "b", "c"`, for a problem's text.
fn quoted<T: Choice>() -> String {
    T::ALL
        .iter()
        .map(|choice| format!("{:?}", choice.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Settings {
    pub(super) fn validate(raw: RawSettings) -> Result<Settings, ConfigError> {
        let mut problems = Problems::default();
        let mode = Mode::parse(&raw.mode).unwrap_or_else(|| {
            problems.add(
                "mode",
                format!(
                    "unknown mode {:?}; expected one of: {}",
                    raw.mode,
                    Mode::ALL.map(Mode::as_str).join(", ")
                ),
            );
            Mode::DryRun
        });
        if !raw.queue_url.is_empty() && !raw.queue_url.starts_with("http") {
            problems.add(
                "queue_url",
                format!(
                    "{:?} is not a queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)",
                    raw.queue_url
                ),
            );
        }
        spans(&raw, &mut problems);
        intake(&raw.intake, &mut problems);
        let audit = audit(raw.audit, &mut problems);
        remediation(&raw.remediation, &mut problems);
        let log = log(raw.log, &mut problems);
        let fixes = fixes(&raw.fixes, &mut problems);
        let freezes = freezes(&raw.guard, &mut problems);
        guard(&raw.guard, &raw.verify, &mut problems);
        let notify = notify(raw.notify, &mut problems);
        http(&raw.http, &mut problems);
        if !(1..=120).contains(&raw.cluster_api.timeout_secs) {
            problems.add(
                "cluster_api.timeout_secs",
                format!("{} is outside 1-120", raw.cluster_api.timeout_secs),
            );
        }
        let store = store(raw.store, &mut problems);
        observability(&raw.otlp, &raw.watch, &mut problems);
        validate_accounts(&raw.accounts, &mut |key, text| problems.add(key, text));
        let (Some(audit), Some(log), Some(notify), Some(store)) = (audit, log, notify, store)
        else {
            return Err(ConfigError::Invalid(problems.0));
        };
        if !problems.0.is_empty() {
            return Err(ConfigError::Invalid(problems.0));
        }
        Ok(Settings {
            mode,
            queue_url: raw.queue_url,
            region: Some(raw.region).filter(|r| !r.is_empty()),
            intake: raw.intake,
            audit,
            remediation: raw.remediation,
            log,
            watch: raw.watch,
            join: raw.join,
            cluster_api: raw.cluster_api,
            fixes,
            scope: raw.scope,
            guard: raw.guard,
            freezes,
            verify: raw.verify,
            notify,
            http: raw.http,
            otlp: raw.otlp,
            store,
            accounts: raw.accounts,
        })
    }
}

/// The longest span a setting may name. Longer ones mean nothing to a daemon, and the date and
/// timer arithmetic on them would overflow.
const LONGEST_SPAN_SECS: u64 = 366 * 24 * 3600;
/// How long event marks are kept, at most.
const LONGEST_EVENT_TTL_DAYS: u64 = 3650;

/// Every duration setting, bounded (the lower bounds live with each section).
fn spans(raw: &RawSettings, problems: &mut Problems) {
    let whole = [
        ("guard.cooldown_secs", raw.guard.cooldown_secs),
        ("guard.approval_ttl_secs", raw.guard.approval_ttl_secs),
        ("guard.plan_ttl_secs", raw.guard.plan_ttl_secs),
        ("guard.approval_poll_secs", raw.guard.approval_poll_secs),
        ("guard.breaker_window_secs", raw.guard.breaker_window_secs),
        ("verify.timeout_secs", raw.verify.timeout_secs),
        ("http.ready_window_secs", raw.http.ready_window_secs),
        (
            "http.header_read_timeout_secs",
            raw.http.header_read_timeout_secs,
        ),
        (
            "http.body_read_timeout_secs",
            raw.http.body_read_timeout_secs,
        ),
        ("http.drain_secs", raw.http.drain_secs),
        ("watch.interval_secs", raw.watch.interval_secs),
        ("join.deadline_secs", raw.join.deadline_secs.unwrap_or(0)),
        ("intake.shutdown_grace_secs", raw.intake.shutdown_grace_secs),
        ("store.lease_ttl_secs", raw.store.lease_ttl_secs),
        (
            "remediation.nodegroup_timeout_secs",
            raw.remediation.nodegroup_timeout_secs,
        ),
        (
            "remediation.route_verdict_ttl_secs",
            raw.remediation.route_verdict_ttl_secs,
        ),
        (
            "remediation.resolution_ttl_secs",
            raw.remediation.resolution_ttl_secs,
        ),
        (
            "remediation.failure_evidence_ttl_secs",
            raw.remediation.failure_evidence_ttl_secs,
        ),
        (
            "remediation.incident_window_secs",
            raw.remediation.incident_window_secs,
        ),
    ];
    for (key, secs) in whole {
        if secs > LONGEST_SPAN_SECS {
            problems.add(
                key,
                format!("{secs} s is longer than a year ({LONGEST_SPAN_SECS} s)"),
            );
        }
    }
    for (key, secs) in [("verify.poll_secs", raw.verify.poll_secs)] {
        if secs.is_finite() && secs > LONGEST_SPAN_SECS as f64 {
            problems.add(
                key,
                format!("{secs} s is longer than a year ({LONGEST_SPAN_SECS} s)"),
            );
        }
    }
    if raw.store.event_ttl_days > LONGEST_EVENT_TTL_DAYS {
        problems.add(
            "store.event_ttl_days",
            format!("{} days is longer than ten years", raw.store.event_ttl_days),
        );
    }
}

fn intake(intake: &IntakeSettings, problems: &mut Problems) {
    if intake.wait_time_secs > 20 {
        problems.add(
            "intake.wait_time_secs",
            format!("{} is over SQS's maximum of 20", intake.wait_time_secs),
        );
    }
    if !(1..=10).contains(&intake.max_messages) {
        problems.add(
            "intake.max_messages",
            format!("{} is outside 1-10", intake.max_messages),
        );
    }
    if !(1..=43_200).contains(&intake.visibility_timeout_secs) {
        problems.add(
            "intake.visibility_timeout_secs",
            format!("{} is outside 1-43200", intake.visibility_timeout_secs),
        );
    }
    if intake.max_in_flight == 0 {
        problems.add("intake.max_in_flight", "must be at least 1".into());
    }
    // Well under the visibility timeout: a message waiting to be deleted is still hidden.
    if intake.delete_batch_wait_ms > 1_000 {
        problems.add(
            "intake.delete_batch_wait_ms",
            format!("{} is above 1000", intake.delete_batch_wait_ms),
        );
    }
    // It delays a receipt while handlers are busy: keep it well under a handling's time.
    if intake.receive_batch_wait_ms > 1_000 {
        problems.add(
            "intake.receive_batch_wait_ms",
            format!("{} is above 1000", intake.receive_batch_wait_ms),
        );
    }
}

fn audit(raw: RawAudit, problems: &mut Problems) -> Option<AuditSettings> {
    if raw.path.as_os_str().is_empty() {
        problems.add("audit.path", "must not be empty".into());
    }
    let journal_mode = problems.choice(
        "audit.journal_mode",
        &raw.journal_mode,
        "neither \"wal\" nor \"delete\"",
    )?;
    if !raw.anchor_key.is_empty() && raw.anchor_key.len() < 32 {
        problems.add(
            "audit.anchor_key",
            "an anchor key needs at least 32 characters".into(),
        );
    }
    Some(AuditSettings {
        path: raw.path,
        journal_mode,
        anchor_key: raw.anchor_key,
    })
}

fn remediation(remediation: &RemediationSettings, problems: &mut Problems) {
    if !(remediation.nodegroup_poll_secs > 0.0 && remediation.nodegroup_poll_secs <= 300.0) {
        problems.add(
            "remediation.nodegroup_poll_secs",
            format!("{} is outside (0, 300]", remediation.nodegroup_poll_secs),
        );
    }
    if remediation.nodegroup_timeout_secs == 0 {
        problems.add(
            "remediation.nodegroup_timeout_secs",
            "must be at least 1".into(),
        );
    }
}

fn log(raw: RawLog, problems: &mut Problems) -> Option<LogSettings> {
    let format = problems.choice(
        "log.format",
        &raw.format,
        &format!("not one of {}", quoted::<LogFormat>()),
    );
    if tracing_subscriber::EnvFilter::try_new(&raw.level).is_err() {
        problems.add(
            "log.level",
            format!("{:?} is not a tracing filter", raw.level),
        );
    }
    Some(LogSettings {
        format: format?,
        level: raw.level,
    })
}

fn fixes(raw: &BTreeMap<String, String>, problems: &mut Problems) -> BTreeMap<FixKind, FixPolicy> {
    let mut fixes = BTreeMap::new();
    for (name, policy) in raw {
        let key = format!("fixes.{name}");
        let Some(fix) = FixKind::from_code(name) else {
            problems.add(
                &key,
                format!(
                    "unknown fix kind; expected one of: {}",
                    FixKind::ALL.map(FixKind::code).join(", ")
                ),
            );
            continue;
        };
        match policy.as_str() {
            "auto" => fixes.insert(fix, FixPolicy::Auto),
            "approve" => fixes.insert(fix, FixPolicy::Approve),
            "never" => fixes.insert(fix, FixPolicy::Never),
            other => {
                problems.add(&key, format!("{other:?} is not auto, approve or never"));
                None
            }
        };
    }
    fixes
}

fn freezes(guard: &GuardSettings, problems: &mut Problems) -> Vec<Freeze> {
    let mut freezes = Vec::new();
    for (n, freeze) in guard.freezes.iter().enumerate() {
        let mut parse = |text: &str, field: &str| match OffsetDateTime::parse(text, &Rfc3339) {
            Ok(at) => Some(Timestamp::from(at)),
            Err(e) => {
                problems.add(
                    &format!("guard.freezes[{n}].{field}"),
                    format!("{text:?} is not RFC 3339: {e}"),
                );
                None
            }
        };
        let from = parse(&freeze.from, "from");
        let until = parse(&freeze.until, "until");
        if let (Some(from), Some(until)) = (from, until) {
            if until <= from {
                problems.add(
                    &format!("guard.freezes[{n}]"),
                    "until is not after from".into(),
                );
            }
            freezes.push(Freeze {
                from,
                until,
                reason: freeze.reason.clone(),
            });
        }
    }
    freezes
}

fn guard(guard: &GuardSettings, verify: &VerifySettings, problems: &mut Problems) {
    if guard.breaker_failures == 0 {
        problems.add("guard.breaker_failures", "must be at least 1".into());
    }
    if guard.approval_poll_secs == 0 {
        problems.add("guard.approval_poll_secs", "must be at least 1".into());
    }
    if !verify.poll_secs.is_finite() || verify.poll_secs <= 0.0 {
        problems.add("verify.poll_secs", "must be more than 0".into());
    }
}

fn notify(raw: RawNotify, problems: &mut Problems) -> Option<NotifySettings> {
    let mut webhooks = Vec::new();
    for (n, hook) in raw.webhooks.into_iter().enumerate() {
        if !hook.url.starts_with("http://") && !hook.url.starts_with("https://") {
            problems.add(
                &format!("notify.webhooks[{n}].url"),
                // The URL itself is a secret (a Slack webhook's is its credential).
                "is not an http(s) URL".into(),
            );
        }
        let format = problems.choice(
            &format!("notify.webhooks[{n}].format"),
            &hook.format,
            "not slack, json or template",
        );
        if format == Some(WebhookFormat::Template) && hook.template.is_empty() {
            problems.add(
                &format!("notify.webhooks[{n}].template"),
                "a template webhook needs a template".into(),
            );
        }
        webhooks.push(format.map(|format| Webhook {
            url: hook.url,
            format,
            template: hook.template,
        }));
    }
    Some(NotifySettings {
        webhooks: webhooks.into_iter().collect::<Option<Vec<_>>>()?,
        sns_topic_arn: raw.sns_topic_arn,
    })
}

fn http(http: &HttpSettings, problems: &mut Problems) {
    if !http.address.is_empty() && http.address.parse::<std::net::SocketAddr>().is_err() {
        problems.add(
            "http.address",
            format!("{:?} is not host:port", http.address),
        );
    }
    for (name, token) in &http.tokens {
        if token.len() < 16 {
            problems.add(
                &format!("http.tokens.{name}"),
                "a token needs at least 16 characters".into(),
            );
        }
    }
    if http.ready_window_secs < 2 {
        problems.add("http.ready_window_secs", "must be at least 2".into());
    }
    for (key, value) in [
        (
            "http.header_read_timeout_secs",
            http.header_read_timeout_secs,
        ),
        ("http.body_read_timeout_secs", http.body_read_timeout_secs),
        ("http.drain_secs", http.drain_secs),
    ] {
        if value == 0 {
            problems.add(key, "must be at least 1".into());
        }
    }
    if !(1..=65_536).contains(&http.max_connections) {
        problems.add("http.max_connections", "must be between 1 and 65536".into());
    }
}

fn store(raw: RawStore, problems: &mut Problems) -> Option<StoreSettings> {
    let backend = problems.choice(
        "store.backend",
        &raw.backend,
        "neither \"sqlite\" nor \"dynamodb\"",
    );
    if backend == Some(StoreBackend::Dynamodb) {
        for (key, table) in [
            ("store.state_table", &raw.state_table),
            ("store.audit_table", &raw.audit_table),
        ] {
            if table.len() < 3 || table.len() > 255 {
                problems.add(key, "a DynamoDB table name has 3 to 255 characters".into());
            }
        }
        if raw.state_table == raw.audit_table {
            problems.add(
                "store.audit_table",
                "must differ from store.state_table".into(),
            );
        }
    }
    if raw.event_ttl_days == 0 {
        problems.add("store.event_ttl_days", "must be at least 1".into());
    }
    if raw.lease_ttl_secs < 3 {
        problems.add("store.lease_ttl_secs", "must be at least 3".into());
    }
    Some(StoreSettings {
        backend: backend?,
        lease_ttl_secs: raw.lease_ttl_secs,
        state_table: raw.state_table,
        audit_table: raw.audit_table,
        event_ttl_days: raw.event_ttl_days,
        tables_key_arn: raw.tables_key_arn,
    })
}

fn observability(otlp: &OtlpSettings, watch: &WatchSettings, problems: &mut Problems) {
    let endpoint = &otlp.endpoint;
    if !(endpoint.is_empty() || endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        problems.add(
            "otlp.endpoint",
            format!("{:?} is not an http:// or https:// URL", otlp.endpoint),
        );
    }
    if watch.interval_secs == 0 {
        problems.add("watch.interval_secs", "must be at least 1".into());
    }
    if watch.clusters.iter().any(|c| c.trim().is_empty()) {
        problems.add("watch.clusters", "contains an empty cluster name".into());
    }
}

fn validate_accounts(accounts: &AccountsSettings, problem: &mut dyn FnMut(&str, String)) {
    let role = &accounts.role_name;
    if !role.is_empty() && (role.len() > 64 || !iam_name_chars(role, "")) {
        problem(
            "accounts.role_name",
            format!("{role:?} is not an IAM role name (1-64 of A-Z a-z 0-9 _+=,.@-)"),
        );
    }
    if role.is_empty() && !accounts.members.is_empty() {
        problem(
            "accounts.role_name",
            "accounts.members is set: name the role to assume in them".into(),
        );
    }
    let external_id = &accounts.external_id;
    // STS takes 2-1224 characters; a one-character id is refused by AssumeRole itself.
    if !external_id.is_empty()
        && (!(2..=1224).contains(&external_id.len()) || !iam_name_chars(external_id, ":/"))
    {
        problem(
            "accounts.external_id",
            "must be 2-1224 of A-Z a-z 0-9 _+=,.@:/-".into(),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (n, account) in accounts.members.iter().enumerate() {
        let key = format!("accounts.members[{n}]");
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            problem(&key, format!("{account:?} is not a 12-digit account id"));
        } else if !seen.insert(account) {
            problem(&key, format!("{account} is listed twice"));
        }
    }
    let session = &accounts.session_name;
    if !(2..=64).contains(&session.len()) || !iam_name_chars(session, "") {
        problem(
            "accounts.session_name",
            format!("{session:?} is not a role session name (2-64 of A-Z a-z 0-9 _+=,.@-)"),
        );
    }
    if !(900..=43_200).contains(&accounts.session_duration_secs) {
        problem(
            "accounts.session_duration_secs",
            format!(
                "{} is outside 900-43200 (what STS allows)",
                accounts.session_duration_secs
            ),
        );
    }
}

/// What IAM and STS accept in role names, role session names and external ids.
fn iam_name_chars(text: &str, extra: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) || extra.contains(c))
}
