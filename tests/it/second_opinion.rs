//! IAM Access Analyzer's second opinion on a key policy, end to end: the emulator answers
//! ValidatePolicy (moto has no Access Analyzer; tests/emulator/access_analyzer.py stands in
//! for it, with the findings the test sets), the real binary asks it before writing the patch,
//! and the guard holds the patch for a human when AWS warns about it.

use nodemedic::lab;
use serde_json::json;

use crate::breakage::{grants_autoscaling, publish_lab_002};
use crate::support::World;

#[tokio::test(flavor = "multi_thread")]
async fn a_security_warning_on_the_patched_key_policy_waits_for_a_human_even_in_auto_mode() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    world
        .emulator
        .set_policy_findings(&[json!({
            "findingType": "SECURITY_WARNING",
            "issueCode": "EXTERNAL_PRINCIPAL",
            "findingDetails": "The policy grants access to a principal outside the account."
        })])
        .await
        .expect("findings");
    publish_lab_002(&world, &lab).await;

    world.run_once("auto");

    assert!(
        !grants_autoscaling(&world.key_policy(&lab.key_id).await),
        "the warned-about policy is not written"
    );
    assert!(world.nodegroup_updates(&lab.nodegroup).await.is_empty());
    let incidents = world.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let incident = incidents[0]["incident_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(incidents[0]["outcome"], "planned");
    let decisions = world.records_of(&incident, "guard_decision");
    let patch = decisions
        .iter()
        .find(|r| r["body"]["fix"] == "patch_kms_key_policy")
        .expect("the patch was judged");
    assert_eq!(patch["body"]["decision"]["decision"], "hold");
    assert_eq!(patch["body"]["decision"]["awaiting_approval"], true);
    assert!(
        patch["body"]["decision"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("EXTERNAL_PRINCIPAL")),
        "{patch:#}"
    );
    assert_eq!(
        patch["body"]["policy_review"]["findings"][0]["kind"], "security_warning",
        "the review is recorded with the decision: {patch:#}"
    );

    let waiting = world.plans(false);
    assert_eq!(waiting.len(), 1, "{waiting:#?}");
    let plan_id = waiting[0]["plan_id"].as_str().expect("plan id").to_string();
    world.operate(&[
        "approve",
        &plan_id,
        "--by",
        "alice",
        "--reason",
        "reviewed the warning",
    ]);
    world.run_once("auto");

    assert!(
        grants_autoscaling(&world.key_policy(&lab.key_id).await),
        "an approval writes it"
    );
    assert_eq!(world.incidents()[0]["outcome"], "fixed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_review_is_recorded_and_the_patch_goes_ahead() {
    let world = World::new(3).await;
    let lab = lab::lab_002(&world.clients, &world.network)
        .await
        .expect("lab 002");
    publish_lab_002(&world, &lab).await;

    world.run_once("auto");

    assert!(grants_autoscaling(&world.key_policy(&lab.key_id).await));
    let incidents = world.incidents();
    let incident = incidents[0]["incident_id"].as_str().expect("id");
    let patch = world
        .records_of(incident, "guard_decision")
        .into_iter()
        .find(|r| r["body"]["fix"] == "patch_kms_key_policy")
        .expect("the patch was judged");
    assert_eq!(
        patch["body"]["policy_review"],
        json!({ "result": "reviewed", "findings": [] }),
        "{patch:#}"
    );
}
