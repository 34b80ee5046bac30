//! Instance metadata from pods: with IMDSv2 required, a token response travels one network hop
//! per hop-limit count, and a pod's network namespace is one hop past the node.

use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::Evidence;

pub fn findings(evidence: &Evidence) -> Vec<Finding> {
    let Some(template) = evidence.launch_template_facts() else {
        return Vec::new();
    };
    let Some(options) = &template.metadata_options else {
        return Vec::new();
    };
    if options.http_tokens.as_deref() != Some("required") || options.hop_limit != Some(1) {
        return Vec::new();
    }
    vec![Finding {
        cause: Cause::ImdsHopLimitTooLow,
        blocking: false,
        summary: format!(
            "launch template {} requires IMDSv2 with a hop limit of 1",
            template.id
        ),
        explanation: "The node itself reaches instance metadata, but a pod does not: its token request crosses one \
                      more hop, and the response is dropped. Pods that read their region, credentials or identity \
                      from instance metadata (the VPC CNI without IRSA, older SDKs, agents) fail or hang."
            .into(),
        evidence: vec![Fact::new(
            format!("launch template {} version {}", template.id, template.version),
            "MetadataOptions: HttpTokens=required, HttpPutResponseHopLimit=1",
        )],
        remedy: Some(format!(
            "aws ec2 create-launch-template-version --launch-template-id {} --source-version {} \
             --launch-template-data '{{\"MetadataOptions\":{{\"HttpTokens\":\"required\",\"HttpPutResponseHopLimit\":2}}}}' \
             and update the nodegroup to it",
            template.id, template.version
        )),
        subject: Subject::Resource {
            id: template.id.clone(),
        },
    }]
}
