//! Kubernetes objects shaped as the API reference gives them (Node v1, ConfigMap v1,
//! certificates.k8s.io/v1 CertificateSigningRequest, apps/v1 DaemonSet), with the fields EKS
//! sets on a managed nodegroup's nodes.

use base64::Engine as _;
use serde_json::{Value, json};

const NOW: &str = "2026-11-30T12:00:00Z";

/// A Node of `nodegroup` for `instance_id` in `zone`, with its Ready condition.
pub fn node(name: &str, zone: &str, instance_id: &str, nodegroup: &str, ready: Ready) -> Value {
    let (status, reason, message) = match ready {
        Ready::True => (
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        ),
        Ready::False(message) => ("False", "KubeletNotReady", message),
        Ready::Unknown => (
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.".to_string(),
        ),
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": NOW,
            "labels": {
                "eks.amazonaws.com/nodegroup": nodegroup,
                "eks.amazonaws.com/capacityType": "ON_DEMAND",
                "kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": zone,
                "node.kubernetes.io/instance-type": "t3.medium",
            },
        },
        "spec": { "providerID": format!("aws:///{zone}/{instance_id}") },
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "message": "kubelet has sufficient memory available",
                 "lastHeartbeatTime": NOW, "lastTransitionTime": NOW},
                {"type": "Ready", "status": status, "reason": reason, "message": message,
                 "lastHeartbeatTime": NOW, "lastTransitionTime": NOW},
            ],
            "nodeInfo": {
                "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "containerd://1.7.27",
                "kernelVersion": "6.1.155", "kubeProxyVersion": "", "kubeletVersion": "v1.33.5-eks-113cf36",
                "machineID": "", "operatingSystem": "linux", "osImage": "Amazon Linux 2023.9.20251117",
                "systemUUID": "",
            },
        },
    })
}

/// A Node's Ready condition.
pub enum Ready {
    True,
    False(String),
    Unknown,
}

pub fn aws_auth(map_roles: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "aws-auth", "namespace": "kube-system", "creationTimestamp": NOW},
        "data": {"mapRoles": map_roles},
    })
}

/// The mapRoles entry EKS writes for a managed nodegroup's role.
pub fn node_mapping(role_arn: &str) -> String {
    format!(
        "- groups:\n  - system:bootstrappers\n  - system:nodes\n  rolearn: {role_arn}\n  username: system:node:{{{{EC2PrivateDNSName}}}}\n"
    )
}

/// A kubelet serving CSR requested by `node_name`, with `condition` (`Approved`, `Denied` or
/// `Failed`) and its reason.
pub fn kubelet_csr(
    name: &str,
    node_name: &str,
    condition: &str,
    reason: &str,
    message: &str,
) -> Value {
    let request = base64::engine::general_purpose::STANDARD.encode(
        "-----BEGIN CERTIFICATE REQUEST-----\nMIIBHjCBxQIBADBDMRUwEwYDVQQKEwxzeXN0ZW06bm9kZXM=\n-----END CERTIFICATE REQUEST-----\n",
    );
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name, "creationTimestamp": NOW},
        "spec": {
            "request": request,
            "signerName": "kubernetes.io/kubelet-serving",
            "usages": ["digital signature", "server auth"],
            "username": format!("system:node:{node_name}"),
            "groups": ["system:nodes", "system:authenticated"],
        },
        "status": {"conditions": [{
            "type": condition, "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": NOW, "lastTransitionTime": NOW,
        }]},
    })
}

/// The aws-node DaemonSet of the VPC CNI with these pod tolerations.
pub fn aws_node(tolerations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "aws-node", "namespace": "kube-system", "creationTimestamp": NOW,
                     "labels": {"k8s-app": "aws-node"}},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "aws-node"}},
            "template": {
                "metadata": {"labels": {"k8s-app": "aws-node"}},
                "spec": {
                    "containers": [{"name": "aws-node",
                                    "image": "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.20.4"}],
                    "hostNetwork": true,
                    "priorityClassName": "system-node-critical",
                    "serviceAccountName": "aws-node",
                    "tolerations": tolerations,
                },
            },
        },
        "status": {"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0},
    })
}

/// The toleration the EKS add-on gives aws-node: every taint.
pub fn tolerate_everything() -> Value {
    json!([{"operator": "Exists"}])
}

/// A list of `kind` (`NodeList`, …) in `api_version`.
pub fn list(api_version: &str, kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// A Status object, as the API server answers a failure.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}
