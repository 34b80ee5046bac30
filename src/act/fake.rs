//! An in-memory world behind the actuator seam, and the steps the act tests apply to it.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::aws::{AwsError, AwsFailure};
use crate::core::evidence::fixtures::ROOT_ONLY_POLICY;
use crate::core::evidence::{RouteFacts, Scaling};
use crate::core::plan::{Action, FixKind, ScalingUpdate, Step};

/// An in-memory world behind the actuator seam.
#[derive(Default)]
pub(crate) struct FakeWorld {
    pub(crate) routes: Mutex<HashMap<String, Vec<RouteFacts>>>,
    pub(crate) policies: Mutex<HashMap<String, String>>,
    pub(crate) nodegroup: Mutex<Option<NodegroupState>>,
    /// Reads left before an update settles.
    pub(super) updating_reads: Mutex<u32>,
    pub(super) updates: Mutex<Vec<ScalingUpdate>>,
    pub(super) fail: Mutex<HashMap<&'static str, String>>,
    pub(super) flags: Mutex<HashMap<String, bool>>,
    pub(crate) role_policies: Mutex<HashMap<String, Vec<String>>>,
    /// Instance profile name → the names of the roles in it.
    pub(crate) profiles: Mutex<HashMap<String, Vec<String>>>,
    pub(super) access_entries: Mutex<HashMap<String, String>>,
    /// The cluster's Nodes (instance id, Ready); `None`: the fake has no cluster API.
    pub(crate) nodes: Mutex<Option<Vec<(String, bool)>>>,
    pub(crate) in_service: Mutex<usize>,
    pub(super) denied: Mutex<Option<String>>,
    /// Behaves as an endpoint that is not EC2-compatible: DryRun=true calls are performed.
    pub(super) ignores_dry_run: Mutex<bool>,
    /// What Access Analyzer says of any policy; `None`: the world has no Access Analyzer.
    pub(crate) review: Mutex<Option<PolicyReview>>,
    /// The policies sent for review.
    pub(crate) reviewed: Mutex<Vec<String>>,
}

pub(super) fn error(operation: &'static str, code: &str) -> AwsError {
    AwsError {
        operation,
        code: code.into(),
        message: "injected".into(),
        failure: AwsFailure::Service,
    }
}

impl FakeWorld {
    pub(crate) fn failing(self, operation: &'static str, code: &str) -> Self {
        self.fail.lock().unwrap().insert(operation, code.into());
        self
    }

    pub(super) fn check(&self, operation: &'static str) -> Result<(), AwsError> {
        match self.fail.lock().unwrap().get(operation) {
            Some(code) => Err(error(operation, code)),
            None => Ok(()),
        }
    }

    pub(crate) fn reviewing(self, review: PolicyReview) -> Self {
        *self.review.lock().unwrap() = Some(review);
        self
    }

    pub(crate) fn ignoring_dry_run(self) -> Self {
        *self.ignores_dry_run.lock().unwrap() = true;
        self
    }

    pub(crate) fn with_table(self, table: &str, routes: Vec<RouteFacts>) -> Self {
        self.routes.lock().unwrap().insert(table.into(), routes);
        self
    }

    pub(super) fn with_policy(self, key: &str, policy: &str) -> Self {
        self.policies
            .lock()
            .unwrap()
            .insert(key.into(), policy.into());
        self
    }

    pub(crate) fn with_nodegroup(self, status: &str, min: i32, max: i32, desired: i32) -> Self {
        *self.nodegroup.lock().unwrap() = Some(NodegroupState {
            status: status.into(),
            scaling: Scaling { min, max, desired },
            issues: Vec::new(),
        });
        self
    }
}

impl Actuator for FakeWorld {
    async fn routes(&self, table: &str) -> Result<Vec<RouteFacts>, AwsError> {
        self.check("routes")?;
        Ok(self
            .routes
            .lock()
            .unwrap()
            .get(table)
            .cloned()
            .unwrap_or_default())
    }

    async fn create_route(
        &self,
        table: &str,
        destination: &str,
        nat: &str,
    ) -> Result<(), AwsError> {
        self.check("create_route")?;
        let mut routes = self.routes.lock().unwrap();
        let table = routes.entry(table.into()).or_default();
        if table.iter().any(|r| r.destination == destination) {
            return Err(error("ec2:CreateRoute", "RouteAlreadyExists"));
        }
        table.push(RouteFacts {
            destination: destination.into(),
            target: nat.into(),
            state: "active".into(),
        });
        Ok(())
    }

    async fn key_policy(&self, key: &str) -> Result<String, AwsError> {
        self.check("key_policy")?;
        self.policies
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| error("kms:GetKeyPolicy", "NotFoundException"))
    }

    async fn put_key_policy(&self, key: &str, _name: &str, policy: &str) -> Result<(), AwsError> {
        self.check("put_key_policy")?;
        self.policies
            .lock()
            .unwrap()
            .insert(key.into(), policy.into());
        Ok(())
    }

    async fn nodegroup(
        &self,
        _cluster: &str,
        _nodegroup: &str,
    ) -> Result<NodegroupState, AwsError> {
        self.check("nodegroup")?;
        let mut reads = self.updating_reads.lock().unwrap();
        let mut state = self.nodegroup.lock().unwrap().clone().expect("a nodegroup");
        if *reads > 0 {
            *reads -= 1;
            state.status = "UPDATING".into();
        }
        Ok(state)
    }

    async fn update_scaling(
        &self,
        _cluster: &str,
        _nodegroup: &str,
        update: ScalingUpdate,
    ) -> Result<String, AwsError> {
        self.check("update_scaling")?;
        let mut reads = self.updating_reads.lock().unwrap();
        if *reads > 0 {
            return Err(error("eks:UpdateNodegroupConfig", "ResourceInUseException"));
        }
        *reads = 2;
        let mut guard = self.nodegroup.lock().unwrap();
        let state = guard.as_mut().expect("a nodegroup");
        if let Some(min) = update.min_size {
            state.scaling.min = min;
        }
        state.scaling.desired = update.desired_size;
        let mut updates = self.updates.lock().unwrap();
        updates.push(update);
        Ok(format!("update-{}", updates.len()))
    }

    async fn replace_route(
        &self,
        table: &str,
        destination: &str,
        nat: &str,
    ) -> Result<(), AwsError> {
        self.check("replace_route")?;
        let mut routes = self.routes.lock().unwrap();
        let route = routes
            .get_mut(table)
            .and_then(|t| t.iter_mut().find(|r| r.destination == destination))
            .ok_or_else(|| error("ec2:ReplaceRoute", "InvalidRoute.NotFound"))?;
        route.target = nat.into();
        route.state = "active".into();
        Ok(())
    }

    async fn delete_route(&self, table: &str, destination: &str) -> Result<(), AwsError> {
        self.check("delete_route")?;
        let mut routes = self.routes.lock().unwrap();
        let table = routes
            .get_mut(table)
            .ok_or_else(|| error("ec2:DeleteRoute", "InvalidRouteTableID.NotFound"))?;
        let before = table.len();
        table.retain(|r| r.destination != destination);
        if table.len() == before {
            return Err(error("ec2:DeleteRoute", "InvalidRoute.NotFound"));
        }
        Ok(())
    }

    async fn detach_role_policy(&self, role: &str, arn: &str) -> Result<(), AwsError> {
        self.check("detach_role_policy")?;
        if let Some(list) = self.role_policies.lock().unwrap().get_mut(role) {
            list.retain(|a| a != arn);
        }
        Ok(())
    }

    async fn delete_access_entry(&self, _cluster: &str, principal: &str) -> Result<(), AwsError> {
        self.check("delete_access_entry")?;
        self.access_entries.lock().unwrap().remove(principal);
        Ok(())
    }

    async fn in_service(&self, _group: &str) -> Result<usize, AwsError> {
        self.check("in_service")?;
        Ok(*self.in_service.lock().unwrap())
    }

    async fn review_policy(&self, policy: &str) -> PolicyReview {
        self.reviewed.lock().unwrap().push(policy.to_string());
        self.review
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(PolicyReview::Skipped {
                reason: "this world has no IAM Access Analyzer".into(),
            })
    }

    async fn dry_run(&self, action: &Action) -> Permission {
        let ignores = *self.ignores_dry_run.lock().unwrap();
        if let (
            true,
            Action::CreateRoute {
                route_table_id,
                destination_cidr_block,
                nat_gateway_id,
            },
        ) = (ignores, action)
        {
            return match self
                .create_route(route_table_id, destination_cidr_block, nat_gateway_id)
                .await
            {
                Ok(()) => Permission::Performed,
                Err(error) => Permission::Denied {
                    reason: error.message,
                },
            };
        }
        match self.denied.lock().unwrap().clone() {
            Some(reason) => Permission::Denied { reason },
            None => Permission::Allowed,
        }
    }

    async fn vpc_attribute(&self, vpc: &str, attribute: &str) -> Result<bool, AwsError> {
        self.check("vpc_attribute")?;
        Ok(*self
            .flags
            .lock()
            .unwrap()
            .get(&format!("{vpc}/{attribute}"))
            .unwrap_or(&false))
    }

    async fn enable_vpc_attribute(&self, vpc: &str, attribute: &str) -> Result<(), AwsError> {
        self.check("enable_vpc_attribute")?;
        self.flags
            .lock()
            .unwrap()
            .insert(format!("{vpc}/{attribute}"), true);
        Ok(())
    }

    async fn subnet_maps_public_ip(&self, subnet: &str) -> Result<bool, AwsError> {
        self.vpc_attribute(subnet, "public-ip").await
    }

    async fn enable_subnet_public_ip(&self, subnet: &str) -> Result<(), AwsError> {
        self.enable_vpc_attribute(subnet, "public-ip").await
    }

    async fn instance_profile_roles(&self, profile: &str) -> Result<Vec<String>, AwsError> {
        self.check("instance_profile_roles")?;
        Ok(self
            .profiles
            .lock()
            .unwrap()
            .get(profile)
            .cloned()
            .unwrap_or_default())
    }

    async fn add_role_to_instance_profile(
        &self,
        profile: &str,
        role: &str,
    ) -> Result<(), AwsError> {
        self.check("add_role_to_instance_profile")?;
        self.profiles
            .lock()
            .unwrap()
            .entry(profile.into())
            .or_default()
            .push(role.into());
        Ok(())
    }

    async fn remove_role_from_instance_profile(
        &self,
        profile: &str,
        role: &str,
    ) -> Result<(), AwsError> {
        self.check("remove_role_from_instance_profile")?;
        if let Some(roles) = self.profiles.lock().unwrap().get_mut(profile) {
            roles.retain(|r| r != role);
        }
        Ok(())
    }

    async fn endpoint_private_dns(&self, endpoint: &str) -> Result<bool, AwsError> {
        self.vpc_attribute(endpoint, "private-dns").await
    }

    async fn enable_endpoint_private_dns(&self, endpoint: &str) -> Result<(), AwsError> {
        self.enable_vpc_attribute(endpoint, "private-dns").await
    }

    async fn attached_role_policies(&self, role: &str) -> Result<Vec<String>, AwsError> {
        self.check("attached_role_policies")?;
        Ok(self
            .role_policies
            .lock()
            .unwrap()
            .get(role)
            .cloned()
            .unwrap_or_default())
    }

    async fn attach_role_policy(&self, role: &str, arn: &str) -> Result<(), AwsError> {
        self.check("attach_role_policy")?;
        self.role_policies
            .lock()
            .unwrap()
            .entry(role.into())
            .or_default()
            .push(arn.into());
        Ok(())
    }

    async fn nodegroup_nodes(&self, _cluster: &str, _nodegroup: &str) -> super::NodesSeen {
        match self.nodes.lock().unwrap().clone() {
            Some(nodes) => super::NodesSeen::Read(nodes),
            None => super::NodesSeen::NotRead("the fake world has no cluster API".into()),
        }
    }

    async fn access_entry(
        &self,
        _cluster: &str,
        principal: &str,
    ) -> Result<Option<String>, AwsError> {
        self.check("access_entry")?;
        Ok(self.access_entries.lock().unwrap().get(principal).cloned())
    }

    async fn create_access_entry(
        &self,
        _cluster: &str,
        principal: &str,
        kind: &str,
    ) -> Result<(), AwsError> {
        self.check("create_access_entry")?;
        self.access_entries
            .lock()
            .unwrap()
            .insert(principal.into(), kind.into());
        Ok(())
    }
}

pub(super) const WAIT: WaitPolicy = WaitPolicy {
    poll: Duration::from_millis(1),
    timeout: Duration::from_millis(500),
};

pub(super) fn local() -> RouteFacts {
    RouteFacts {
        destination: "10.42.0.0/16".into(),
        target: "local".into(),
        state: "active".into(),
    }
}

pub(crate) fn route_step() -> Step {
    Step {
        fix: FixKind::AddNatRoute,
        action: Action::CreateRoute {
            route_table_id: "rtb-new".into(),
            destination_cidr_block: "0.0.0.0/0".into(),
            nat_gateway_id: "nat-a".into(),
        },
        reason: String::new(),
        needs_review: None,
    }
}

pub(super) fn patched_policy() -> String {
    crate::core::evidence::fixtures::granted_policy()
}

pub(super) fn policy_step() -> Step {
    Step {
        fix: FixKind::PatchKmsKeyPolicy,
        action: Action::PutKeyPolicy {
            key_id: "key-1".into(),
            policy_name: "default".into(),
            policy: patched_policy(),
            previous_policy: ROOT_ONLY_POLICY.into(),
        },
        reason: String::new(),
        needs_review: None,
    }
}

pub(super) fn cycle_step(min: i32, desired: i32) -> Step {
    Step {
        fix: FixKind::CycleNodegroup,
        action: Action::CycleNodegroup {
            cluster: "eks-workshop".into(),
            nodegroup: "ng".into(),
            original: Scaling {
                min,
                max: 4,
                desired,
            },
            scale_down: ScalingUpdate {
                min_size: (min > 0).then_some(0),
                desired_size: 0,
            },
            restore: ScalingUpdate {
                min_size: (min > 0).then_some(min),
                desired_size: desired,
            },
        },
        reason: String::new(),
        needs_review: None,
    }
}
