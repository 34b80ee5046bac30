//! The node's own account: the console output of an instance that has not registered. A line
//! that confirms a finding made from AWS state is attached to that finding; the rest becomes a
//! `node_boot_error` of its own.

use super::{Cause, Fact, Finding, Subject};
use crate::core::evidence::{BootErrorKind, BootLogLookup, Evidence};

/// Lines attached to one finding, per instance.
const CORROBORATING_LINES: usize = 2;

/// The AWS-side causes a kind of boot-log line confirms.
fn confirms(kind: BootErrorKind) -> &'static [Cause] {
    match kind {
        BootErrorKind::EndpointUnreachable => &[
            Cause::SubnetNoEgressRoute,
            Cause::DefaultRouteBlackhole,
            Cause::NatGatewayUnavailable,
            Cause::NatGatewayWithoutInternetRoute,
            Cause::PublicSubnetWithoutPublicIp,
            Cause::VpcEndpointMissing,
            Cause::VpcEndpointBlocksHttps,
            Cause::PublicEndpointExcludesNodes,
            Cause::SecurityGroupBlocksCluster,
            Cause::NetworkAclBlocksTraffic,
        ],
        BootErrorKind::DnsFailure => &[
            Cause::VpcDnsDisabled,
            Cause::DhcpOptionsWithoutAmazonDns,
            Cause::VpcEndpointPrivateDnsDisabled,
        ],
        BootErrorKind::Unauthorized => &[
            Cause::AwsAuthMissingNodeRole,
            Cause::AwsAuthRoleArnHasPath,
            Cause::AwsAuthMalformed,
            Cause::NodeRoleMissingAccessEntry,
        ],
        BootErrorKind::ClusterNotFound => &[Cause::BootstrapClusterNameMismatch],
        BootErrorKind::NodeadmConfig => &[
            Cause::BootstrapArgsMissing,
            Cause::UserDataFormatMismatch,
            Cause::CustomAmiWithoutBootstrap,
        ],
        BootErrorKind::CertificateError | BootErrorKind::BootstrapFailed => &[],
    }
}

/// Attaches confirming lines to `findings` and adds a `node_boot_error` per instance whose log
/// shows an error; it blocks only when no AWS-side finding explains it already.
pub fn corroborate(evidence: &Evidence, findings: &mut Vec<Finding>) {
    for log in &evidence.boot_logs {
        let BootLogLookup::Read(digest) = &log.lookup else {
            continue;
        };
        if digest.lines.is_empty() {
            continue;
        }
        let resource = format!("console of {}", log.instance_id);
        let mut explained = false;
        for finding in findings.iter_mut().filter(|f| f.blocking) {
            let lines: Vec<Fact> = digest
                .lines
                .iter()
                .filter(|line| confirms(line.kind).contains(&finding.cause))
                .take(CORROBORATING_LINES)
                .map(|line| Fact::new(&resource, &line.text))
                .collect();
            explained |= !lines.is_empty();
            finding.evidence.extend(lines);
        }
        let mut kinds: Vec<&str> = digest.lines.iter().map(|l| l.kind.as_str()).collect();
        kinds.dedup();
        findings.push(Finding {
            cause: Cause::NodeBootError,
            blocking: !explained,
            summary: format!(
                "the console of {} shows {}: {}",
                log.instance_id,
                kinds.join(", "),
                digest.lines[0].text
            ),
            explanation: "EC2 keeps the last 64 KiB of an instance's console. bootstrap.sh, nodeadm and cloud-init \
                          print their failures there; the quoted lines are what the node itself said."
                .into(),
            evidence: digest
                .lines
                .iter()
                .map(|line| Fact::new(&resource, format!("[{}] {}", line.kind.as_str(), line.text)))
                .collect(),
            remedy: Some(format!(
                "aws ec2 get-console-output --instance-id {} --latest --output text",
                log.instance_id
            )),
            subject: Subject::Resource {
                id: log.instance_id.clone(),
            },
        });
    }
}
