//! The third lab: the knowledge-center checklist's most common cause, a node role missing from
//! the aws-auth ConfigMap. A cluster that authenticates through aws-auth only (CONFIG_MAP), a
//! nodegroup whose instance runs but never registers, and an aws-auth an owner rewrote without
//! the node role. The cluster's API is the stand-in of [`super::apiserver`]; the node's console
//! shows nodeadm finishing and kubelet starting, nothing more.

use aws_sdk_eks::types::AuthenticationMode;

use super::apiserver::{StandInApiServer, objects};
use super::{Emulator, LabClients, LabError, Network, REGION};

pub const AUTH_CLUSTER: &str = "eks-auth-lab";
pub const AUTH_NODEGROUP: &str = "auth_nodegroup";

/// What the lab built; the stand-in stops when this is dropped.
pub struct LabAuth {
    pub cluster: String,
    pub nodegroup: String,
    pub instance: String,
    pub api: StandInApiServer,
}

pub async fn lab_auth(
    c: &LabClients,
    network: &Network,
    emulator: &Emulator,
) -> Result<LabAuth, LabError> {
    super::cluster_named(
        c,
        network,
        AUTH_CLUSTER,
        Some(AuthenticationMode::ConfigMap),
    )
    .await?;
    super::nodegroup_in(
        c,
        AUTH_CLUSTER,
        &network.node_role_arn,
        AUTH_NODEGROUP,
        &network.private_subnet,
        (1, 2, 1),
        None,
    )
    .await?;
    let api = StandInApiServer::start(AUTH_CLUSTER, REGION)
        .await
        .map_err(|e| LabError::Emulator(e.to_string()))?;
    emulator
        .point_cluster_at(AUTH_CLUSTER, &api.endpoint, &api.certificate_authority)
        .await?;
    {
        let mut state = api.state();
        // The owner's rewrite kept the admins and dropped the mapping EKS had written.
        state.aws_auth = Some(objects::aws_auth(&format!(
            "- rolearn: arn:aws:iam::{}:role/platform-admins\n  username: admin:{{{{SessionName}}}}\n  groups:\n  - system:masters\n",
            network.account
        )));
        state.aws_node = Some(objects::aws_node(objects::tolerate_everything()));
    }
    let described = c
        .ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:eks:nodegroup-name")
                .values(AUTH_NODEGROUP)
                .build(),
        )
        .send()
        .await
        .map_err(|e| LabError::Emulator(e.to_string()))?;
    let instance = described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.instance_id())
        .ok_or(LabError::Missing("the nodegroup's instance"))?
        .to_string();
    // It has been trying for twelve minutes, past the five-minute join deadline.
    emulator.launched_ago(&instance, 12).await?;
    // nodeadm finished; kubelet's Unauthorized goes to the journal, not the console.
    emulator
        .set_console_output(
            &instance,
            b"[   31.530] nodeadm[1022]: info init/init.go:52 Checking user is root\n\
              [   38.112] nodeadm[1022]: info init/init.go:95 Completed configuration\n\
              [   38.400] systemd[1]: Started kubelet.service - Kubernetes Kubelet.\n",
        )
        .await?;
    Ok(LabAuth {
        cluster: AUTH_CLUSTER.into(),
        nodegroup: AUTH_NODEGROUP.into(),
        instance,
        api,
    })
}
