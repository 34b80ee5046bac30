//! Crash points for the fault tests. `NODEMEDIC_TESTING_CRASH_AT=<point>` (or `<point>:<fix>`) makes the
//! process abort at that point: no destructor runs, nothing buffered is flushed, the queue message
//! stays in flight, exactly as after `kill -9`. Unset, a crash point costs one comparison.
//!
//! Points: `after_intent` (the intent record is committed, the AWS call not made),
//! `after_mutation` (the AWS call is made, its result not recorded), `before_delete` (the outcome
//! is committed, the message not deleted).

use std::sync::OnceLock;

fn configured() -> &'static Option<String> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| {
        std::env::var("NODEMEDIC_TESTING_CRASH_AT")
            .ok()
            .filter(|v| !v.is_empty())
    })
}

/// Whether the configured crash point is `point` (for `fix`, when the point names one).
fn matches(configured: &str, point: &str, fix: Option<&str>) -> bool {
    match configured.split_once(':') {
        Some((at, wanted)) => at == point && fix == Some(wanted),
        None => configured == point,
    }
}

/// Aborts the process when the configured crash point is here.
pub fn crash_point(point: &str, fix: Option<&str>) {
    if let Some(at) = configured()
        && matches(at, point, fix)
    {
        eprintln!("nodemedic: crash point {at} reached; aborting as kill -9 would");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn a_point_matches_with_or_without_a_fix() {
        assert!(matches("before_delete", "before_delete", None));
        assert!(matches(
            "after_intent:add_nat_route",
            "after_intent",
            Some("add_nat_route")
        ));
        assert!(!matches(
            "after_intent:add_nat_route",
            "after_intent",
            Some("cycle_nodegroup")
        ));
        assert!(!matches("after_mutation", "after_intent", None));
    }
}
