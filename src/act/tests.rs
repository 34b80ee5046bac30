use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::aws::AwsFailure;
use crate::evidence::fixtures::{ROLE, ROOT_ONLY_POLICY};
use crate::plan::FixKind;

/// An in-memory world behind the actuator seam.
#[derive(Default)]
struct FakeWorld {
    routes: Mutex<HashMap<String, Vec<RouteFacts>>>,
    policies: Mutex<HashMap<String, String>>,
    nodegroup: Mutex<Option<NodegroupState>>,
    /// Reads left before an update settles.
    updating_reads: Mutex<u32>,
    updates: Mutex<Vec<ScalingUpdate>>,
    fail: Mutex<HashMap<&'static str, String>>,
    flags: Mutex<HashMap<String, bool>>,
    role_policies: Mutex<HashMap<String, Vec<String>>>,
    access_entries: Mutex<HashMap<String, String>>,
    in_service: Mutex<usize>,
    denied: Mutex<Option<String>>,
}

fn error(operation: &'static str, code: &str) -> AwsError {
    AwsError {
        operation,
        code: code.into(),
        message: "injected".into(),
        failure: AwsFailure::Service,
    }
}

impl FakeWorld {
    fn failing(self, operation: &'static str, code: &str) -> Self {
        self.fail.lock().unwrap().insert(operation, code.into());
        self
    }

    fn check(&self, operation: &'static str) -> Result<(), AwsError> {
        match self.fail.lock().unwrap().get(operation) {
            Some(code) => Err(error(operation, code)),
            None => Ok(()),
        }
    }

    fn with_table(self, table: &str, routes: Vec<RouteFacts>) -> Self {
        self.routes.lock().unwrap().insert(table.into(), routes);
        self
    }

    fn with_policy(self, key: &str, policy: &str) -> Self {
        self.policies
            .lock()
            .unwrap()
            .insert(key.into(), policy.into());
        self
    }

    fn with_nodegroup(self, status: &str, min: i32, max: i32, desired: i32) -> Self {
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

    async fn dry_run(&self, _action: &Action) -> Permission {
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

const WAIT: WaitPolicy = WaitPolicy {
    poll: Duration::from_millis(1),
    timeout: Duration::from_millis(500),
};

fn local() -> RouteFacts {
    RouteFacts {
        destination: "10.42.0.0/16".into(),
        target: "local".into(),
        state: "active".into(),
    }
}

fn route_step() -> Step {
    Step {
        fix: FixKind::AddNatRoute,
        action: Action::CreateRoute {
            route_table_id: "rtb-new".into(),
            destination_cidr_block: "0.0.0.0/0".into(),
            nat_gateway_id: "nat-a".into(),
        },
        reason: String::new(),
    }
}

fn patched_policy() -> String {
    match key_policy::patch(ROOT_ONLY_POLICY, ROLE).unwrap() {
        key_policy::KeyPolicyPatch::Patched { policy, .. } => policy,
        key_policy::KeyPolicyPatch::AlreadyGranted => unreachable!(),
    }
}

fn policy_step() -> Step {
    Step {
        fix: FixKind::PatchKmsKeyPolicy,
        action: Action::PutKeyPolicy {
            key_id: "key-1".into(),
            policy_name: "default".into(),
            policy: patched_policy(),
            previous_policy: ROOT_ONLY_POLICY.into(),
        },
        reason: String::new(),
    }
}

fn cycle_step(min: i32, desired: i32) -> Step {
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
    }
}

#[tokio::test]
async fn a_route_is_created_and_read_back() {
    let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
    let result = apply(&world, &route_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(result.before.as_array().unwrap().len(), 1);
    assert_eq!(result.after.as_array().unwrap().len(), 2);
    assert_eq!(world.routes.lock().unwrap()["rtb-new"][1].target, "nat-a");
}

#[tokio::test]
async fn an_identical_route_counts_as_done_and_is_not_created_twice() {
    let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
    apply(&world, &route_step(), WAIT).await;
    let again = apply(&world, &route_step(), WAIT).await;
    assert_eq!(again.status, StepStatus::Applied);
    assert!(again.detail.contains("already routes"));
    assert_eq!(world.routes.lock().unwrap()["rtb-new"].len(), 2);
}

#[tokio::test]
async fn an_existing_default_route_elsewhere_is_never_replaced() {
    let other = RouteFacts {
        destination: "0.0.0.0/0".into(),
        target: "igw-1".into(),
        state: "active".into(),
    };
    let world = FakeWorld::default().with_table("rtb-new", vec![local(), other.clone()]);
    let result = apply(&world, &route_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("never replaced"));
    assert_eq!(
        world.routes.lock().unwrap()["rtb-new"],
        vec![local(), other]
    );
}

#[tokio::test]
async fn a_refused_create_route_is_a_failure_with_the_error() {
    let world = FakeWorld::default()
        .with_table("rtb-new", vec![local()])
        .failing("create_route", "UnauthorizedOperation");
    let result = apply(&world, &route_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("UnauthorizedOperation"));
}

#[tokio::test]
async fn the_key_policy_is_written_and_the_old_one_kept_as_before() {
    let world = FakeWorld::default().with_policy("key-1", ROOT_ONLY_POLICY);
    let result = apply(&world, &policy_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(result.before["policy"], ROOT_ONLY_POLICY);
    assert!(policy_grants(
        result.after["policy"].as_str().unwrap(),
        ROLE
    ));
    assert!(result.detail.contains("AllowAutoScalingServiceRole"));
}

#[tokio::test]
async fn a_policy_already_patched_is_not_written_again() {
    let world = FakeWorld::default()
        .with_policy("key-1", &patched_policy())
        .failing("put_key_policy", "ShouldNotBeCalled");
    let result = apply(&world, &policy_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
}

#[tokio::test]
async fn a_policy_edited_since_the_plan_is_not_overwritten() {
    let edited = ROOT_ONLY_POLICY.replace("kms:*", "kms:Describe*");
    let world = FakeWorld::default().with_policy("key-1", &edited);
    let result = apply(&world, &policy_step(), WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("changed since the plan"));
    assert_eq!(world.policies.lock().unwrap()["key-1"], edited);
}

#[tokio::test]
async fn whitespace_differences_do_not_make_a_policy_stale() {
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(ROOT_ONLY_POLICY).unwrap())
            .unwrap();
    let world = FakeWorld::default().with_policy("key-1", &pretty);
    assert_eq!(
        apply(&world, &policy_step(), WAIT).await.status,
        StepStatus::Applied
    );
}

#[tokio::test]
async fn a_cycle_goes_to_zero_and_restores_min_and_desired() {
    let world = FakeWorld::default().with_nodegroup("DEGRADED", 2, 4, 3);
    let result = apply(&world, &cycle_step(2, 3), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(
        *world.updates.lock().unwrap(),
        vec![
            ScalingUpdate {
                min_size: Some(0),
                desired_size: 0
            },
            ScalingUpdate {
                min_size: Some(2),
                desired_size: 3
            },
        ]
    );
    assert_eq!(result.after["scaling"]["desired"], 3);
}

#[tokio::test]
async fn a_cycle_waits_for_an_update_already_running() {
    let world = FakeWorld::default().with_nodegroup("ACTIVE", 0, 1, 1);
    *world.updating_reads.lock().unwrap() = 3;
    let result = apply(&world, &cycle_step(0, 1), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(world.updates.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_half_done_cycle_only_restores() {
    let world = FakeWorld::default().with_nodegroup("ACTIVE", 0, 1, 0);
    let result = apply(&world, &cycle_step(0, 1), WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(
        *world.updates.lock().unwrap(),
        vec![ScalingUpdate {
            min_size: None,
            desired_size: 1
        }]
    );
}

#[tokio::test]
async fn a_nodegroup_that_never_settles_fails_the_cycle_without_touching_it() {
    let world = FakeWorld::default().with_nodegroup("ACTIVE", 0, 1, 1);
    *world.updating_reads.lock().unwrap() = u32::MAX;
    let result = apply(&world, &cycle_step(0, 1), WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("not ready"));
    assert!(world.updates.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_scale_down_fails_and_changes_nothing() {
    let world = FakeWorld::default()
        .with_nodegroup("ACTIVE", 0, 1, 1)
        .failing("update_scaling", "InvalidParameterException");
    let result = apply(&world, &cycle_step(0, 1), WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("scale down failed"));
    assert_eq!(
        world
            .nodegroup
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .scaling
            .desired,
        1
    );
}

#[tokio::test]
async fn a_blackholed_default_route_is_replaced_only_if_it_still_points_where_the_plan_saw() {
    let blackhole = RouteFacts {
        destination: "0.0.0.0/0".into(),
        target: "nat-gone".into(),
        state: "blackhole".into(),
    };
    let step = Step {
        fix: FixKind::ReplaceDefaultRoute,
        action: Action::ReplaceRoute {
            route_table_id: "rtb-1".into(),
            destination_cidr_block: "0.0.0.0/0".into(),
            nat_gateway_id: "nat-new".into(),
            previous_target: "nat-gone".into(),
        },
        reason: String::new(),
    };
    let world = FakeWorld::default().with_table("rtb-1", vec![local(), blackhole.clone()]);
    let result = apply(&world, &step, WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(world.routes.lock().unwrap()["rtb-1"][1].target, "nat-new");
    assert_eq!(
        apply(&world, &step, WAIT).await.status,
        StepStatus::Applied,
        "idempotent"
    );

    let mut moved = blackhole;
    moved.target = "igw-someone-else".into();
    moved.state = "active".into();
    let world = FakeWorld::default().with_table("rtb-1", vec![local(), moved]);
    let result = apply(&world, &step, WAIT).await;
    assert_eq!(result.status, StepStatus::Failed);
    assert!(result.detail.contains("changed since the plan"));
    assert_eq!(
        world.routes.lock().unwrap()["rtb-1"][1].target,
        "igw-someone-else"
    );
}

#[tokio::test]
async fn vpc_dns_is_turned_on_and_read_back() {
    let step = Step {
        fix: FixKind::EnableVpcDns,
        action: Action::ModifyVpcAttribute {
            vpc_id: "vpc-1".into(),
            attribute: "enableDnsHostnames".into(),
        },
        reason: String::new(),
    };
    let world = FakeWorld::default();
    let result = apply(&world, &step, WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(
        (result.before.clone(), result.after.clone()),
        (json!(false), json!(true))
    );
    assert!(
        apply(&world, &step, WAIT)
            .await
            .detail
            .contains("already true")
    );
    let refused = FakeWorld::default().failing("enable_vpc_attribute", "UnauthorizedOperation");
    assert_eq!(
        apply(&refused, &step, WAIT).await.status,
        StepStatus::Failed
    );
}

#[tokio::test]
async fn a_missing_policy_is_attached_once_and_an_access_entry_created_once() {
    let attach = Step {
        fix: FixKind::AttachNodeRolePolicy,
        action: Action::AttachRolePolicy {
            role_name: "eks-node".into(),
            policy_arn: "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy".into(),
        },
        reason: String::new(),
    };
    let world = FakeWorld::default();
    assert_eq!(
        apply(&world, &attach, WAIT).await.status,
        StepStatus::Applied
    );
    assert_eq!(
        apply(&world, &attach, WAIT).await.status,
        StepStatus::Applied
    );
    assert_eq!(world.role_policies.lock().unwrap()["eks-node"].len(), 1);

    let entry = Step {
        fix: FixKind::CreateAccessEntry,
        action: Action::CreateAccessEntry {
            cluster: "c".into(),
            principal_arn: "arn:aws:iam::1:role/eks-node".into(),
            entry_type: "EC2_LINUX".into(),
        },
        reason: String::new(),
    };
    let result = apply(&world, &entry, WAIT).await;
    assert_eq!(result.status, StepStatus::Applied, "{}", result.detail);
    assert_eq!(result.after["type"], "EC2_LINUX");
    assert!(
        apply(&world, &entry, WAIT)
            .await
            .detail
            .contains("already has")
    );
}

mod verification {
    use super::*;
    use crate::act::verify::{Nodegroup, rollback, verify};

    const NODEGROUP: Nodegroup<'static> = Nodegroup {
        cluster: "eks-workshop",
        name: "ng",
        group: Some("eks-ng-1"),
    };

    #[tokio::test]
    async fn an_added_route_that_stays_active_passes() {
        let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
        let step = route_step();
        apply(&world, &step, WAIT).await;
        let verdict = verify(&world, &[&step], &NODEGROUP, WAIT).await;
        assert!(verdict.passed, "{verdict:?}");
    }

    #[tokio::test]
    async fn a_route_removed_behind_our_back_fails_verification() {
        let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
        let step = route_step();
        apply(&world, &step, WAIT).await;
        world.delete_route("rtb-new", "0.0.0.0/0").await.unwrap();
        let verdict = verify(&world, &[&step], &NODEGROUP, WAIT).await;
        assert!(!verdict.passed);
        assert_eq!(verdict.checks[0].detail, "no such route");
    }

    #[tokio::test]
    async fn a_cycled_nodegroup_passes_only_when_active_healthy_and_in_service() {
        let world = FakeWorld::default().with_nodegroup("ACTIVE", 0, 1, 1);
        let step = cycle_step(0, 1);
        assert!(!verify(&world, &[&step], &NODEGROUP, WAIT).await.passed);
        *world.in_service.lock().unwrap() = 1;
        world
            .nodegroup
            .lock()
            .unwrap()
            .as_mut()
            .unwrap()
            .issues
            .push("NodeCreationFailure".into());
        let verdict = verify(&world, &[&step], &NODEGROUP, WAIT).await;
        assert!(!verdict.passed);
        assert!(verdict.checks[0].detail.contains("NodeCreationFailure"));
        world
            .nodegroup
            .lock()
            .unwrap()
            .as_mut()
            .unwrap()
            .issues
            .clear();
        assert!(verify(&world, &[&step], &NODEGROUP, WAIT).await.passed);
    }

    #[tokio::test]
    async fn rolling_back_an_added_route_deletes_exactly_that_route() {
        let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
        let step = route_step();
        let applied = apply(&world, &step, WAIT).await;
        let undone = rollback(&world, &step, &applied).await;
        assert_eq!(undone.status, StepStatus::RolledBack, "{}", undone.detail);
        assert_eq!(world.routes.lock().unwrap()["rtb-new"], vec![local()]);
    }

    #[tokio::test]
    async fn a_route_that_existed_before_the_fix_is_left_alone() {
        let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
        let step = route_step();
        apply(&world, &step, WAIT).await;
        // A second apply finds the route already there: its `before` holds the route.
        let again = apply(&world, &step, WAIT).await;
        let kept = rollback(&world, &step, &again).await;
        assert_eq!(kept.status, StepStatus::Applied);
        assert_eq!(world.routes.lock().unwrap()["rtb-new"].len(), 2);
    }

    #[tokio::test]
    async fn rolling_back_a_key_policy_restores_the_exact_previous_text() {
        let world = FakeWorld::default().with_policy("key-1", ROOT_ONLY_POLICY);
        let step = policy_step();
        let applied = apply(&world, &step, WAIT).await;
        let undone = rollback(&world, &step, &applied).await;
        assert_eq!(undone.status, StepStatus::RolledBack, "{}", undone.detail);
        assert_eq!(world.policies.lock().unwrap()["key-1"], ROOT_ONLY_POLICY);
    }

    #[tokio::test]
    async fn a_key_policy_edited_after_the_fix_is_not_rolled_back_over() {
        let world = FakeWorld::default().with_policy("key-1", ROOT_ONLY_POLICY);
        let step = policy_step();
        let applied = apply(&world, &step, WAIT).await;
        let someone_else = patched_policy().replace("kms:DescribeKey", "kms:GetPublicKey");
        world
            .policies
            .lock()
            .unwrap()
            .insert("key-1".into(), someone_else.clone());
        let kept = rollback(&world, &step, &applied).await;
        assert_eq!(kept.status, StepStatus::Applied);
        assert!(kept.detail.contains("edited since"));
        assert_eq!(world.policies.lock().unwrap()["key-1"], someone_else);
    }

    #[tokio::test]
    async fn a_failed_rollback_says_so() {
        let world = FakeWorld::default().with_table("rtb-new", vec![local()]);
        let step = route_step();
        let applied = apply(&world, &step, WAIT).await;
        let world = world.failing("delete_route", "UnauthorizedOperation");
        let failed = rollback(&world, &step, &applied).await;
        assert_eq!(failed.status, StepStatus::Failed);
        assert!(failed.detail.contains("UnauthorizedOperation"));
    }

    #[tokio::test]
    async fn attached_policies_and_access_entries_are_undone_but_dns_stays_on() {
        let world = FakeWorld::default();
        let attach = Step {
            fix: FixKind::AttachNodeRolePolicy,
            action: Action::AttachRolePolicy {
                role_name: "eks-node".into(),
                policy_arn: "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy".into(),
            },
            reason: String::new(),
        };
        let applied = apply(&world, &attach, WAIT).await;
        assert_eq!(
            rollback(&world, &attach, &applied).await.status,
            StepStatus::RolledBack
        );
        assert!(world.role_policies.lock().unwrap()["eks-node"].is_empty());

        let dns = Step {
            fix: FixKind::EnableVpcDns,
            action: Action::ModifyVpcAttribute {
                vpc_id: "vpc-1".into(),
                attribute: "enableDnsSupport".into(),
            },
            reason: String::new(),
        };
        let applied = apply(&world, &dns, WAIT).await;
        assert_eq!(
            rollback(&world, &dns, &applied).await.status,
            StepStatus::Applied
        );
        assert!(
            world
                .vpc_attribute("vpc-1", "enableDnsSupport")
                .await
                .unwrap()
        );
    }
}
