//! The credential provider: calls the Redshift APIs through the AWS SDK.
//!
//! One `RedshiftApi` owns the SDK client and the call discipline every call shares:
//! a time limit per attempt, jittered back-off for throttling and transient
//! failures, and the translation of SDK errors into [`CredentialError`], which
//! carries the AWS error code all the way to the client's ErrorResponse.
//! Caching lives in `cache.rs`; this file only talks to AWS.

use crate::config::AwsConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_redshift::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use rand::Rng;
use secrecy::SecretString;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Everything GetClusterCredentials is asked with; also the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialRequest {
    pub cluster_identifier: String,
    pub db_user: String,
    pub db_name: String,
    /// Sorted, de-duplicated.
    pub db_groups: Vec<String>,
    pub auto_create: bool,
    pub duration_seconds: u32,
}

/// A minted login: the DbUser exactly as AWS returned it and its password.
/// The password is a `SecretString`, so `Debug` never shows it.
#[derive(Debug)]
pub struct DbCredential {
    pub db_user: String,
    pub password: SecretString,
    /// When AWS says the password stops working.
    pub expiration: SystemTime,
}

/// What kind of failure a credential API call met; decides SQLSTATE and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// "Rate exceeded" / Throttling after every retry.
    Throttled,
    /// The caller lacks permission or its AWS credentials are bad.
    Denied,
    /// The cluster does not exist.
    NotFound,
    /// A parameter AWS refused (bad DbUser, DbName, …).
    Invalid,
    /// The endpoint did not answer in time.
    Timeout,
    /// The endpoint could not be reached or answered 5xx.
    Unavailable,
    /// Anything else, e.g. a response without the expected fields.
    Other,
}

/// A failed AWS call, with the AWS error code when there is one.
#[derive(Debug, Clone)]
pub struct CredentialError {
    pub kind: FailureKind,
    pub operation: &'static str,
    /// AWS error code (`AccessDenied`, `ClusterNotFound`, …) or a short tag of ours.
    pub code: String,
    pub message: String,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {}: {}",
            self.operation, self.code, self.message
        )
    }
}

impl std::error::Error for CredentialError {}

impl CredentialError {
    /// The SQLSTATE a client sees for this failure.
    pub fn sqlstate(&self) -> &'static str {
        match self.kind {
            FailureKind::Denied | FailureKind::Invalid => "28000",
            FailureKind::Throttled => "53300",
            FailureKind::NotFound
            | FailureKind::Timeout
            | FailureKind::Unavailable
            | FailureKind::Other => "08001",
        }
    }

    /// A hint the user can act on.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self.kind {
            FailureKind::Denied => "check the IAM policy of the proxy's AWS identity (redshift:GetClusterCredentials, redshift:JoinGroup for db_groups, redshift:CreateClusterUser for auto_create)",
            FailureKind::NotFound => "check cluster.identifier and aws.region in the proxy configuration",
            FailureKind::Throttled => "AWS is throttling credential calls; retry shortly",
            FailureKind::Timeout | FailureKind::Unavailable => "the AWS endpoint did not answer; check network access to it (or aws.endpoint_url)",
            FailureKind::Invalid | FailureKind::Other => return None,
        })
    }

    fn retryable(&self) -> bool {
        matches!(self.kind, FailureKind::Throttled | FailureKind::Unavailable)
    }

    fn other(operation: &'static str, code: &str, message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Other,
            operation,
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The Redshift API client with the proxy's retry and timeout discipline.
pub struct RedshiftApi {
    client: aws_sdk_redshift::Client,
    timeout: Duration,
    max_attempts: u32,
}

/// How the SDK finds AWS credentials: its default chain, or fixed ones (tests, demo).
#[derive(Clone, Default)]
pub enum AwsIdentitySource {
    #[default]
    DefaultChain,
    Static(aws_credential_types::Credentials),
}

impl RedshiftApi {
    /// Builds the SDK client from `[aws]` (lean rustls+ring HTTPS client, our own retries).
    pub async fn new(aws: &AwsConfig, identity: AwsIdentitySource) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeout = Duration::from_secs(aws.timeout_secs);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            // Retries are ours (see `call`), so that throttling back-off is visible and bounded.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeout.min(Duration::from_secs(5)))
                    .operation_attempt_timeout(timeout)
                    .build(),
            );
        if let Some(region) = &aws.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &aws.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &aws.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let AwsIdentitySource::Static(creds) = identity {
            loader = loader.credentials_provider(creds);
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            tracing::warn!("no AWS region configured (aws.region, AWS_REGION or profile): credential calls will fail");
        }
        Self {
            client: aws_sdk_redshift::Client::new(&sdk),
            timeout,
            max_attempts: aws.max_attempts,
        }
    }

    /// GetClusterCredentials for one request.
    pub async fn get_cluster_credentials(
        &self,
        req: &CredentialRequest,
    ) -> Result<DbCredential, CredentialError> {
        const OP: &str = "GetClusterCredentials";
        let out = self
            .call(OP, || {
                self.client
                    .get_cluster_credentials()
                    .cluster_identifier(&req.cluster_identifier)
                    .db_user(&req.db_user)
                    .db_name(&req.db_name)
                    .duration_seconds(req.duration_seconds as i32)
                    .auto_create(req.auto_create)
                    .set_db_groups((!req.db_groups.is_empty()).then(|| req.db_groups.clone()))
                    .send()
            })
            .await?;
        let db_user = out.db_user().ok_or_else(|| {
            CredentialError::other(OP, "MalformedResponse", "no DbUser in the response")
        })?;
        let password = out.db_password().ok_or_else(|| {
            CredentialError::other(OP, "MalformedResponse", "no DbPassword in the response")
        })?;
        let expiration = out
            .expiration()
            .and_then(|t| SystemTime::try_from(*t).ok())
            // Without an Expiration, assume the requested lifetime.
            .unwrap_or_else(|| {
                SystemTime::now() + Duration::from_secs(req.duration_seconds.into())
            });
        Ok(DbCredential {
            db_user: db_user.to_owned(),
            password: SecretString::from(password.to_owned()),
            expiration,
        })
    }

    /// DescribeClusters: the endpoint host and port of one cluster.
    pub async fn describe_cluster_endpoint(
        &self,
        identifier: &str,
    ) -> Result<(String, u16), CredentialError> {
        const OP: &str = "DescribeClusters";
        let out = self
            .call(OP, || {
                self.client
                    .describe_clusters()
                    .cluster_identifier(identifier)
                    .send()
            })
            .await?;
        let cluster = out.clusters().first().ok_or_else(|| {
            CredentialError::other(
                OP,
                "ClusterNotFound",
                format!("no cluster {identifier:?} in the response"),
            )
        })?;
        let status = cluster.cluster_status().unwrap_or("unknown");
        let endpoint = cluster.endpoint().ok_or_else(|| CredentialError {
            kind: FailureKind::Unavailable,
            operation: OP,
            code: "NoEndpoint".into(),
            message: format!("cluster {identifier:?} has no endpoint yet (status {status})"),
        })?;
        match (endpoint.address(), endpoint.port()) {
            (Some(host), Some(port)) => {
                let port = u16::try_from(port).map_err(|_| {
                    CredentialError::other(
                        OP,
                        "MalformedResponse",
                        format!("port {port} out of range"),
                    )
                })?;
                Ok((host.to_owned(), port))
            }
            _ => Err(CredentialError::other(
                OP,
                "MalformedResponse",
                "endpoint without address or port",
            )),
        }
    }

    /// Runs one SDK operation with a per-attempt deadline and jittered retries.
    async fn call<T, E, R, F, Fut>(&self, op: &'static str, mut f: F) -> Result<T, CredentialError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug,
    {
        let mut attempt = 1;
        loop {
            let err = match tokio::time::timeout(self.timeout, f()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => classify(op, e),
                Err(_) => CredentialError {
                    kind: FailureKind::Timeout,
                    operation: op,
                    code: "Timeout".into(),
                    message: format!("no answer within {:?}", self.timeout),
                },
            };
            if !err.retryable() || attempt >= self.max_attempts {
                return Err(err);
            }
            let delay = backoff(attempt);
            tracing::debug!(operation = op, attempt, code = %err.code, ?delay, "retrying AWS call");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

/// Exponential back-off with "equal jitter": half fixed, half random, capped at 5 s.
fn backoff(attempt: u32) -> Duration {
    let base_ms: u64 = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let half = base_ms / 2;
    Duration::from_millis(half + rand::thread_rng().gen_range(0..=half))
}

fn classify<E, R>(op: &'static str, err: SdkError<E, R>) -> CredentialError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug,
{
    match &err {
        SdkError::TimeoutError(_) => CredentialError {
            kind: FailureKind::Timeout,
            operation: op,
            code: "Timeout".into(),
            message: DisplayErrorContext(&err).to_string(),
        },
        SdkError::DispatchFailure(_) => CredentialError {
            kind: FailureKind::Unavailable,
            operation: op,
            code: "EndpointUnreachable".into(),
            message: DisplayErrorContext(&err).to_string(),
        },
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_owned();
            let message = se.err().message().unwrap_or("").to_owned();
            let status = format!("{:?}", se.raw());
            CredentialError {
                kind: kind_of(&code, &message, status.contains("status: 5")),
                operation: op,
                code,
                message,
            }
        }
        _ => CredentialError::other(op, "SdkError", DisplayErrorContext(&err).to_string()),
    }
}

fn kind_of(code: &str, message: &str, server_error: bool) -> FailureKind {
    match code {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException" => FailureKind::Throttled,
        _ if message.contains("Rate exceeded") => FailureKind::Throttled,
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "MissingAuthenticationToken"
        | "UnrecognizedClientException" => FailureKind::Denied,
        "ClusterNotFound" | "ClusterNotFoundFault" | "ResourceNotFoundException" => {
            FailureKind::NotFound
        }
        "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "MissingParameter"
        | "UnsupportedOperation"
        | "ValidationException" => FailureKind::Invalid,
        "InternalFailure" | "ServiceUnavailable" | "InternalServerException" => {
            FailureKind::Unavailable
        }
        _ if server_error => FailureKind::Unavailable,
        _ => FailureKind::Other,
    }
}

/// Shared handle, as the cache and the sessions hold it.
pub type SharedApi = Arc<RedshiftApi>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_aws_codes() {
        assert_eq!(
            kind_of("Throttling", "Rate exceeded", false),
            FailureKind::Throttled
        );
        assert_eq!(
            kind_of("Whatever", "Rate exceeded", false),
            FailureKind::Throttled
        );
        assert_eq!(kind_of("AccessDenied", "", false), FailureKind::Denied);
        assert_eq!(kind_of("ClusterNotFound", "", false), FailureKind::NotFound);
        assert_eq!(
            kind_of("InvalidParameterValue", "", false),
            FailureKind::Invalid
        );
        assert_eq!(kind_of("Weird", "", true), FailureKind::Unavailable);
        assert_eq!(kind_of("Weird", "", false), FailureKind::Other);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            assert!(d <= Duration::from_secs(5));
            assert!(d >= Duration::from_millis(50));
        }
        assert!(backoff(6) >= Duration::from_millis(2_500));
    }
}
