//! AWS clients and errors: one shared SDK configuration, clients per region, and one error type
//! that keeps the service's error code (EC2 and Auto Scaling model almost no typed errors).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The clients nodemedic uses in one region.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub region: String,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub eks: aws_sdk_eks::Client,
    pub iam: aws_sdk_iam::Client,
    pub kms: aws_sdk_kms::Client,
}

impl AwsClients {
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            eks: aws_sdk_eks::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
        }
    }
}

/// Builds and caches clients per region from one base configuration, so that an event from any
/// region is investigated where it happened.
#[derive(Debug)]
pub struct ClientPool {
    base: SdkConfig,
    by_region: Mutex<HashMap<String, Arc<AwsClients>>>,
}

impl ClientPool {
    pub fn new(base: SdkConfig) -> Self {
        Self {
            base,
            by_region: Mutex::new(HashMap::new()),
        }
    }

    pub fn base(&self) -> &SdkConfig {
        &self.base
    }

    pub fn for_region(&self, region: &str) -> Arc<AwsClients> {
        let mut cache = self
            .by_region
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .entry(region.to_string())
            .or_insert_with(|| {
                let config = self
                    .base
                    .to_builder()
                    .region(Region::new(region.to_string()))
                    .build();
                Arc::new(AwsClients::new(&config))
            })
            .clone()
    }
}

/// Loads the standard SDK configuration (environment, profile, IMDS, `AWS_ENDPOINT_URL`), with
/// adaptive retries: throttling and transient errors back off with jitter, and the client slows
/// itself down while a service throttles it, instead of failing the incident.
pub async fn load_config(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::adaptive().with_max_attempts(5));
    if let Some(region) = region.filter(|r| !r.is_empty()) {
        loader = loader.region(Region::new(region.to_string()));
    }
    loader.load().await
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
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .op("sts:GetCallerIdentity")?;
    Ok(identity.account().unwrap_or_default().to_string())
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
