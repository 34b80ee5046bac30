//! The console's pages, rendered on the server (maud escapes every value). They read without
//! JavaScript; `console.js` only counts down the time a plan has left.

use std::time::Duration;

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;
use time::OffsetDateTime;

use super::diff::{Line, diff, policy_lines};
use super::links::{console_url, nodegroup_url};
use crate::audit::control::{Breaker, KillSwitch, PlanRow, PlanStatus};
use crate::audit::{IncidentSummary, Record};

/// Who is looking, and the CSRF token their forms carry.
pub struct Viewer {
    pub approver: String,
    pub csrf: String,
}

pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

pub struct Health {
    pub mode: String,
    pub kill_switch: Option<KillSwitch>,
    pub open_breakers: Vec<Breaker>,
    pub queue: Result<QueueDepth, String>,
    /// Seconds since the last successful receive, and the last receive error.
    pub last_receive: (Option<u64>, Option<String>),
    pub oldest_message_age: Duration,
    /// Records verified, or where the chain breaks.
    pub chain: Result<u64, String>,
    pub ready: bool,
    pub not_ready_because: Vec<String>,
    pub awaiting: usize,
}

#[derive(Default)]
pub struct Filters {
    pub cluster: String,
    pub nodegroup: String,
    pub cause: String,
    pub outcome: String,
    /// `1h`, `24h`, `7d`, `30d`, or empty for all time.
    pub since: String,
}

pub const SINCE_CHOICES: [(&str, &str); 5] = [
    ("", "any time"),
    ("1h", "last hour"),
    ("24h", "last 24 hours"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
];

fn layout(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · nodemedic" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/console/" { "nodemedic" }
                    @if let Some(viewer) = viewer {
                        nav {
                            a href="/console/" { "Incidents" }
                            a href="/console/plans" { "Plans" }
                        }
                        form.signout method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            span { "Signed in as " strong #approver { (viewer.approver) } }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn login(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            p { "Use your approver token (" code { "http.tokens" } " in nodemedic's settings). Your name is recorded with every decision you make." }
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            form method="post" action="/console/login" {
                label for="token" { "Approver token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn message(viewer: Option<&Viewer>, title: &str, text: &str, back: &str) -> Markup {
    layout(
        title,
        viewer,
        html! {
            h1 { (title) }
            p.error role="alert" #refusal { (text) }
            p { a href=(back) { "Back" } }
        },
    )
}

fn ago(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds / 60),
        3600..=86_399 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

fn health_panel(health: &Health) -> Markup {
    html! {
        section.health #health aria-label="Health" {
            div {
                span.label { "Mode" }
                span.value #mode { (health.mode) }
            }
            div {
                span.label { "Kill switch" }
                @match &health.kill_switch {
                    Some(on) => span.value.bad #kill-switch {
                        "ON" @if let Some(by) = &on.set_by { " (by " (by) ")" }
                        @if let Some(reason) = &on.reason { ": " (reason) }
                    },
                    None => span.value.good #kill-switch { "off" },
                }
            }
            div {
                span.label { "Open breakers" }
                @if health.open_breakers.is_empty() {
                    span.value.good #breakers { "none" }
                } @else {
                    span.value.bad #breakers {
                        @for breaker in &health.open_breakers { code { (breaker.scope) } " " }
                    }
                }
            }
            div {
                span.label { "Queue" }
                @match &health.queue {
                    Ok(depth) => span.value #queue {
                        (depth.visible) " waiting, " (depth.in_flight) " in flight, " (depth.delayed) " delayed; oldest last received had waited "
                        (ago(health.oldest_message_age.as_secs()))
                    },
                    Err(error) => span.value.bad #queue { "unknown: " (error) },
                }
            }
            div {
                span.label { "Last receive" }
                @match &health.last_receive {
                    (Some(seconds), _) => span.value #last-receive { (ago(*seconds)) " ago" },
                    (None, Some(error)) => span.value.bad #last-receive { "none yet: " (error) },
                    (None, None) => span.value #last-receive { "none yet" },
                }
            }
            div {
                span.label { "Audit chain" }
                @match &health.chain {
                    Ok(records) => span.value.good #chain { "verified: " (records) " records, every link intact" },
                    Err(broken) => span.value.bad #chain { "BROKEN: " (broken) },
                }
            }
            div {
                span.label { "Ready" }
                @if health.ready {
                    span.value.good #ready { "yes" }
                } @else {
                    span.value.bad #ready { "no: " (health.not_ready_because.join("; ")) }
                }
            }
            div {
                span.label { "Plans awaiting approval" }
                span.value #awaiting { a href="/console/plans" { (health.awaiting) } }
            }
        }
    }
}

fn select(name: &str, label: &str, current: &str, choices: &[String]) -> Markup {
    html! {
        label {
            (label)
            select name=(name) {
                option value="" selected[current.is_empty()] { "all" }
                @for choice in choices {
                    option value=(choice) selected[choice == current] { (choice) }
                }
            }
        }
    }
}

/// The distinct values of each filterable field, for the filter form.
pub struct Choices {
    pub clusters: Vec<String>,
    pub nodegroups: Vec<String>,
    pub causes: Vec<String>,
    pub outcomes: Vec<String>,
}

pub fn index(
    viewer: &Viewer,
    health: &Health,
    filters: &Filters,
    choices: &Choices,
    incidents: &[IncidentSummary],
) -> Markup {
    layout(
        "Incidents",
        Some(viewer),
        html! {
            (health_panel(health))
            h1 { "Incidents" }
            form.filters method="get" action="/console/" {
                (select("cluster", "Cluster", &filters.cluster, &choices.clusters))
                (select("nodegroup", "Nodegroup", &filters.nodegroup, &choices.nodegroups))
                (select("cause", "Cause", &filters.cause, &choices.causes))
                (select("outcome", "Outcome", &filters.outcome, &choices.outcomes))
                label {
                    "Opened"
                    select name="since" {
                        @for (value, text) in SINCE_CHOICES {
                            option value=(value) selected[value == filters.since] { (text) }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            @if incidents.is_empty() {
                p #no-incidents { "No incidents match." }
            } @else {
                table #incidents {
                    thead { tr { th { "Opened" } th { "Nodegroup" } th { "Cause" } th { "Outcome" } th { "Summary" } th { "Actions" } } }
                    tbody {
                        @for incident in incidents {
                            tr data-incident=(incident.incident_id) {
                                td { time datetime=(incident.opened_at) { (incident.opened_at) } }
                                td { (incident.cluster) "/" (incident.nodegroup)
                                    @if incident.nodegroups.len() > 1 { " (+" (incident.nodegroups.len() - 1) " more)" } }
                                td { code { (incident.cause) } }
                                td { span class={"outcome " (incident.outcome.as_str())} { (incident.outcome.as_str()) } }
                                td { a href={"/console/incidents/" (incident.incident_id)} { (incident.summary) } }
                                td { @for action in &incident.actions { span class={"step " (action.status)} { (action.kind) ": " (action.status) } " " } }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn time_left(row: &PlanRow, plan_ttl: Duration, now: OffsetDateTime) -> Markup {
    match row.expires_at(plan_ttl) {
        Some(at) => {
            let left = (at.at() - now).whole_seconds().max(0) as u64;
            let stamp = at
                .at()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            html! { span.time-left data-expires=(stamp) { (ago(left)) " left" } }
        }
        None => html! {},
    }
}

fn decision_forms(viewer: &Viewer, row: &PlanRow) -> Markup {
    html! {
        div.decide {
            form.approve method="post" action={"/console/plans/" (row.plan_id) "/approve"} {
                input type="hidden" name="csrf" value=(viewer.csrf);
                label { "Reason " input type="text" name="reason" maxlength="500"; }
                button type="submit" name="decision" value="approve" { "Approve" }
            }
            form.reject method="post" action={"/console/plans/" (row.plan_id) "/reject"} {
                input type="hidden" name="csrf" value=(viewer.csrf);
                label { "Reason " input type="text" name="reason" maxlength="500"; }
                button type="submit" name="decision" value="reject" { "Reject" }
            }
        }
    }
}

fn plan_card(viewer: &Viewer, row: &PlanRow, plan_ttl: Duration, now: OffsetDateTime) -> Markup {
    let awaiting = row.status == PlanStatus::AwaitingApproval;
    html! {
        article.plan data-plan=(row.plan_id) data-status=(row.status.as_str()) {
            h3 {
                code { (row.plan_id) } " "
                span class={"status " (row.status.as_str())} { (row.status.as_str()) }
                " " (time_left(row, plan_ttl, now))
            }
            p {
                (row.cluster) "/" (row.nodegroup) ", " code { (row.cause) } ", "
                a href={"/console/incidents/" (row.incident_id)} { "incident " (row.incident_id) }
            }
            @if let Some(by) = &row.decided_by {
                p.decided { (row.status) " by " strong { (by) }
                    @if let Some(at) = &row.decided_at { " at " (at) }
                    @if let Some(reason) = &row.decision_reason { ": " (reason) } }
            }
            (plan_steps(&row.plan, ""))
            @if awaiting {
                (decision_forms(viewer, row))
            } @else {
                p.no-decision { "This plan is " (row.status.as_str()) "; it cannot be approved or rejected." }
            }
        }
    }
}

pub fn plans(
    viewer: &Viewer,
    awaiting: &[PlanRow],
    recent: &[PlanRow],
    plan_ttl: Duration,
    now: OffsetDateTime,
) -> Markup {
    layout(
        "Plans",
        Some(viewer),
        html! {
            h1 { "Plans awaiting approval" }
            p { "Approving a plan lets the daemon apply it only if, when it collects the evidence again, planning gives the same plan: a plan the world moved away from goes stale and is never applied." }
            @if awaiting.is_empty() {
                p #no-plans { "Nothing awaits approval." }
            }
            @for row in awaiting { (plan_card(viewer, row, plan_ttl, now)) }
            h2 { "Recently decided" }
            @for row in recent { (plan_card(viewer, row, plan_ttl, now)) }
        },
    )
}

/// A JSON value as indented text in which resource ids are links to the AWS console.
pub(super) fn json_view(value: &Value, region: &str) -> Markup {
    let mut out = String::new();
    write_json(value, region, 0, &mut out);
    html! { pre.json { (PreEscaped(out)) } }
}

/// Escaped for HTML text and double-quoted attributes, as maud escapes everything else.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Writing to a String cannot fail.
    let _ = std::fmt::Write::write_str(&mut maud::Escaper::new(&mut out), text);
    out
}

fn write_json(value: &Value, region: &str, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth + 1);
    let close = "  ".repeat(depth);
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push_str("{\n");
            for (i, (key, item)) in map.iter().enumerate() {
                out.push_str(&pad);
                out.push_str(&escape(&serde_json::to_string(key).unwrap_or_default()));
                out.push_str(": ");
                write_json(item, region, depth + 1, out);
                if i + 1 < map.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&close);
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&pad);
                write_json(item, region, depth + 1, out);
                if i + 1 < items.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&close);
            out.push(']');
        }
        Value::String(text) => {
            let quoted = escape(&serde_json::to_string(text).unwrap_or_default());
            match console_url(text, region) {
                Some(url) => {
                    out.push_str(&format!(
                        "<a href=\"{}\" target=\"_blank\" rel=\"noopener noreferrer\">{quoted}</a>",
                        escape(&url)
                    ));
                }
                None => out.push_str(&quoted),
            }
        }
        other => out.push_str(&escape(&other.to_string())),
    }
}

pub(super) fn policy_diff(before: &str, after: &str) -> Markup {
    let lines = diff(&policy_lines(before), &policy_lines(after));
    html! {
        table.diff aria-label="Key policy, before and after" {
            @for line in &lines {
                @match line {
                    Line::Same(text) => tr.same { td.sign { " " } td { code { (text) } } },
                    Line::Removed(text) => tr.removed { td.sign { "-" } td { code { (text) } } },
                    Line::Added(text) => tr.added { td.sign { "+" } td { code { (text) } } },
                }
            }
        }
    }
}

/// The steps of a plan: the exact API calls, and a key policy's diff.
pub(super) fn plan_steps(plan: &Value, region: &str) -> Markup {
    let steps = plan["steps"].as_array().cloned().unwrap_or_default();
    html! {
        ol.steps {
            @for step in &steps {
                li {
                    strong { (step["fix"].as_str().unwrap_or("?")) }
                    @if let Some(reason) = step["reason"].as_str() { ": " (reason) }
                    @let action = &step["action"];
                    @if let (Some(before), Some(after)) = (action["previous_policy"].as_str(), action["policy"].as_str()) {
                        h4 { "Key policy of " code { (action["key_id"].as_str().unwrap_or("?")) } ", before and after" }
                        (policy_diff(before, after))
                    }
                    details {
                        summary { "Exact call" }
                        (json_view(action, region))
                    }
                }
            }
        }
        @if let Some(notes) = plan["notes"].as_array().filter(|n| !n.is_empty()) {
            ul.notes { @for note in notes { li { (note.as_str().map(str::to_string).unwrap_or_else(|| note.to_string())) } } }
        }
    }
}

pub fn incident(
    viewer: &Viewer,
    incident: &IncidentSummary,
    records: &[Record],
    plans: &[PlanRow],
    plan_ttl: Duration,
    now: OffsetDateTime,
    notice: Option<&str>,
) -> Markup {
    let region = incident.region.as_str();
    html! {
        (layout(&format!("Incident {}", incident.incident_id), Some(viewer), html! {
            @if let Some(notice) = notice { p.notice role="status" #notice { (notice) } }
            h1 { "Incident " code { (incident.incident_id) } }
            dl.summary {
                dt { "Nodegroup" } dd { a href=(nodegroup_url(region, &incident.cluster, &incident.nodegroup)) target="_blank" rel="noopener noreferrer" { (incident.cluster) "/" (incident.nodegroup) } }
                @if incident.nodegroups.len() > 1 { dt { "Also" } dd { (incident.nodegroups.join(", ")) } }
                dt { "Account, region" } dd { (incident.account) ", " (region) }
                dt { "Cause" } dd { code #cause { (incident.cause) } }
                dt { "Outcome" } dd { span #outcome class={"outcome " (incident.outcome.as_str())} { (incident.outcome.as_str()) } }
                dt { "Mode" } dd { (incident.mode) }
                dt { "Opened, updated" } dd { (incident.opened_at) ", " (incident.updated_at) }
                dt { "Summary" } dd { (incident.summary) }
            }
            @if !plans.is_empty() {
                h2 { "Plans" }
                @for row in plans { (plan_card(viewer, row, plan_ttl, now)) }
            }
            h2 { "Timeline" }
            ol.timeline #timeline {
                @for record in records { (super::records::record_view(record, region)) }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_from_the_world_are_escaped_and_ids_linked() {
        let markup = json_view(
            &json!({"name": "<script>alert(1)</script>", "subnet": "subnet-0abc", "n": 3}),
            "us-west-2",
        )
        .into_string();
        assert!(!markup.contains("<script>"), "{markup}");
        assert!(markup.contains("&lt;script&gt;"), "{markup}");
        assert!(
            markup.contains("<a href=\"https://us-west-2.console.aws.amazon.com/vpcconsole/home?region=us-west-2#SubnetDetails:subnetId=subnet-0abc\""),
            "{markup}"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(ago(5), "5 s");
        assert_eq!(ago(125), "2 min");
        assert_eq!(ago(3 * 3600 + 120), "3 h 2 min");
        assert_eq!(ago(2 * 86_400 + 3600), "2 d 1 h");
    }
}
