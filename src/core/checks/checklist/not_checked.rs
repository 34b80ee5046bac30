//! The checks of the AWS DevOps Agent's eks-node-join-diagnostic skill (NJ1–NJ64) that no
//! nodemedic check covers, and why. Together with [`super::CheckId::nj`] this names every NJ
//! check once.

use serde::Serialize;

/// Why nodemedic does not run a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unseen {
    /// The answer is a Kubernetes object inside the cluster.
    ClusterObjects,
    /// The answer is on the instance: its files, kernel or processes.
    OnTheNode,
    /// The answer is in CloudWatch Logs or CloudTrail history.
    Logs,
    /// The check concerns Karpenter, hybrid or self-managed nodes, not managed nodegroups.
    NotManagedNodegroups,
    /// The AWS APIs answer it; nodemedic does not run it yet.
    NotYet,
    /// Judged not worth a check for managed nodegroups, for the reason given.
    Decided(&'static str),
}

impl Unseen {
    pub fn explain(self) -> &'static str {
        match self {
            Unseen::ClusterObjects => {
                "a Kubernetes object nodemedic does not read: it reads Nodes, CSRs, aws-auth and aws-node only"
            }
            Unseen::OnTheNode => {
                "on the instance (files, kernel, processes); nodemedic does not log in to nodes"
            }
            Unseen::Logs => {
                "in CloudWatch Logs or CloudTrail history, which nodemedic does not read"
            }
            Unseen::NotManagedNodegroups => {
                "concerns Karpenter, hybrid or self-managed nodes, not managed nodegroups"
            }
            Unseen::NotYet => "the AWS APIs answer it; nodemedic does not check it yet",
            Unseen::Decided(why) => why,
        }
    }
}

/// One NJ check nodemedic does not run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NotChecked {
    pub nj: &'static str,
    pub title: &'static str,
    pub why: Unseen,
}

const fn unseen(nj: &'static str, title: &'static str, why: Unseen) -> NotChecked {
    NotChecked { nj, title, why }
}

use Unseen::*;

pub const NOT_CHECKED: &[NotChecked] = &[
    unseen("NJ23", "custom AMI has the node components", OnTheNode),
    unseen(
        "NJ24",
        "regional STS endpoint reachable from the node",
        OnTheNode,
    ),
    unseen("NJ25", "EC2NodeClass subnets", NotManagedNodegroups),
    unseen("NJ26", "EC2NodeClass security groups", NotManagedNodegroups),
    unseen("NJ27", "EC2NodeClass AMI", NotManagedNodegroups),
    unseen("NJ31", "containerd mirror configuration", OnTheNode),
    unseen("NJ32", "cgroup driver aligned", OnTheNode),
    unseen(
        "NJ33",
        "root filesystem supports the snapshotter",
        OnTheNode,
    ),
    unseen(
        "NJ34",
        "instance store mounted before containerd",
        OnTheNode,
    ),
    unseen("NJ35", "IPAMD warm pool fits the subnet", ClusterObjects),
    unseen("NJ36", "CNI images available", ClusterObjects),
    unseen(
        "NJ37",
        "node subnet does not overlap on-premises networks",
        Decided(
            "the AWS APIs show only networks routed through transit gateways, VPNs and peering, never the on-premises prefixes a subnet could overlap; a partial answer would pass what it cannot see",
        ),
    ),
    unseen("NJ38", "kernel version", OnTheNode),
    unseen("NJ39", "SELinux allows kubelet paths", OnTheNode),
    unseen("NJ40", "AppArmor allows the containerd socket", OnTheNode),
    unseen("NJ41", "kernel modules loaded", OnTheNode),
    unseen("NJ42", "SSM hybrid activation valid", NotManagedNodegroups),
    unseen(
        "NJ43",
        "kubelet certificate after a long stop",
        Decided(
            "a managed nodegroup's Auto Scaling group replaces a stopped instance (EC2 health check), so none comes back after 90 days with an expired kubelet certificate",
        ),
    ),
    unseen("NJ44", "no recent credential rotation", Logs),
    unseen("NJ45", "etcd size", ClusterObjects),
    unseen("NJ46", "no API throttling", Logs),
    unseen(
        "NJ48",
        "no blocking package updates in user data",
        Decided(
            "a package update at boot slows a join but does not stop it, and a pattern match over scripts would warn on working nodes",
        ),
    ),
    unseen("NJ50", "no stale cloud-init state in the AMI", OnTheNode),
    unseen(
        "NJ51",
        "admission webhooks do not block nodes",
        ClusterObjects,
    ),
    unseen("NJ52", "PodDisruptionBudgets allow updates", ClusterObjects),
    unseen("NJ53", "kube-proxy version matches", ClusterObjects),
    unseen("NJ54", "one GPU device plugin", ClusterObjects),
    unseen("NJ56", "NAT idle timeout and keepalive", OnTheNode),
    unseen("NJ57", "no ENI detach events", Logs),
    unseen("NJ58", "conntrack table size", OnTheNode),
    unseen("NJ61", "AL2023 credential provider path", OnTheNode),
    unseen(
        "NJ62",
        "kubernetes.io/cluster tag on the instance",
        NotManagedNodegroups,
    ),
    unseen("NJ64", "node mapping not removed", Logs),
];
