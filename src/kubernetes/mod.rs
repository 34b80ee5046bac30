//! The cluster's own API, read-only, reached as `aws eks get-token` and kubectl reach it: the
//! endpoint and CA bundle from DescribeCluster, a bearer token presigned with the credentials of
//! the account served, and kube-rs over rustls. Anything that stops the reading (no endpoint,
//! a refusal, a timeout) becomes [`ClusterView::Unreachable`] with its reason: the cluster checks
//! are then skipped, and the AWS-side diagnosis carries on.

mod objects;
pub mod token;

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use base64::Engine as _;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::core::evidence::{ApiProblem, ClusterObjects, ClusterView, NodeInstance};

/// How nodemedic reads clusters.
#[derive(Debug, Clone)]
pub struct ClusterApiOptions {
    pub enabled: bool,
    /// The bound on the whole reading, connection included.
    pub timeout: Duration,
    /// How long an instance may run before a missing Node is a finding.
    pub join_deadline_secs: u64,
}

impl Default for ClusterApiOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout: Duration::from_secs(10),
            join_deadline_secs: 300,
        }
    }
}

/// What identifies the cluster and its nodegroup.
pub struct ClusterRef<'a> {
    pub name: &'a str,
    pub region: &'a str,
    pub endpoint: Option<&'a str>,
    /// `certificateAuthority.data`: base64 of a PEM bundle.
    pub certificate_authority: Option<&'a str>,
    pub nodegroup: &'a str,
}

/// Reads the Nodes, CSRs, aws-auth and aws-node of `cluster` for the nodegroup's `instances`.
pub async fn read_view(
    cluster: &ClusterRef<'_>,
    credentials: Option<Credentials>,
    instances: Vec<NodeInstance>,
    options: &ClusterApiOptions,
) -> ClusterView {
    let unreachable = |kind, reason: String| ClusterView::Unreachable { kind, reason };
    let Some(endpoint) = cluster.endpoint else {
        return unreachable(
            ApiProblem::NoEndpoint,
            "DescribeCluster gave no endpoint".into(),
        );
    };
    let Some(credentials) = credentials else {
        return unreachable(
            ApiProblem::Refused,
            "no AWS credentials to sign a cluster token with".into(),
        );
    };
    let client = match client(cluster, endpoint, &credentials, options) {
        Ok(client) => client,
        Err(reason) => return unreachable(ApiProblem::Refused, reason),
    };
    match tokio::time::timeout(
        options.timeout,
        read(client, cluster.nodegroup, instances, options),
    )
    .await
    {
        Ok(Ok(objects)) => ClusterView::Seen(objects),
        Ok(Err(error)) => {
            let (kind, reason) = objects::classify(&error, endpoint);
            unreachable(kind, reason)
        }
        Err(_) => unreachable(
            ApiProblem::Timeout,
            format!(
                "{endpoint} did not answer within {} s (a private endpoint reached from outside its VPC?)",
                options.timeout.as_secs()
            ),
        ),
    }
}

/// The nodegroup's Nodes: the instance id of each and whether it is Ready; the reason when the
/// API could not be read. For verification after a cycle.
pub async fn nodegroup_nodes(
    cluster: &ClusterRef<'_>,
    credentials: Option<Credentials>,
    options: &ClusterApiOptions,
) -> Result<Vec<(String, bool)>, String> {
    let endpoint = cluster.endpoint.ok_or("DescribeCluster gave no endpoint")?;
    let credentials = credentials.ok_or("no AWS credentials to sign a cluster token with")?;
    let client = client(cluster, endpoint, &credentials, options)?;
    let nodes: Api<Node> = Api::all(client);
    match tokio::time::timeout(options.timeout, nodes.list(&ListParams::default())).await {
        Ok(Ok(list)) => Ok(objects::nodegroup_nodes(cluster.nodegroup, list.items)),
        Ok(Err(error)) => Err(objects::classify(&error, endpoint).1),
        Err(_) => Err(format!(
            "{endpoint} did not answer within {} s",
            options.timeout.as_secs()
        )),
    }
}

fn client(
    cluster: &ClusterRef<'_>,
    endpoint: &str,
    credentials: &Credentials,
    options: &ClusterApiOptions,
) -> Result<kube::Client, String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("endpoint {endpoint:?} is not a URL: {e}"))?;
    let mut config = kube::Config::new(uri);
    if let Some(data) = cluster.certificate_authority {
        config.root_cert = Some(ca_bundle(data)?);
    }
    let token = token::token(credentials, cluster.region, cluster.name, SystemTime::now())
        .map_err(|e| e.to_string())?;
    config.auth_info.token = Some(token);
    config.connect_timeout = Some(options.timeout);
    config.read_timeout = Some(options.timeout);
    config.write_timeout = Some(options.timeout);
    // A refusal is an answer: retrying 429s and 503s for minutes would stall the incident.
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| format!("building the client failed: {e}"))
}

/// The DER certificates of the base64 PEM bundle DescribeCluster gives.
fn ca_bundle(data: &str) -> Result<Vec<Vec<u8>>, String> {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("certificateAuthority.data is not base64: {e}"))?;
    let certificates: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .map(|der| der.as_ref().to_vec())
        .collect();
    if certificates.is_empty() {
        return Err("certificateAuthority.data holds no PEM certificate".into());
    }
    Ok(certificates)
}

async fn read(
    client: kube::Client,
    nodegroup: &str,
    instances: Vec<NodeInstance>,
    options: &ClusterApiOptions,
) -> Result<ClusterObjects, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client, "kube-system");
    let every = ListParams::default();
    let (nodes, aws_auth, csrs, aws_node) = tokio::try_join!(
        nodes.list(&every),
        config_maps.get_opt("aws-auth"),
        csrs.list(&every),
        daemon_sets.get_opt("aws-node"),
    )?;
    let read_at = time::OffsetDateTime::now_utc();
    Ok(objects::cluster_objects(
        nodegroup,
        instances,
        nodes.items,
        aws_auth,
        csrs.items,
        aws_node,
        read_at,
        options.join_deadline_secs,
    ))
}
