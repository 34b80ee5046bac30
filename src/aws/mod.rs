//! AWS clients and errors: one shared SDK configuration, clients per region, and one error type
//! that keeps the service's error code (EC2 and Auto Scaling model almost no typed errors).

pub mod collect;
pub mod resolve;
pub mod signing;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sqs::config::SharedIdentityCache;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_async::time::SystemTimeSource;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{Connector, tls};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::settings::AccountsSettings;

/// The clients nodemedic uses in one region.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub region: String,
    pub accessanalyzer: aws_sdk_accessanalyzer::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub eks: aws_sdk_eks::Client,
    pub iam: aws_sdk_iam::Client,
    pub kms: aws_sdk_kms::Client,
    /// The account's credentials, which also sign the cluster's token.
    pub credentials: signing::SigningCredentials,
    /// Whether and how the cluster's own API is read.
    pub cluster_api: crate::kubernetes::ClusterApiOptions,
}

impl AwsClients {
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            credentials: signing::SigningCredentials::new(config.credentials_provider()),
            cluster_api: crate::kubernetes::ClusterApiOptions::default(),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            accessanalyzer: aws_sdk_accessanalyzer::Client::new(config),
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            eks: aws_sdk_eks::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
        }
    }
}

/// Who the daemon's own credentials belong to: the hub account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub account: String,
    /// `aws`, `aws-cn` or `aws-us-gov`, from the caller's ARN.
    pub partition: String,
}

impl CallerIdentity {
    /// From GetCallerIdentity's account and ARN (`arn:<partition>:sts::<account>:...`).
    pub fn new(account: &str, arn: &str) -> CallerIdentity {
        let partition = arn
            .split(':')
            .nth(1)
            .filter(|p| !p.is_empty())
            .unwrap_or("aws");
        CallerIdentity {
            account: account.to_string(),
            partition: partition.to_string(),
        }
    }
}

/// How member accounts are entered: the role assumed in each, and the session's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAccess {
    pub role_name: String,
    pub external_id: Option<String>,
    pub members: BTreeSet<String>,
    pub session_name: String,
    pub session_duration: Duration,
}

impl MemberAccess {
    /// `None` in single-account mode (no role to assume).
    pub fn from_settings(accounts: &AccountsSettings) -> Option<MemberAccess> {
        accounts.hub_and_spoke().then(|| MemberAccess {
            role_name: accounts.role_name.clone(),
            external_id: Some(accounts.external_id.clone()).filter(|id| !id.is_empty()),
            members: accounts.members.iter().cloned().collect(),
            session_name: accounts.session_name.clone(),
            session_duration: Duration::from_secs(accounts.session_duration_secs),
        })
    }

    /// The role nodemedic assumes in `account`, in `partition` (`aws`, `aws-cn`, `aws-us-gov`).
    pub fn role_arn(&self, partition: &str, account: &str) -> String {
        format!("arn:{partition}:iam::{account}:role/{}", self.role_name)
    }
}

/// An event of an account this daemon does not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account {account} is not served: {reason}")]
pub struct AccountRefused {
    pub account: String,
    pub reason: String,
}

/// Whose credentials serve an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountAccess {
    /// The daemon's own account: its own credentials.
    Hub,
    /// A configured member: credentials from assuming this role.
    Member { role_arn: String },
}

/// Builds and caches clients per account and region, so that an event is investigated, and
/// fixed, in the account and region where it happened: the hub account with the daemon's own
/// credentials, a member account with credentials from assuming its role, any other account not
/// at all.
#[derive(Debug)]
pub struct ClientPool {
    base: SdkConfig,
    hub: CallerIdentity,
    members: Option<MemberAccess>,
    by_account_region: Mutex<HashMap<(String, String), Arc<AwsClients>>>,
    /// One AssumeRole provider per member, shared by its clients in every region.
    member_credentials: Mutex<HashMap<String, SharedCredentialsProvider>>,
    /// Where member credentials are cached (and refreshed before they expire), shared by every
    /// client of the pool: without it each client would cache, and assume the role, on its own.
    member_identity_cache: SharedIdentityCache,
    cluster_api: crate::kubernetes::ClusterApiOptions,
}

impl ClientPool {
    pub fn new(base: SdkConfig, hub: CallerIdentity, members: Option<MemberAccess>) -> Self {
        // AssumeRoleProvider needs a clock; a configuration built by hand (the emulator's) has none.
        let base = match base.time_source() {
            Some(_) => base,
            None => base
                .into_builder()
                .time_source(SystemTimeSource::new())
                .build(),
        };
        let member_identity_cache = base
            .identity_cache()
            .unwrap_or_else(|| IdentityCache::lazy().build());
        Self {
            base,
            hub,
            members,
            by_account_region: Mutex::new(HashMap::new()),
            member_credentials: Mutex::new(HashMap::new()),
            member_identity_cache,
            cluster_api: crate::kubernetes::ClusterApiOptions::default(),
        }
    }

    /// How every client of the pool reads clusters' own APIs.
    pub fn with_cluster_api(mut self, options: crate::kubernetes::ClusterApiOptions) -> Self {
        self.cluster_api = options;
        self
    }

    pub fn base(&self) -> &SdkConfig {
        &self.base
    }

    pub fn hub(&self) -> &CallerIdentity {
        &self.hub
    }

    /// The member accounts served besides the hub (none in single-account mode).
    pub fn members(&self) -> Vec<String> {
        self.members
            .iter()
            .flat_map(|m| m.members.iter().cloned())
            .filter(|account| *account != self.hub.account)
            .collect()
    }

    /// Whether `account` is served, and with whose credentials. No AWS call.
    pub fn access(&self, account: &str) -> Result<AccountAccess, AccountRefused> {
        Ok(match self.member_terms(account)? {
            None => AccountAccess::Hub,
            Some((_, role_arn)) => AccountAccess::Member { role_arn },
        })
    }

    /// `None` for the hub; for a member, how to enter it and the role to assume.
    fn member_terms(
        &self,
        account: &str,
    ) -> Result<Option<(&MemberAccess, String)>, AccountRefused> {
        if account == self.hub.account {
            return Ok(None);
        }
        let refused = |reason: String| AccountRefused {
            account: account.to_string(),
            reason,
        };
        match &self.members {
            None => Err(refused(format!(
                "only this daemon's own account {} is served (accounts.role_name is empty)",
                self.hub.account
            ))),
            Some(access) if access.members.contains(account) => Ok(Some((
                access,
                access.role_arn(&self.hub.partition, account),
            ))),
            Some(_) => Err(refused(format!(
                "neither this daemon's own account {} nor in accounts.members",
                self.hub.account
            ))),
        }
    }

    /// The hub account's clients in `region`.
    pub fn for_hub(&self, region: &str) -> Arc<AwsClients> {
        self.cached(&self.hub.account, region, || {
            self.base
                .to_builder()
                .region(Region::new(region.to_string()))
                .build()
        })
    }

    /// The clients for `account` in `region`, or why the account is not served. Building them
    /// calls nothing: a member's role is assumed on its clients' first call.
    pub async fn for_account(
        &self,
        account: &str,
        region: &str,
    ) -> Result<Arc<AwsClients>, AccountRefused> {
        let Some((access, role_arn)) = self.member_terms(account)? else {
            return Ok(self.for_hub(region));
        };
        if let Some(clients) = self.cache().get(&(account.to_string(), region.to_string())) {
            return Ok(clients.clone());
        }
        let credentials = self.member_credentials(access, account, &role_arn).await;
        Ok(self.cached(account, region, || {
            self.base
                .to_builder()
                .region(Region::new(region.to_string()))
                .credentials_provider(credentials)
                .identity_cache(self.member_identity_cache.clone())
                .build()
        }))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<AwsClients>>> {
        self.by_account_region
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(
        &self,
        account: &str,
        region: &str,
        config: impl FnOnce() -> SdkConfig,
    ) -> Arc<AwsClients> {
        self.cache()
            .entry((account.to_string(), region.to_string()))
            .or_insert_with(|| {
                let mut clients = AwsClients::new(&config());
                clients.cluster_api = self.cluster_api.clone();
                Arc::new(clients)
            })
            .clone()
    }

    async fn member_credentials(
        &self,
        access: &MemberAccess,
        account: &str,
        role_arn: &str,
    ) -> SharedCredentialsProvider {
        let known = self
            .member_credentials
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(account)
            .cloned();
        if let Some(known) = known {
            return known;
        }
        let mut builder = AssumeRoleProvider::builder(role_arn)
            .session_name(&access.session_name)
            .session_length(access.session_duration)
            .configure(&self.base);
        if let Some(external_id) = &access.external_id {
            builder = builder.external_id(external_id);
        }
        // The role is assumed from the hub's region (its regional STS endpoint), whatever the
        // region of the clients that use the credentials.
        let provider = SharedCredentialsProvider::new(CountedAssumeRole(builder.build().await));
        self.member_credentials
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(account.to_string())
            .or_insert(provider)
            .clone()
    }
}

/// Loads the standard SDK configuration (environment, profile, IMDS, `AWS_ENDPOINT_URL`), with
/// adaptive retries: throttling and transient errors back off with jitter, and the client slows
/// itself down while a service throttles it, instead of failing the incident.
pub async fn load_config(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client_honouring_proxy_env())
        .retry_config(aws_config::retry::RetryConfig::adaptive().with_max_attempts(5));
    if let Some(region) = region.filter(|r| !r.is_empty()) {
        loader = loader.region(Region::new(region.to_string()));
    }
    loader.load().await
}

/// The SDK's own HTTPS client (rustls with aws-lc, the system's roots), told to honour
/// `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`: the SDK's default client ignores them, and a VPC
/// whose egress goes through a proxy needs them. Without those variables it connects directly,
/// as the default does. Connectors are cached per connector settings, as the default's are.
fn https_client_honouring_proxy_env() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = Connector::builder().proxy_config(ProxyConfig::from_env());
        connector.set_connector_settings(settings.cloned());
        connector.set_sleep_impl(components.and_then(|c| c.sleep_impl()));
        connector
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build()
    })
}

/// An SQS client whose timeouts outlast a long poll of `wait` (the SDK's defaults would cut
/// every empty poll short).
pub fn sqs_client(config: &SdkConfig, wait: Duration) -> aws_sdk_sqs::Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(wait + Duration::from_secs(10))
        .operation_attempt_timeout(wait + Duration::from_secs(15))
        .build();
    let config = aws_sdk_sqs::config::Builder::from(config)
        .timeout_config(timeouts)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// The account the credentials belong to.
pub async fn caller_account(sts: &aws_sdk_sts::Client) -> Result<String, AwsError> {
    Ok(caller_identity(sts).await?.account)
}

/// The account and partition the credentials belong to.
pub async fn caller_identity(sts: &aws_sdk_sts::Client) -> Result<CallerIdentity, AwsError> {
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .op("sts:GetCallerIdentity")?;
    Ok(CallerIdentity::new(
        identity.account().unwrap_or_default(),
        identity.arn().unwrap_or_default(),
    ))
}

/// aws-config's AssumeRole provider, with each AssumeRole counted among the AWS calls (it goes
/// through no `op`): a member whose role cannot be assumed shows in the metrics.
#[derive(Debug)]
struct CountedAssumeRole(AssumeRoleProvider);

impl ProvideCredentials for CountedAssumeRole {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            let result = self.0.provide_credentials().await;
            crate::telemetry::metrics::record_aws_call(
                "sts:AssumeRole",
                if result.is_ok() { "ok" } else { "error" },
            );
            result
        })
    }
}

/// How an AWS call failed, in the terms the daemon decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AwsFailure {
    /// The service answered with an error (bad input, not found, denied, conflict).
    Service,
    /// Throttled, timed out, or the service could not be reached: worth trying later.
    Transient,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {code}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub code: String,
    pub message: String,
    pub failure: AwsFailure,
}

const THROTTLING_CODES: [&str; 6] = [
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "ServiceUnavailable",
];

impl AwsError {
    pub fn from_sdk<E, R>(operation: &'static str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let code = error.code().map(str::to_string);
        let failure = match &error {
            SdkError::ServiceError(_) => match code.as_deref() {
                Some(c) if THROTTLING_CODES.contains(&c) || c.ends_with("InternalError") => {
                    AwsFailure::Transient
                }
                Some(c) if c.contains("InternalFailure") || c.contains("ServiceException") => {
                    AwsFailure::Transient
                }
                _ => AwsFailure::Service,
            },
            SdkError::ConstructionFailure(_) => AwsFailure::Service,
            _ => AwsFailure::Transient,
        };
        let message = error
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| DisplayErrorContext(&error).to_string());
        Self {
            operation,
            code: code.unwrap_or_else(|| match failure {
                AwsFailure::Transient => "Unreachable".into(),
                AwsFailure::Service => "Unknown".into(),
            }),
            message,
            failure,
        }
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code == code
    }

    pub fn is_transient(&self) -> bool {
        self.failure == AwsFailure::Transient
    }
}

/// Shorthand for mapping an SDK result into [`AwsError`] with the operation's name.
pub trait AwsResultExt<T> {
    fn op(self, operation: &'static str) -> Result<T, AwsError>;
}

impl<T, E, R> AwsResultExt<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    fn op(self, operation: &'static str) -> Result<T, AwsError> {
        let result = self.map_err(|error| AwsError::from_sdk(operation, error));
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) if error.failure == AwsFailure::Transient => "transient_error",
            // DryRun answers "would have succeeded" with an error.
            Err(error) if error.is_code("DryRunOperation") => "ok",
            Err(_) => "error",
        };
        crate::telemetry::metrics::record_aws_call(operation, outcome);
        result
    }
}

/// Checks the credentials with sts:GetCallerIdentity every half window until `stop`.
pub async fn check_credentials(
    sts: aws_sdk_sts::Client,
    readiness: std::sync::Arc<crate::telemetry::health::Readiness>,
    stop: CancellationToken,
) {
    let every = (readiness.window() / 2).max(Duration::from_secs(1));
    loop {
        let result = sts
            .get_caller_identity()
            .send()
            .await
            .op("sts:GetCallerIdentity")
            .map(|_| ())
            .map_err(|e| e.to_string());
        if let Err(why) = &result {
            warn!(error = %why, "AWS credentials check failed");
        }
        readiness.credentials(result);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-west-2"))
            .credentials_provider(SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("hub", "hub", None, None, "test"),
            ))
            .build()
    }

    const HUB: &str = "123456789012";
    const MEMBER: &str = "111111111111";
    const STRANGER: &str = "222222222222";

    fn hub_and_spoke(partition: &str) -> ClientPool {
        ClientPool::new(
            base(),
            CallerIdentity {
                account: HUB.into(),
                partition: partition.into(),
            },
            Some(MemberAccess {
                role_name: "nodemedic-member".into(),
                external_id: Some("hub-7f3a".into()),
                members: [MEMBER.to_string()].into(),
                session_name: "nodemedic".into(),
                session_duration: Duration::from_secs(3600),
            }),
        )
    }

    fn single_account() -> ClientPool {
        ClientPool::new(
            base(),
            CallerIdentity::new(HUB, "arn:aws:sts::123456789012:assumed-role/r/s"),
            None,
        )
    }

    #[test]
    fn the_hub_is_served_with_its_own_credentials_in_both_modes() {
        assert_eq!(single_account().access(HUB), Ok(AccountAccess::Hub));
        assert_eq!(hub_and_spoke("aws").access(HUB), Ok(AccountAccess::Hub));
    }

    #[test]
    fn a_member_is_entered_through_its_role_in_the_hubs_partition() {
        assert_eq!(
            hub_and_spoke("aws").access(MEMBER),
            Ok(AccountAccess::Member {
                role_arn: "arn:aws:iam::111111111111:role/nodemedic-member".into()
            })
        );
        assert_eq!(
            hub_and_spoke("aws-cn").access(MEMBER),
            Ok(AccountAccess::Member {
                role_arn: "arn:aws-cn:iam::111111111111:role/nodemedic-member".into()
            })
        );
    }

    #[test]
    fn any_other_account_is_refused_and_told_why() {
        let refused = hub_and_spoke("aws").access(STRANGER).unwrap_err();
        assert_eq!(refused.account, STRANGER);
        assert!(refused.reason.contains("accounts.members"), "{refused}");
        let refused = single_account().access(MEMBER).unwrap_err();
        assert!(
            refused.reason.contains("accounts.role_name is empty"),
            "{refused}"
        );
        assert!(single_account().access("").is_err());
    }

    #[tokio::test]
    async fn clients_are_built_once_per_account_and_region_and_refused_accounts_get_none() {
        let pool = hub_and_spoke("aws");
        let hub = pool.for_account(HUB, "us-west-2").await.expect("hub");
        assert!(Arc::ptr_eq(&hub, &pool.for_hub("us-west-2")));
        let member = pool.for_account(MEMBER, "us-west-2").await.expect("member");
        assert!(
            !Arc::ptr_eq(&hub, &member),
            "a member has clients of its own"
        );
        assert!(Arc::ptr_eq(
            &member,
            &pool.for_account(MEMBER, "us-west-2").await.expect("member")
        ));
        let elsewhere = pool.for_account(MEMBER, "eu-west-1").await.expect("member");
        assert_eq!(elsewhere.region, "eu-west-1");
        assert!(!Arc::ptr_eq(&member, &elsewhere));
        assert_eq!(
            pool.member_credentials.lock().unwrap().len(),
            1,
            "one AssumeRole provider per member, whatever the region"
        );
        assert!(pool.for_account(STRANGER, "us-west-2").await.is_err());
        assert_eq!(pool.members(), vec![MEMBER.to_string()]);
    }

    #[test]
    fn the_partition_comes_from_the_callers_arn() {
        let identity =
            CallerIdentity::new(HUB, "arn:aws-us-gov:sts::123456789012:assumed-role/r/s");
        assert_eq!(identity.partition, "aws-us-gov");
        assert_eq!(CallerIdentity::new(HUB, "").partition, "aws");
    }
}
