//! The [`Actuator`] over the AWS SDK.

use std::sync::Arc;

use aws_sdk_eks::types::NodegroupScalingConfig;

use super::{Actuator, NodegroupState};
use crate::aws::{AwsClients, AwsError, AwsResultExt};
use crate::evidence::collect::route_table_facts;
use crate::evidence::{RouteFacts, Scaling};
use crate::plan::ScalingUpdate;

pub struct AwsActuator {
    clients: Arc<AwsClients>,
}

impl AwsActuator {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }
}

impl Actuator for AwsActuator {
    async fn routes(&self, route_table_id: &str) -> Result<Vec<RouteFacts>, AwsError> {
        let output = self
            .clients
            .ec2
            .describe_route_tables()
            .route_table_ids(route_table_id)
            .send()
            .await
            .op("ec2:DescribeRouteTables")?;
        Ok(output
            .route_tables()
            .first()
            .map(|table| route_table_facts(table).routes)
            .unwrap_or_default())
    }

    async fn create_route(
        &self,
        route_table_id: &str,
        destination: &str,
        nat_gateway_id: &str,
    ) -> Result<(), AwsError> {
        self.clients
            .ec2
            .create_route()
            .route_table_id(route_table_id)
            .destination_cidr_block(destination)
            .nat_gateway_id(nat_gateway_id)
            .send()
            .await
            .op("ec2:CreateRoute")?;
        Ok(())
    }

    async fn key_policy(&self, key_id: &str) -> Result<String, AwsError> {
        let output = self
            .clients
            .kms
            .get_key_policy()
            .key_id(key_id)
            .policy_name("default")
            .send()
            .await
            .op("kms:GetKeyPolicy")?;
        Ok(output.policy().unwrap_or_default().to_string())
    }

    async fn put_key_policy(
        &self,
        key_id: &str,
        policy_name: &str,
        policy: &str,
    ) -> Result<(), AwsError> {
        self.clients
            .kms
            .put_key_policy()
            .key_id(key_id)
            .policy_name(policy_name)
            .policy(policy)
            .bypass_policy_lockout_safety_check(false)
            .send()
            .await
            .op("kms:PutKeyPolicy")?;
        Ok(())
    }

    async fn nodegroup(&self, cluster: &str, nodegroup: &str) -> Result<NodegroupState, AwsError> {
        let output = self
            .clients
            .eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(nodegroup)
            .send()
            .await
            .op("eks:DescribeNodegroup")?;
        let described = output.nodegroup();
        let scaling = described.and_then(|n| n.scaling_config());
        Ok(NodegroupState {
            status: described
                .and_then(|n| n.status())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            scaling: Scaling {
                min: scaling.and_then(|s| s.min_size()).unwrap_or(0),
                max: scaling.and_then(|s| s.max_size()).unwrap_or(0),
                desired: scaling.and_then(|s| s.desired_size()).unwrap_or(0),
            },
        })
    }

    async fn update_scaling(
        &self,
        cluster: &str,
        nodegroup: &str,
        update: ScalingUpdate,
    ) -> Result<String, AwsError> {
        let scaling = NodegroupScalingConfig::builder()
            .set_min_size(update.min_size)
            .desired_size(update.desired_size)
            .build();
        let output = self
            .clients
            .eks
            .update_nodegroup_config()
            .cluster_name(cluster)
            .nodegroup_name(nodegroup)
            .scaling_config(scaling)
            .send()
            .await
            .op("eks:UpdateNodegroupConfig")?;
        Ok(output
            .update()
            .and_then(|u| u.id())
            .unwrap_or_default()
            .to_string())
    }
}
