use super::*;

fn incident(
    id: &str,
    cluster: &str,
    nodegroup: &str,
    cause: &str,
    outcome: &str,
    opened: &str,
) -> IncidentSummary {
    IncidentSummary {
        incident_id: id.into(),
        account: "123456789012".into(),
        region: "us-west-2".into(),
        cluster: cluster.into(),
        nodegroup: nodegroup.into(),
        cause: cause.into(),
        mode: "auto".into(),
        outcome: crate::audit::Outcome::parse(outcome).unwrap(),
        summary: String::new(),
        plan_id: None,
        opened_at: opened.into(),
        updated_at: opened.into(),
        events: 1,
        actions: Vec::new(),
        nodegroups: vec![format!("{cluster}/{nodegroup}")],
    }
}

fn ids(list: &[IncidentSummary]) -> Vec<&str> {
    list.iter().map(|i| i.incident_id.as_str()).collect()
}

#[test]
fn filters_combine_and_the_newest_comes_first() {
    let all = vec![
        incident(
            "a",
            "prod",
            "ng1",
            "subnet_no_egress_route",
            "fixed",
            "2026-11-20T10:00:00.000Z",
        ),
        incident(
            "b",
            "prod",
            "ng2",
            "kms_key_policy_blocks_autoscaling",
            "planned",
            "2026-11-21T09:00:00.000Z",
        ),
        incident(
            "c",
            "dev",
            "ng1",
            "kms_key_policy_blocks_autoscaling",
            "fixed",
            "2026-11-21T08:00:00.000Z",
        ),
    ];
    assert_eq!(
        ids(&filter_incidents(all.clone(), "", "", "", "", None)),
        ["b", "c", "a"]
    );
    assert_eq!(
        ids(&filter_incidents(all.clone(), "prod", "", "", "", None)),
        ["b", "a"]
    );
    assert_eq!(
        ids(&filter_incidents(all.clone(), "", "ng1", "", "", None)),
        ["c", "a"]
    );
    assert_eq!(
        ids(&filter_incidents(
            all.clone(),
            "",
            "",
            "kms_key_policy_blocks_autoscaling",
            "fixed",
            None
        )),
        ["c"]
    );
    assert_eq!(
        ids(&filter_incidents(
            all,
            "",
            "",
            "",
            "",
            Some("2026-11-21T00:00:00.000Z")
        )),
        ["b", "c"]
    );
}

#[test]
fn the_time_filter_names_a_cutoff() {
    let now = time::macros::datetime!(2026-11-21 12:00:00 UTC);
    assert_eq!(
        since_cutoff("1h", now).as_deref(),
        Some("2026-11-21T11:00:00.000Z")
    );
    assert_eq!(since_cutoff("", now), None);
    assert_eq!(since_cutoff("bogus", now), None);
}

#[test]
fn a_form_posted_from_another_site_is_foreign() {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
    assert!(
        !foreign_origin(&headers),
        "no Origin: a same-origin navigation or a tool"
    );
    headers.insert(
        header::ORIGIN,
        HeaderValue::from_static("http://127.0.0.1:8080"),
    );
    assert!(!foreign_origin(&headers));
    headers.insert(
        header::ORIGIN,
        HeaderValue::from_static("https://evil.example"),
    );
    assert!(foreign_origin(&headers));
}

#[test]
fn what_a_node_printed_is_quoted_and_escaped() {
    use crate::core::evidence::{BootLog, BootLogLookup, Evidence};
    use crate::core::journal::Entry;
    let mut evidence = Evidence::lab_000();
    evidence.boot_logs = vec![BootLog {
        instance_id: "i-1".into(),
        lookup: BootLogLookup::Read(crate::core::boot_log::digest(
            b"\x1b[31mdial tcp 10.0.0.1:443: i/o timeout <script>alert(1)</script>\x1b[0m\n",
        )),
    }];
    let entry = Entry::Diagnosis(Box::new(crate::core::checks::diagnose(&evidence)));
    let record = crate::audit::Record {
        seq: 1,
        at: "2026-12-01T00:00:00.000Z".into(),
        incident_id: Some("inc".into()),
        event_id: None,
        kind: entry.kind().as_str().into(),
        body: entry.body().unwrap(),
        prev_hash: String::new(),
        hash: String::new(),
        chain: String::new(),
    };
    let page = super::records::record_view(&record, "us-west-2").into_string();
    assert!(page.contains("What the node printed"), "{page}");
    assert!(
        page.contains("i/o timeout &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>") && !page.contains('\u{1b}'));
}
