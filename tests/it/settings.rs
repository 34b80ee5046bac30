//! Bad settings are refused at start with a non-zero exit that names the offending key.

use std::process::Command;

fn nodemedic(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nodemedic"));
    command.args(args).env_clear();
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("nodemedic runs")
}

#[test]
fn an_unknown_mode_is_refused_and_named() {
    let output = nodemedic(
        &[
            "run",
            "--once",
            "--queue-url",
            "http://127.0.0.1:9/123456789012/q",
        ],
        &[("NODEMEDIC_MODE", "yolo")],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("mode") && stderr.contains("yolo"),
        "{stderr}"
    );
    let output = nodemedic(
        &[
            "run",
            "--once",
            "--mode",
            "fix-it",
            "--queue-url",
            "http://127.0.0.1:9/123456789012/q",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_missing_queue_url_is_refused_and_named() {
    let output = nodemedic(&["run", "--once"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("queue_url"), "{stderr}");
}

#[test]
fn a_wrongly_typed_environment_value_is_refused_and_named() {
    let output = nodemedic(
        &[
            "run",
            "--once",
            "--queue-url",
            "http://127.0.0.1:9/123456789012/q",
        ],
        &[("NODEMEDIC_INTAKE__MAX_MESSAGES", "lots")],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("intake.max_messages"), "{stderr}");
}

#[test]
fn audit_commands_on_a_missing_database_fail_clearly() {
    let output = nodemedic(
        &["audit", "list", "--audit-db", "/nonexistent/audit.db"],
        &[],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/audit.db"));
}

#[test]
fn a_duration_longer_than_a_year_is_refused_by_config_check_and_run() {
    let huge = [("NODEMEDIC_GUARD__PLAN_TTL_SECS", "18446744073709551615")];
    let checked = nodemedic(&["config", "check"], &huge);
    assert_eq!(checked.status.code(), Some(2), "{checked:?}");
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(stderr.contains("guard.plan_ttl_secs"), "{stderr}");
    let run = nodemedic(
        &[
            "run",
            "--once",
            "--queue-url",
            "http://127.0.0.1:9/123456789012/q",
        ],
        &huge,
    );
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(
        !String::from_utf8_lossy(&run.stderr).contains("panicked"),
        "refused, not crashed"
    );
}
