use super::*;

fn load(env: &[(&str, &str)], overrides: Overrides) -> Result<Settings, ConfigError> {
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::load_with_env(&overrides, Some(env))
}

fn keys(error: ConfigError) -> Vec<String> {
    error.problems().into_iter().map(|p| p.key).collect()
}

#[test]
fn the_embedded_defaults_are_valid_and_safe() {
    let settings = load(&[], Overrides::default()).unwrap();
    assert_eq!(settings.mode, Mode::DryRun);
    assert_eq!(settings.intake.wait_time_secs, 20);
    assert_eq!(settings.intake.max_messages, 10);
    assert!(settings.queue_url.is_empty());
    assert!(settings.require_queue().is_err());
}

#[test]
fn environment_variables_override_defaults_with_nested_keys() {
    let settings = load(
        &[
            (
                "NODEMEDIC_QUEUE_URL",
                "http://localhost:5000/123456789012/q",
            ),
            ("NODEMEDIC_AUDIT__PATH", "/tmp/a.db"),
            ("NODEMEDIC_INTAKE__WAIT_TIME_SECS", "2"),
            ("NODEMEDIC_MODE", "auto"),
        ],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(settings.queue_url, "http://localhost:5000/123456789012/q");
    assert_eq!(settings.audit.path, PathBuf::from("/tmp/a.db"));
    assert_eq!(settings.intake.wait_time_secs, 2);
    assert_eq!(settings.mode, Mode::Auto);
}

#[test]
fn flags_win_over_the_environment() {
    let settings = load(
        &[
            ("NODEMEDIC_MODE", "auto"),
            ("NODEMEDIC_AUDIT__PATH", "/tmp/env.db"),
        ],
        Overrides {
            mode: Some("dry-run".into()),
            audit_db: Some("/tmp/flag.db".into()),
            queue_url: Some("https://sqs.us-west-2.amazonaws.com/1/q".into()),
            config_file: None,
        },
    )
    .unwrap();
    assert_eq!(settings.mode, Mode::DryRun);
    assert_eq!(settings.audit.path, PathBuf::from("/tmp/flag.db"));
    assert_eq!(
        settings.require_queue().unwrap(),
        "https://sqs.us-west-2.amazonaws.com/1/q"
    );
}

#[test]
fn a_file_sits_between_defaults_and_environment() {
    let dir = std::env::temp_dir().join(format!("nodemedic-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("nodemedic.toml");
    std::fs::write(&file, "mode = \"auto\"\n[intake]\nmax_in_flight = 2\n").unwrap();
    let overrides = Overrides {
        config_file: Some(file.clone()),
        ..Overrides::default()
    };
    let settings = load(&[], overrides.clone()).unwrap();
    assert_eq!(settings.mode, Mode::Auto);
    assert_eq!(settings.intake.max_in_flight, 2);
    assert_eq!(
        settings.intake.max_messages, 10,
        "unset keys keep their defaults"
    );
    let settings = load(&[("NODEMEDIC_MODE", "dry-run")], overrides).unwrap();
    assert_eq!(settings.mode, Mode::DryRun);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_unknown_mode_is_refused_and_named() {
    let error = load(&[("NODEMEDIC_MODE", "yolo")], Overrides::default()).unwrap_err();
    assert_eq!(keys(error), vec!["mode"]);
    let error = load(
        &[],
        Overrides {
            mode: Some("fix-everything".into()),
            ..Overrides::default()
        },
    )
    .unwrap_err();
    assert!(error.to_string().contains("fix-everything"));
    assert!(error.to_string().contains("dry-run"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let error = load(
        &[
            ("NODEMEDIC_INTAKE__MAX_MESSAGES", "50"),
            ("NODEMEDIC_INTAKE__WAIT_TIME_SECS", "21"),
            ("NODEMEDIC_INTAKE__RECEIVE_BATCH_WAIT_MS", "5000"),
            ("NODEMEDIC_LOG__FORMAT", "xml"),
            ("NODEMEDIC_QUEUE_URL", "my-queue"),
        ],
        Overrides::default(),
    )
    .unwrap_err();
    let mut found = keys(error);
    found.sort();
    assert_eq!(
        found,
        vec![
            "intake.max_messages",
            "intake.receive_batch_wait_ms",
            "intake.wait_time_secs",
            "log.format",
            "queue_url"
        ]
    );
}

#[test]
fn a_wrongly_typed_value_names_its_key() {
    let error = load(
        &[("NODEMEDIC_INTAKE__MAX_IN_FLIGHT", "lots")],
        Overrides::default(),
    )
    .unwrap_err();
    assert_eq!(keys(error), vec!["intake.max_in_flight"]);
}

#[test]
fn an_unknown_key_is_refused() {
    let error = load(
        &[("NODEMEDIC_AUDIT__PATHH", "/tmp/x.db")],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("pathh"), "{error}");
}

#[test]
fn watched_clusters_come_as_a_comma_separated_list() {
    let settings = load(
        &[("NODEMEDIC_WATCH__CLUSTERS", "prod,staging")],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(settings.watch.clusters, vec!["prod", "staging"]);
    assert!(settings.watch.enabled());
    assert!(
        !load(&[], Overrides::default()).unwrap().watch.enabled(),
        "off by default"
    );
    let defaults = load(&[], Overrides::default()).unwrap();
    assert_eq!(
        defaults.join_deadline_secs(),
        300,
        "the cluster's API is read"
    );
    let eks_only = load(
        &[("NODEMEDIC_CLUSTER_API__ENABLED", "false")],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        eks_only.join_deadline_secs(),
        900,
        "EKS reports NodeCreationFailure after 15 min"
    );
    let set = load(
        &[
            ("NODEMEDIC_JOIN__DEADLINE_SECS", "600"),
            ("NODEMEDIC_CLUSTER_API__ENABLED", "false"),
        ],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(set.join_deadline_secs(), 600);
}

#[test]
fn fix_policies_scope_and_freezes_are_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("nodemedic-guard-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("guard.toml");
    std::fs::write(
        &file,
        "[fixes]\npatch_kms_key_policy = \"approve\"\n[scope]\ndeny_clusters = [\"prod\"]\n\
         [guard]\nfreezes = [{ from = \"2026-12-20T00:00:00Z\", until = \"2027-01-04T00:00:00Z\", reason = \"holidays\" }]\n",
    )
    .unwrap();
    let overrides = Overrides {
        config_file: Some(file.clone()),
        ..Overrides::default()
    };
    let settings = load(
        &[("NODEMEDIC_SCOPE__DENY_TAGS", "env=prod,team=payments")],
        overrides,
    )
    .unwrap();
    let policy = settings.policy();
    assert_eq!(
        policy.fix_policy(FixKind::PatchKmsKeyPolicy),
        FixPolicy::Approve
    );
    assert_eq!(policy.fix_policy(FixKind::AddNatRoute), FixPolicy::Auto);
    assert_eq!(policy.scope.deny_clusters, vec!["prod"]);
    assert_eq!(policy.scope.deny_tags, vec!["env=prod", "team=payments"]);
    assert_eq!(policy.freezes[0].reason, "holidays");
    std::fs::write(
        &file,
        "[fixes]\nadd_route = \"auto\"\npatch_kms_key_policy = \"sometimes\"\n",
    )
    .unwrap();
    let error = load(
        &[],
        Overrides {
            config_file: Some(file),
            ..Overrides::default()
        },
    )
    .unwrap_err();
    let mut found = keys(error);
    found.sort();
    assert_eq!(found, vec!["fixes.add_route", "fixes.patch_kms_key_policy"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn short_tokens_and_bad_addresses_are_refused() {
    let error = load(
        &[
            ("NODEMEDIC_HTTP__ADDRESS", "everywhere"),
            ("NODEMEDIC_HTTP__TOKENS__ALICE", "short"),
        ],
        Overrides::default(),
    )
    .unwrap_err();
    let mut found = keys(error);
    found.sort();
    assert_eq!(found, vec!["http.address", "http.tokens.alice"]);
}

#[test]
fn tokens_are_text_as_given_even_when_they_look_like_numbers() {
    let settings = load(
        &[
            ("NODEMEDIC_HTTP__TOKENS__ALICE", "00001234567890123456"),
            ("NODEMEDIC_HTTP__TOKENS__BOB", "true-true-true-true-true"),
            ("NODEMEDIC_HTTP__READY_WINDOW_SECS", "120"),
        ],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(settings.http.tokens["alice"], "00001234567890123456");
    assert_eq!(settings.http.tokens["bob"], "true-true-true-true-true");
    assert_eq!(
        settings.http.ready_window_secs, 120,
        "other settings are still parsed"
    );
}

#[test]
fn the_console_is_off_by_default_and_warns_when_nobody_can_use_it() {
    let console_warnings = |env: &[(&str, &str)]| {
        load(env, Overrides::default())
            .unwrap()
            .warnings()
            .into_iter()
            .filter(|w| w.contains("http.console"))
            .collect::<Vec<_>>()
    };
    assert!(!load(&[], Overrides::default()).unwrap().http.console);
    assert!(console_warnings(&[]).is_empty());
    assert!(console_warnings(&[("NODEMEDIC_HTTP__CONSOLE", "true")])[0].contains("not served"));
    assert!(
        console_warnings(&[
            ("NODEMEDIC_HTTP__CONSOLE", "true"),
            ("NODEMEDIC_HTTP__ADDRESS", "127.0.0.1:8080")
        ])[0]
            .contains("nobody can sign in")
    );
    assert!(
        console_warnings(&[
            ("NODEMEDIC_HTTP__CONSOLE", "true"),
            ("NODEMEDIC_HTTP__ADDRESS", "127.0.0.1:8080"),
            ("NODEMEDIC_HTTP__TOKENS__ALICE", "alice-token-0123456789")
        ])
        .is_empty()
    );
}

#[test]
fn one_account_is_served_unless_a_member_role_is_named() {
    let settings = load(&[], Overrides::default()).unwrap();
    assert!(!settings.accounts.hub_and_spoke());
    assert!(settings.accounts.members.is_empty());
    assert_eq!(settings.accounts.session_name, "nodemedic");
    assert_eq!(settings.accounts.session_duration_secs, 3600);
    assert!(settings.warnings().iter().all(|w| !w.contains("accounts.")));
}

#[test]
fn member_accounts_come_from_the_environment_as_a_list() {
    let settings = load(
        &[
            ("NODEMEDIC_ACCOUNTS__ROLE_NAME", "nodemedic-member"),
            ("NODEMEDIC_ACCOUNTS__EXTERNAL_ID", "hub-7f3a"),
            ("NODEMEDIC_ACCOUNTS__MEMBERS", "111111111111,222222222222"),
            ("NODEMEDIC_ACCOUNTS__SESSION_DURATION_SECS", "900"),
        ],
        Overrides::default(),
    )
    .unwrap();
    let accounts = &settings.accounts;
    assert!(accounts.hub_and_spoke());
    assert_eq!(accounts.members, vec!["111111111111", "222222222222"]);
    assert_eq!(accounts.external_id, "hub-7f3a");
    assert_eq!(accounts.session_duration_secs, 900);
    assert!(
        settings.warnings().iter().all(|w| !w.contains("accounts.")),
        "a complete hub-and-spoke setting warns of nothing: {:?}",
        settings.warnings()
    );
}

#[test]
fn a_lone_member_keeps_its_leading_zero() {
    // Without a comma the environment source reads the id as a number.
    let settings = load(
        &[
            ("NODEMEDIC_ACCOUNTS__ROLE_NAME", "nodemedic-member"),
            ("NODEMEDIC_ACCOUNTS__MEMBERS", "012345678901"),
        ],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(settings.accounts.members, vec!["012345678901"]);
}

#[test]
fn members_from_a_file_are_a_toml_list() {
    let dir =
        std::env::temp_dir().join(format!("nodemedic-accounts-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("accounts.toml");
    std::fs::write(
        &file,
        "[accounts]\nrole_name = \"nodemedic-member\"\nmembers = [\"111111111111\", \"099999999999\"]\n",
    )
    .unwrap();
    let settings = load(
        &[],
        Overrides {
            config_file: Some(file),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(
        settings.accounts.members,
        vec!["111111111111", "099999999999"]
    );
    assert!(
        settings
            .warnings()
            .iter()
            .any(|w| w.contains("accounts.external_id is empty")),
        "{:?}",
        settings.warnings()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_account_settings_are_named_by_key() {
    let error = load(
        &[
            ("NODEMEDIC_ACCOUNTS__ROLE_NAME", "no spaces allowed"),
            ("NODEMEDIC_ACCOUNTS__EXTERNAL_ID", "x"),
            (
                "NODEMEDIC_ACCOUNTS__MEMBERS",
                "111111111111,12345,111111111111",
            ),
            ("NODEMEDIC_ACCOUNTS__SESSION_NAME", "a b"),
            ("NODEMEDIC_ACCOUNTS__SESSION_DURATION_SECS", "60"),
        ],
        Overrides::default(),
    )
    .unwrap_err();
    let mut found = keys(error);
    found.sort();
    assert_eq!(
        found,
        vec![
            "accounts.external_id",
            "accounts.members[1]",
            "accounts.members[2]",
            "accounts.role_name",
            "accounts.session_duration_secs",
            "accounts.session_name",
        ]
    );
    let error = load(
        &[("NODEMEDIC_ACCOUNTS__MEMBERS", "111111111111,222222222222")],
        Overrides::default(),
    )
    .unwrap_err();
    assert_eq!(
        keys(error),
        vec!["accounts.role_name"],
        "members without a role to assume"
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let error = load(
        &[],
        Overrides {
            config_file: Some("/nonexistent/nodemedic.toml".into()),
            ..Overrides::default()
        },
    )
    .unwrap_err();
    assert_eq!(keys(error), vec!["--config"]);
}

#[test]
fn every_duration_is_bounded_so_no_date_arithmetic_can_overflow() {
    for key in [
        "NODEMEDIC_GUARD__PLAN_TTL_SECS",
        "NODEMEDIC_GUARD__APPROVAL_TTL_SECS",
        "NODEMEDIC_GUARD__BREAKER_WINDOW_SECS",
        "NODEMEDIC_REMEDIATION__INCIDENT_WINDOW_SECS",
        "NODEMEDIC_REMEDIATION__RESOLUTION_TTL_SECS",
        "NODEMEDIC_STORE__LEASE_TTL_SECS",
        "NODEMEDIC_JOIN__DEADLINE_SECS",
        "NODEMEDIC_VERIFY__POLL_SECS",
    ] {
        let setting = key
            .trim_start_matches("NODEMEDIC_")
            .replace("__", ".")
            .to_lowercase();
        match load(&[(key, "18446744073709551615")], Overrides::default()) {
            Err(error) => assert!(keys(error).contains(&setting), "{key}"),
            Ok(_) => panic!("{key} accepted"),
        }
    }
    assert!(
        load(
            &[("NODEMEDIC_GUARD__PLAN_TTL_SECS", "86400")],
            Overrides::default()
        )
        .is_ok()
    );
}

#[test]
fn a_load_error_names_a_secret_setting_but_never_shows_its_value() {
    let error = load(
        &[("NODEMEDIC_HTTP__TOKENS", "alice-secret-token-0123")],
        Overrides::default(),
    )
    .expect_err("a token that is not text is refused");
    let problems = error.problems();
    assert!(
        problems.iter().any(|p| p.key.contains("http.tokens")),
        "{problems:?}"
    );
    for problem in &problems {
        assert!(
            !problem.problem.contains("alice-secret-token-0123"),
            "the token leaked: {problem:?}"
        );
    }
}

#[test]
fn tokens_and_webhook_urls_come_from_mounted_secrets() {
    let dir = std::env::temp_dir().join(format!("nodemedic-secrets-{}", uuid::Uuid::new_v4()));
    // As Kubernetes mounts a Secret: the keys are links into a hidden, versioned directory.
    let data = dir.join("..2026_12_01_00_00_00.1");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("alice"), "alice-token-from-a-file-0001\n").unwrap();
    std::fs::write(data.join("bob"), "bob-token-from-a-file-000002").unwrap();
    std::os::unix::fs::symlink(&data, dir.join("..data")).unwrap();
    std::os::unix::fs::symlink(dir.join("..data/alice"), dir.join("alice")).unwrap();
    std::os::unix::fs::symlink(dir.join("..data/bob"), dir.join("bob")).unwrap();
    let elsewhere = dir.with_extension("other");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let url_file = elsewhere.join("slack-url");
    std::fs::write(
        &url_file,
        "https://hooks.slack.com/services/T000/B000/secretpart\n",
    )
    .unwrap();
    let config = elsewhere.join("nodemedic.toml");
    std::fs::write(
        &config,
        format!(
            "[notify]\nwebhooks = [{{ url_file = \"{}\", format = \"slack\" }}]\n",
            url_file.display()
        ),
    )
    .unwrap();
    let overrides = Overrides {
        config_file: Some(config.clone()),
        ..Overrides::default()
    };
    let settings = load(
        &[("NODEMEDIC_HTTP__TOKENS_DIR", dir.to_str().unwrap())],
        overrides.clone(),
    )
    .unwrap();
    assert_eq!(
        settings.http.tokens.len(),
        2,
        "{:?}",
        settings.http.tokens.keys()
    );
    assert_eq!(
        settings.http.tokens["alice"],
        "alice-token-from-a-file-0001"
    );
    assert_eq!(
        settings.notify.webhooks[0].url,
        "https://hooks.slack.com/services/T000/B000/secretpart"
    );
    // A token given twice, and a file that is not there: named, never shown.
    let error = load(
        &[
            ("NODEMEDIC_HTTP__TOKENS_DIR", dir.to_str().unwrap()),
            (
                "NODEMEDIC_HTTP__TOKENS__ALICE",
                "alice-token-from-the-env-01",
            ),
        ],
        overrides,
    )
    .unwrap_err();
    let text = error.to_string();
    assert!(keys(error).contains(&"http.tokens.alice".to_string()));
    assert!(!text.contains("alice-token"), "{text}");
    // An optional Secret that is not there: no approver, not an error.
    let none = load(
        &[(
            "NODEMEDIC_HTTP__TOKENS_DIR",
            "/nonexistent/nodemedic/approvers",
        )],
        Overrides::default(),
    )
    .unwrap();
    assert!(none.http.tokens.is_empty());
    std::fs::remove_file(&url_file).unwrap();
    let error = load(
        &[],
        Overrides {
            config_file: Some(config),
            ..Overrides::default()
        },
    )
    .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("notify.webhooks[0].url_file"), "{text}");
    assert!(!text.contains("secretpart"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(elsewhere).unwrap();
}

#[test]
fn tokens_come_from_one_json_secret_and_its_content_never_shows_in_an_error() {
    let settings = load(
        &[(
            "NODEMEDIC_HTTP__TOKENS_JSON",
            r#"{"alice": "00001234567890123456", "bob": "bob-token-from-json-0002"}"#,
        )],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        settings.http.tokens["alice"], "00001234567890123456",
        "text as given"
    );
    assert_eq!(settings.http.tokens["bob"], "bob-token-from-json-0002");
    assert!(
        settings.http.tokens_json.is_empty(),
        "merged, not kept twice"
    );
    let twice = load(
        &[
            (
                "NODEMEDIC_HTTP__TOKENS__ALICE",
                "alice-token-from-env-00001",
            ),
            (
                "NODEMEDIC_HTTP__TOKENS_JSON",
                r#"{"alice": "alice-token-from-json-0001"}"#,
            ),
        ],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(
        twice
            .problems()
            .iter()
            .any(|p| p.key == "http.tokens.alice")
    );
    let broken = load(
        &[(
            "NODEMEDIC_HTTP__TOKENS_JSON",
            r#"{"alice": "secret-value-0123456789""#,
        )],
        Overrides::default(),
    )
    .unwrap_err();
    let text = broken.to_string();
    assert!(text.contains("http.tokens_json"), "{text}");
    assert!(!text.contains("secret-value"), "{text}");
}
