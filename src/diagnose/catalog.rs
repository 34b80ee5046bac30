//! The catalog of cause codes: stable names that appear in audit records, metrics labels, JSON
//! output and docs/catalog.md. Renaming one is a breaking change.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    KmsKeyUnusable,
    KmsKeyPolicyBlocksAutoscaling,
    SubnetNoEgressRoute,
    Unknown,
}

/// What a cause code means and what fixes it.
pub struct CauseDoc {
    pub cause: Cause,
    pub title: &'static str,
    pub evidence: &'static str,
    pub remedy: &'static str,
}

impl Cause {
    pub const ALL: [Cause; 4] = [
        Cause::KmsKeyUnusable,
        Cause::KmsKeyPolicyBlocksAutoscaling,
        Cause::SubnetNoEgressRoute,
        Cause::Unknown,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Cause::KmsKeyUnusable => "kms_key_unusable",
            Cause::KmsKeyPolicyBlocksAutoscaling => "kms_key_policy_blocks_autoscaling",
            Cause::SubnetNoEgressRoute => "subnet_no_egress_route",
            Cause::Unknown => "unknown",
        }
    }

    pub fn from_code(code: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|cause| cause.code() == code)
    }

    /// Order among findings of one incident: a cause no fix can help comes first, because
    /// fixing anything else would not make nodes join.
    pub fn rank(self) -> u8 {
        match self {
            Cause::KmsKeyUnusable => 0,
            Cause::KmsKeyPolicyBlocksAutoscaling => 1,
            Cause::SubnetNoEgressRoute => 2,
            Cause::Unknown => 9,
        }
    }

    pub fn doc(self) -> CauseDoc {
        let (title, evidence, remedy) = match self {
            Cause::KmsKeyUnusable => (
                "The launch template's KMS key is disabled, pending deletion or missing",
                "DescribeKey on each key the launch template's block device mappings name: KeyState is not \
                 Enabled, or the key does not exist.",
                "No automatic fix: no key policy change can help. Enable the key (`aws kms enable-key`), cancel its \
                 deletion (`aws kms cancel-key-deletion`), or point the launch template at another key.",
            ),
            Cause::KmsKeyPolicyBlocksAutoscaling => (
                "The KMS key policy does not let AWSServiceRoleForAutoScaling use the key",
                "The launch template encrypts a volume with a customer managed key that is Enabled, and the key \
                 policy (GetKeyPolicy) has no statement allowing the Auto Scaling service-linked role the \
                 encrypt/decrypt/re-encrypt/generate-data-key/describe actions and CreateGrant. Launches fail with \
                 Client.InvalidKMSKey.InvalidState or Client.InternalError: Client error on launch.",
                "`patch_kms_key_policy`: add the two statements of the EC2 Auto Scaling EBS-encryption guide for the \
                 service-linked role, keep every existing statement, then `cycle_nodegroup`. A key owned by another \
                 account is not changed: its owner must grant access.",
            ),
            Cause::SubnetNoEgressRoute => (
                "The node subnet has no route to the internet and no VPC endpoints for a private join",
                "The route table of the instance's subnet (explicit association, else the VPC main table) has no \
                 0.0.0.0/0 route, and the VPC lacks at least one of the ec2, ecr.api, ecr.dkr, s3 and sts endpoints.",
                "`add_nat_route`: CreateRoute 0.0.0.0/0 to an available public NAT gateway of the VPC (same zone and \
                 already used by the cluster preferred), then `cycle_nodegroup`. With no NAT gateway there is no \
                 automatic fix: create one, or the VPC endpoints.",
            ),
            Cause::Unknown => (
                "No rule matched",
                "The launch failed and no rule explains it; the raw failure text and all evidence are recorded.",
                "Read the recorded failure text and evidence (`nodemedic audit show ID`).",
            ),
        };
        CauseDoc {
            cause: self,
            title,
            evidence,
            remedy,
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}
