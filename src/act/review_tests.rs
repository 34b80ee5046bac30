//! The second opinion on a key policy, against aws-smithy-mocks: moto has no IAM Access
//! Analyzer, so the emulator cannot say what ValidatePolicy answers.

use std::sync::Arc;

use aws_sdk_accessanalyzer::operation::validate_policy::{
    ValidatePolicyError, ValidatePolicyOutput,
};
use aws_sdk_accessanalyzer::types::error::AccessDeniedException;
use aws_sdk_accessanalyzer::types::{PolicyType, ValidatePolicyFinding, ValidatePolicyFindingType};
use aws_smithy_mocks::mock;

use super::{Actuator, AwsActuator};
use crate::aws::collect::mocked::clients_with_review;
use crate::core::step::{FindingKind, PolicyFinding, PolicyReview};

const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[]}"#;

fn finding(kind: ValidatePolicyFindingType, code: &str) -> ValidatePolicyFinding {
    ValidatePolicyFinding::builder()
        .finding_type(kind)
        .issue_code(code)
        .finding_details(format!("details of {code}"))
        .learn_more_link("https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html")
        .set_locations(Some(Vec::new()))
        .build()
        .expect("a complete finding")
}

#[tokio::test]
async fn every_page_of_findings_is_read_and_typed() {
    let first = mock!(aws_sdk_accessanalyzer::Client::validate_policy)
        .match_requests(|request| {
            request.next_token().is_none()
                && request.policy_document() == Some(POLICY)
                && request.policy_type() == Some(&PolicyType::ResourcePolicy)
        })
        .then_output(|| {
            ValidatePolicyOutput::builder()
                .findings(finding(ValidatePolicyFindingType::Error, "MISSING_VERSION"))
                .findings(finding(
                    ValidatePolicyFindingType::SecurityWarning,
                    "PASS_ROLE_WITH_STAR_IN_RESOURCE",
                ))
                .next_token("page-2")
                .build()
                .expect("an output")
        });
    let second = mock!(aws_sdk_accessanalyzer::Client::validate_policy)
        .match_requests(|request| request.next_token() == Some("page-2"))
        .then_output(|| {
            ValidatePolicyOutput::builder()
                .findings(finding(
                    ValidatePolicyFindingType::Suggestion,
                    "EMPTY_ARRAY_ACTION",
                ))
                .build()
                .expect("an output")
        });
    let actuator = AwsActuator::new(Arc::new(clients_with_review(
        &[],
        &[],
        &[],
        &[first, second],
    )));
    let review = actuator.review_policy(POLICY).await;
    let PolicyReview::Reviewed { findings } = review else {
        panic!("reviewed: {review:?}");
    };
    let kinds: Vec<(FindingKind, &str)> = findings
        .iter()
        .map(
            |PolicyFinding {
                 kind, issue_code, ..
             }| (*kind, issue_code.as_str()),
        )
        .collect();
    assert_eq!(
        kinds,
        [
            (FindingKind::Error, "MISSING_VERSION"),
            (
                FindingKind::SecurityWarning,
                "PASS_ROLE_WITH_STAR_IN_RESOURCE"
            ),
            (FindingKind::Suggestion, "EMPTY_ARRAY_ACTION"),
        ]
    );
    assert_eq!(findings[0].detail, "details of MISSING_VERSION");
}

#[tokio::test]
async fn a_review_that_cannot_be_asked_is_skipped_with_the_reason() {
    let denied = mock!(aws_sdk_accessanalyzer::Client::validate_policy).then_error(|| {
        ValidatePolicyError::AccessDeniedException(
            AccessDeniedException::builder()
                .message("not authorized to perform access-analyzer:ValidatePolicy")
                .build()
                .expect("an error"),
        )
    });
    let actuator = AwsActuator::new(Arc::new(clients_with_review(&[], &[], &[], &[denied])));
    match actuator.review_policy(POLICY).await {
        PolicyReview::Skipped { reason } => {
            assert!(reason.contains("AccessDeniedException"), "{reason}");
            assert!(
                reason.contains("access-analyzer:ValidatePolicy"),
                "{reason}"
            );
        }
        other => panic!("skipped: {other:?}"),
    }
}

/// A page that always promises another, with one finding of `kind`.
fn endless(kind: ValidatePolicyFindingType, code: &'static str) -> aws_smithy_mocks::Rule {
    mock!(aws_sdk_accessanalyzer::Client::validate_policy)
        .sequence()
        .output(move || {
            ValidatePolicyOutput::builder()
                .findings(finding(kind.clone(), code))
                .next_token("again")
                .build()
                .expect("an output")
        })
        .repeatedly()
        .build()
}

#[tokio::test]
async fn endless_paging_keeps_the_errors_it_saw_and_skips_otherwise() {
    let erring = AwsActuator::new(Arc::new(clients_with_review(
        &[],
        &[],
        &[],
        &[endless(ValidatePolicyFindingType::Error, "MISSING_VERSION")],
    )));
    match erring.review_policy(POLICY).await {
        PolicyReview::Reviewed { findings } => {
            assert_eq!(
                findings.len(),
                super::aws::REVIEW_PAGES,
                "one per page read"
            );
            assert!(findings.iter().all(|f| f.kind == FindingKind::Error));
        }
        other => panic!("the errors seen are kept: {other:?}"),
    }
    let suggesting = AwsActuator::new(Arc::new(clients_with_review(
        &[],
        &[],
        &[],
        &[endless(
            ValidatePolicyFindingType::Suggestion,
            "EMPTY_ARRAY_ACTION",
        )],
    )));
    match suggesting.review_policy(POLICY).await {
        PolicyReview::Skipped { reason } => assert!(reason.contains("kept paging"), "{reason}"),
        other => panic!("an unfinished review without errors is skipped: {other:?}"),
    }
}
