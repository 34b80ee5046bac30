//! nodemedic's kube-rs reading against this stand-in (not a real kube-apiserver: none
//! installs here), over HTTPS with its CA, with the token the stand-in checks as EKS would.

use std::time::{Duration, Instant};

use aws_credential_types::Credentials;

use crate::core::evidence::{ApiProblem, ClusterView, NodeInstance};
use crate::kubernetes::{ClusterApiOptions, ClusterRef, read_view};
use crate::lab::apiserver::{StandInApiServer, objects};

fn credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "test")
}

fn options(timeout: Duration) -> ClusterApiOptions {
    ClusterApiOptions {
        enabled: true,
        timeout,
        join_deadline_secs: 300,
    }
}

async fn read(server: &StandInApiServer, cluster: &str, timeout: Duration) -> ClusterView {
    let reference = ClusterRef {
        name: cluster,
        region: "us-west-2",
        endpoint: Some(&server.endpoint),
        certificate_authority: Some(&server.certificate_authority),
        nodegroup: "ng",
    };
    let instances = vec![NodeInstance {
        id: "i-0abc".into(),
        availability_zone: Some("us-west-2a".into()),
        private_dns_name: Some("ip-10-0-1-5.us-west-2.compute.internal".into()),
        launched_at: None,
    }];
    read_view(
        &reference,
        Some(credentials()),
        instances,
        &options(timeout),
    )
    .await
}

#[tokio::test]
async fn reads_the_nodegroups_nodes_csrs_aws_auth_and_aws_node() {
    let server = StandInApiServer::start("prod", "us-west-2").await.unwrap();
    {
        let mut state = server.state();
        state.nodes = vec![
            objects::node(
                "ip-10-0-1-5.us-west-2.compute.internal",
                "us-west-2a",
                "i-0abc",
                "ng",
                objects::Ready::True,
            ),
            objects::node(
                "ip-10-0-9-9.us-west-2.compute.internal",
                "us-west-2b",
                "i-0other",
                "other",
                objects::Ready::True,
            ),
        ];
        state.aws_auth = Some(objects::aws_auth(&objects::node_mapping(
            "arn:aws:iam::123456789012:role/eks-node",
        )));
        state.csrs = vec![
            objects::kubelet_csr(
                "csr-1",
                "ip-10-0-1-5.us-west-2.compute.internal",
                "Denied",
                "KubectlDeny",
                "no",
            ),
            objects::kubelet_csr(
                "csr-2",
                "ip-10-0-9-9.us-west-2.compute.internal",
                "Approved",
                "AutoApproved",
                "ok",
            ),
        ];
        state.aws_node = Some(objects::aws_node(objects::tolerate_everything()));
    }
    let ClusterView::Seen(seen) = read(&server, "prod", Duration::from_secs(10)).await else {
        panic!(
            "not read: {:?}",
            read(&server, "prod", Duration::from_secs(10)).await
        );
    };
    assert_eq!(seen.nodes.len(), 1, "only the nodegroup's node");
    assert_eq!(seen.nodes[0].instance_id(), Some("i-0abc"));
    assert!(seen.nodes[0].is_ready());
    assert_eq!(seen.csrs.len(), 1);
    assert_eq!(seen.csrs[0].conditions[0].kind, "Denied");
    assert!(
        seen.aws_auth
            .unwrap()
            .map_roles
            .unwrap()
            .contains("role/eks-node")
    );
    assert_eq!(
        seen.aws_node.unwrap().tolerations[0].operator.as_deref(),
        Some("Exists")
    );
    let requests = server.state().requests.clone();
    assert!(
        requests
            .iter()
            .all(|(method, _, accepted)| method == "GET" && *accepted),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_token_for_another_cluster_is_unauthorized_and_a_refusal_is_forbidden() {
    let server = StandInApiServer::start("prod", "us-west-2").await.unwrap();
    let view = read(&server, "staging", Duration::from_secs(10)).await;
    assert!(
        matches!(
            view,
            ClusterView::Unreachable {
                kind: ApiProblem::Unauthorized,
                ..
            }
        ),
        "{view:?}"
    );
    server.state().forbid = true;
    let view = read(&server, "prod", Duration::from_secs(10)).await;
    assert!(
        matches!(&view, ClusterView::Unreachable { kind: ApiProblem::Forbidden, reason } if reason.contains("403")),
        "{view:?}"
    );
}

#[tokio::test]
async fn an_api_that_never_answers_is_skipped_within_the_bound() {
    let server = StandInApiServer::start("prod", "us-west-2").await.unwrap();
    server.state().hang = true;
    let started = Instant::now();
    let view = read(&server, "prod", Duration::from_secs(1)).await;
    assert!(
        matches!(
            view,
            ClusterView::Unreachable {
                kind: ApiProblem::Timeout,
                ..
            }
        ),
        "{view:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_server_is_unreachable_not_trusted() {
    let server = StandInApiServer::start("prod", "us-west-2").await.unwrap();
    let other = StandInApiServer::start("prod", "us-west-2").await.unwrap();
    let reference = ClusterRef {
        name: "prod",
        region: "us-west-2",
        endpoint: Some(&server.endpoint),
        certificate_authority: Some(&other.certificate_authority),
        nodegroup: "ng",
    };
    let view = read_view(
        &reference,
        Some(credentials()),
        vec![],
        &options(Duration::from_secs(5)),
    )
    .await;
    assert!(
        matches!(
            view,
            ClusterView::Unreachable {
                kind: ApiProblem::Unreachable,
                ..
            }
        ),
        "{view:?}"
    );
    assert!(
        server.state().requests.is_empty(),
        "no request reached an untrusted server"
    );
}
