//! Where the pipeline reads the world and changes it. In production an account is its AWS
//! clients; the unit tests give the pipeline an in-memory account instead, so that a whole
//! message can be driven through the pipeline without an AWS call.

use std::future::Future;
use std::sync::Arc;

use crate::act::{Actuator, AwsActuator};
use crate::aws::collect::{CollectError, Scope, collect, describe_instance};
use crate::aws::resolve::{Resolution, resolve};
use crate::aws::{AccountRefused, AwsClients, AwsError, ClientPool};
use crate::core::evidence::{CallLog, Evidence, InstanceFacts, Target};
use crate::core::trigger::Trigger;

/// The accounts the pipeline serves.
pub trait Accounts: Send + Sync + 'static {
    type Account: Account;

    /// The account's view of the world, or why this daemon does not serve it.
    fn account(
        &self,
        account: &str,
        region: &str,
    ) -> impl Future<Output = Result<Self::Account, AccountRefused>> + Send;
}

/// One account and region: where evidence comes from and where fixes go.
pub trait Account: Send + Sync {
    type Actuator: Actuator;

    /// The nodegroup an Auto Scaling group belongs to, or "not ours".
    fn resolve(
        &self,
        asg_name: &str,
        calls: &mut CallLog,
    ) -> impl Future<Output = Result<Resolution, AwsError>> + Send;

    /// The evidence `scope` asks for, about `target`.
    fn collect(
        &self,
        trigger: &Trigger,
        target: Target,
        scope: Scope,
        calls: CallLog,
    ) -> impl Future<Output = Result<Evidence, CollectError>> + Send;

    /// One instance, as EC2 describes it now (`missing` when EC2 does not know it).
    fn instance(
        &self,
        instance_id: &str,
        calls: &mut CallLog,
    ) -> impl Future<Output = Result<InstanceFacts, AwsError>> + Send;

    fn actuator(&self) -> &Self::Actuator;
}

/// The accounts of the client pool (the hub's own, and members through their role). A type of
/// the pipeline's, not an impl on the pool, so that `aws` knows nothing of the pipeline.
#[derive(Clone)]
pub struct AwsAccounts(pub Arc<ClientPool>);

/// An account served through its AWS clients.
pub struct AwsAccount {
    clients: Arc<AwsClients>,
    actuator: AwsActuator,
}

impl Accounts for AwsAccounts {
    type Account = AwsAccount;

    async fn account(&self, account: &str, region: &str) -> Result<AwsAccount, AccountRefused> {
        let clients = self.0.for_account(account, region).await?;
        Ok(AwsAccount {
            actuator: AwsActuator::new(clients.clone()),
            clients,
        })
    }
}

impl Account for AwsAccount {
    type Actuator = AwsActuator;

    async fn resolve(&self, asg_name: &str, calls: &mut CallLog) -> Result<Resolution, AwsError> {
        resolve(&self.clients, asg_name, calls).await
    }

    async fn collect(
        &self,
        trigger: &Trigger,
        target: Target,
        scope: Scope,
        calls: CallLog,
    ) -> Result<Evidence, CollectError> {
        collect(&self.clients, trigger, target, scope, calls).await
    }

    async fn instance(
        &self,
        instance_id: &str,
        calls: &mut CallLog,
    ) -> Result<InstanceFacts, AwsError> {
        describe_instance(&self.clients, instance_id, calls).await
    }

    fn actuator(&self) -> &AwsActuator {
        &self.actuator
    }
}
