//! The credential provider: calls the Redshift, Redshift Serverless and STS APIs through the AWS SDK.
//!
//! Three ways to mint a login, one per `[cluster] credentials` mode: GetClusterCredentials
//! (DbUser/DbGroups/AutoCreate from the rules), GetClusterCredentialsWithIAM and Serverless
//! GetCredentials (AWS derives the DbUser from the IAM identity). Each call is made as the
//! proxy's own identity or, per user rule, as an assumed role (SDK clients are kept per role,
//! so aws-config's AssumeRoleProvider caches and refreshes the role credentials).
//!
//! One `RedshiftApi` owns the SDK clients and the call discipline every call shares:
//! a time limit per attempt, jittered back-off for throttling and transient
//! failures (classified in `aws_error`), and the translation of SDK errors into
//! [`CredentialError`], which carries the AWS error code all the way to the client's ErrorResponse.
//! Caching lives in `cache.rs` and endpoint discovery (DescribeClusters, GetWorkgroup,
//! DescribeCustomDomainAssociations) in `endpoint.rs`, through the same call discipline;
//! this file only mints credentials (and asks STS who the proxy is, for `check`).

use crate::aws::error::{backoff, classify, CredentialError, FailureKind};
use crate::config::{AwsConfig, CredentialMode};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_config::SdkConfig;
use aws_sdk_redshift::config::http::HttpResponse;
use aws_sdk_redshift::error::{ProvideErrorMetadata, SdkError};
use secrecy::SecretString;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// An IAM role assumed for a user's credential calls.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleSpec {
    pub arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}

/// Everything a credential API is asked with, and as whom; also the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialRequest {
    pub mode: CredentialMode,
    /// ClusterIdentifier (provisioned; also the fallback when the custom domain fails).
    pub cluster_identifier: Option<String>,
    /// Serverless workgroup name.
    pub workgroup: Option<String>,
    /// CustomDomainName, tried first when set.
    pub custom_domain: Option<String>,
    /// The assumed role; `None` is the proxy's own identity.
    pub role: Option<RoleSpec>,
    /// DbUser (GetClusterCredentials only).
    pub db_user: Option<String>,
    pub db_name: String,
    /// Sorted, de-duplicated (GetClusterCredentials only).
    pub db_groups: Vec<String>,
    pub auto_create: bool,
    pub duration_seconds: u32,
}

impl CredentialRequest {
    /// The API this request goes to, for messages.
    pub fn operation(&self) -> &'static str {
        match self.mode {
            CredentialMode::GetClusterCredentials => "GetClusterCredentials",
            CredentialMode::GetClusterCredentialsWithIam => "GetClusterCredentialsWithIAM",
            CredentialMode::Serverless => "GetCredentials",
        }
    }
}

/// A minted login: the DbUser exactly as AWS returned it and its password.
/// The password is a `SecretString`, so `Debug` never shows it.
#[derive(Debug)]
pub struct DbCredential {
    pub db_user: String,
    pub password: SecretString,
    /// When AWS says the password stops working.
    pub expiration: SystemTime,
    /// NextRefreshTime, when AWS gives one: do not use the credential past it.
    pub next_refresh: Option<SystemTime>,
}

/// The SDK clients of one IAM identity.
#[derive(Clone)]
struct Clients {
    redshift: aws_sdk_redshift::Client,
    serverless: aws_sdk_redshiftserverless::Client,
    sts: aws_sdk_sts::Client,
}

impl Clients {
    fn new(conf: &SdkConfig) -> Self {
        Self {
            redshift: aws_sdk_redshift::Client::new(conf),
            serverless: aws_sdk_redshiftserverless::Client::new(conf),
            sts: aws_sdk_sts::Client::new(conf),
        }
    }
}

/// The AWS API clients with the proxy's retry and timeout discipline.
pub struct RedshiftApi {
    base: SdkConfig,
    own: Clients,
    /// Clients per assumed role, made on first use.
    roles: tokio::sync::Mutex<HashMap<RoleSpec, Clients>>,
    timeout: Duration,
    max_attempts: u32,
}

/// What a credential API answered, before it is checked.
struct Minted {
    db_user: Option<String>,
    password: Option<String>,
    expiration: Option<aws_smithy_types::DateTime>,
    next_refresh: Option<aws_smithy_types::DateTime>,
}

impl Minted {
    /// The credential, once DbUser and DbPassword are there.
    fn into_credential(self, req: &CredentialRequest) -> Result<DbCredential, CredentialError> {
        let op = req.operation();
        let db_user = self.db_user.ok_or_else(|| {
            CredentialError::other(op, "MalformedResponse", "no DbUser in the response")
        })?;
        let password = self.password.ok_or_else(|| {
            CredentialError::other(op, "MalformedResponse", "no DbPassword in the response")
        })?;
        let expiration = self
            .expiration
            .and_then(|t| SystemTime::try_from(t).ok())
            // Without an Expiration, assume the requested lifetime.
            .unwrap_or_else(|| {
                SystemTime::now() + Duration::from_secs(req.duration_seconds.into())
            });
        Ok(DbCredential {
            db_user,
            password: SecretString::from(password),
            expiration,
            next_refresh: self.next_refresh.and_then(|t| SystemTime::try_from(t).ok()),
        })
    }
}

/// A provisioned cluster's target: the custom `domain`, or else its identifier (never both).
fn cluster_or_domain(
    req: &CredentialRequest,
    domain: Option<&str>,
) -> (Option<String>, Option<String>) {
    match domain {
        Some(d) => (None, Some(d.to_owned())),
        None => (req.cluster_identifier.clone(), None),
    }
}

/// How the SDK finds AWS credentials: its default chain, or fixed ones (tests, demo).
#[derive(Clone, Default)]
pub enum AwsIdentitySource {
    #[default]
    DefaultChain,
    Static(aws_credential_types::Credentials),
}

impl RedshiftApi {
    /// Builds the SDK configuration from `[aws]` (lean rustls+ring HTTPS client, our own retries).
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
        let base = loader.load().await;
        if base.region().is_none() {
            tracing::warn!("no AWS region configured (aws.region, AWS_REGION or profile): credential calls will fail");
        }
        Self {
            own: Clients::new(&base),
            base,
            roles: tokio::sync::Mutex::new(HashMap::new()),
            timeout,
            max_attempts: aws.max_attempts,
        }
    }

    /// The clients acting as `role`, or as the proxy itself.
    async fn clients(&self, role: Option<&RoleSpec>) -> Clients {
        let Some(role) = role else {
            return self.own.clone();
        };
        let mut roles = self.roles.lock().await;
        if let Some(c) = roles.get(role) {
            return c.clone();
        }
        let mut builder = aws_config::sts::AssumeRoleProvider::builder(role.arn.clone())
            .session_name(role.session_name.clone())
            .configure(&self.base);
        if let Some(id) = &role.external_id {
            builder = builder.external_id(id.clone());
        }
        let provider = builder.build().await;
        let conf = self
            .base
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build();
        let clients = Clients::new(&conf);
        roles.insert(role.clone(), clients.clone());
        clients
    }

    /// Mints a login for `req` with the API its mode names.
    pub async fn mint(&self, req: &CredentialRequest) -> Result<DbCredential, CredentialError> {
        let c = self.clients(req.role.as_ref()).await;
        let op = req.operation();
        // As AWS's drivers do: try the custom domain, fall back to the identifier once on error.
        if let Some(domain) = req.custom_domain.as_deref() {
            let fallback = match req.mode {
                CredentialMode::Serverless => req.workgroup.as_deref(),
                _ => req.cluster_identifier.as_deref(),
            };
            match self.mint_once(&c, req, Some(domain)).await {
                Ok(cred) => return Ok(cred),
                Err(e) if fallback.is_some() && e.kind != FailureKind::Throttled => {
                    tracing::warn!(operation = op, domain, error = %e, "custom domain failed; falling back to the identifier once");
                }
                Err(e) => return Err(e),
            }
        }
        self.mint_once(&c, req, None).await
    }

    /// One call to the API of `req.mode`, at the custom `domain` or else at the identifier.
    async fn mint_once(
        &self,
        c: &Clients,
        req: &CredentialRequest,
        domain: Option<&str>,
    ) -> Result<DbCredential, CredentialError> {
        let minted = match req.mode {
            CredentialMode::GetClusterCredentials => {
                self.get_cluster_credentials(c, req, domain).await?
            }
            CredentialMode::GetClusterCredentialsWithIam => {
                self.get_cluster_credentials_with_iam(c, req, domain)
                    .await?
            }
            CredentialMode::Serverless => self.get_credentials(c, req, domain).await?,
        };
        minted.into_credential(req)
    }

    /// Redshift GetClusterCredentials: DbUser, DbGroups and AutoCreate from the rules.
    async fn get_cluster_credentials(
        &self,
        c: &Clients,
        req: &CredentialRequest,
        domain: Option<&str>,
    ) -> Result<Minted, CredentialError> {
        let (cluster, domain) = cluster_or_domain(req, domain);
        let out = self
            .call(req.operation(), || {
                c.redshift
                    .get_cluster_credentials()
                    .set_cluster_identifier(cluster.clone())
                    .set_custom_domain_name(domain.clone())
                    .set_db_user(req.db_user.clone())
                    .db_name(&req.db_name)
                    .duration_seconds(req.duration_seconds as i32)
                    .auto_create(req.auto_create)
                    .set_db_groups((!req.db_groups.is_empty()).then(|| req.db_groups.clone()))
                    .send()
            })
            .await?;
        Ok(Minted {
            db_user: out.db_user,
            password: out.db_password,
            expiration: out.expiration,
            next_refresh: None,
        })
    }

    /// Redshift GetClusterCredentialsWithIAM: AWS derives the DbUser from the identity.
    async fn get_cluster_credentials_with_iam(
        &self,
        c: &Clients,
        req: &CredentialRequest,
        domain: Option<&str>,
    ) -> Result<Minted, CredentialError> {
        let (cluster, domain) = cluster_or_domain(req, domain);
        let out = self
            .call(req.operation(), || {
                c.redshift
                    .get_cluster_credentials_with_iam()
                    .set_cluster_identifier(cluster.clone())
                    .set_custom_domain_name(domain.clone())
                    .db_name(&req.db_name)
                    .duration_seconds(req.duration_seconds as i32)
                    .send()
            })
            .await?;
        Ok(Minted {
            db_user: out.db_user,
            password: out.db_password,
            expiration: out.expiration,
            next_refresh: out.next_refresh_time,
        })
    }

    /// Redshift Serverless GetCredentials, at the workgroup or the custom domain.
    async fn get_credentials(
        &self,
        c: &Clients,
        req: &CredentialRequest,
        domain: Option<&str>,
    ) -> Result<Minted, CredentialError> {
        // The target: custom domain, or workgroup (never both).
        let workgroup = if domain.is_some() {
            None
        } else {
            req.workgroup.clone()
        };
        let domain = domain.map(str::to_owned);
        let out = self
            .call(req.operation(), || {
                c.serverless
                    .get_credentials()
                    .set_workgroup_name(workgroup.clone())
                    .set_custom_domain_name(domain.clone())
                    .db_name(&req.db_name)
                    .duration_seconds(req.duration_seconds as i32)
                    .send()
            })
            .await?;
        Ok(Minted {
            db_user: out.db_user,
            password: out.db_password,
            expiration: out.expiration,
            next_refresh: out.next_refresh_time,
        })
    }

    /// STS GetCallerIdentity: the ARN the proxy (or `role`) acts as.
    pub async fn caller_identity(
        &self,
        role: Option<&RoleSpec>,
    ) -> Result<String, CredentialError> {
        const OP: &str = "GetCallerIdentity";
        let c = self.clients(role).await;
        let out = self.call(OP, || c.sts.get_caller_identity().send()).await?;
        out.arn().map(str::to_owned).ok_or_else(|| {
            CredentialError::other(OP, "MalformedResponse", "no Arn in the response")
        })
    }

    /// DescribeClusters for one provisioned cluster, as the proxy itself.
    pub async fn describe_cluster(
        &self,
        identifier: &str,
    ) -> Result<aws_sdk_redshift::types::Cluster, CredentialError> {
        const OP: &str = "DescribeClusters";
        let out = self
            .call(OP, || {
                self.redshift()
                    .describe_clusters()
                    .cluster_identifier(identifier)
                    .send()
            })
            .await?;
        out.clusters().first().cloned().ok_or_else(|| {
            CredentialError::other(
                OP,
                "ClusterNotFound",
                format!("no cluster {identifier:?} in the response"),
            )
        })
    }

    /// The Redshift client acting as the proxy itself (endpoint discovery).
    pub(crate) fn redshift(&self) -> &aws_sdk_redshift::Client {
        &self.own.redshift
    }

    /// The Redshift Serverless client acting as the proxy itself (endpoint discovery).
    pub(crate) fn serverless(&self) -> &aws_sdk_redshiftserverless::Client {
        &self.own.serverless
    }

    /// Runs one SDK operation with a per-attempt deadline and jittered retries.
    pub(crate) async fn call<T, E, F, Fut>(
        &self,
        op: &'static str,
        mut f: F,
    ) -> Result<T, CredentialError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 1;
        loop {
            let err = match tokio::time::timeout(self.timeout, f()).await {
                Ok(Ok(v)) => {
                    crate::base::events::credential_call(op, "ok");
                    return Ok(v);
                }
                Ok(Err(e)) => classify(op, e),
                Err(_) => CredentialError {
                    kind: FailureKind::Timeout,
                    operation: op,
                    code: "Timeout".into(),
                    message: format!("no answer within {:?}", self.timeout),
                },
            };
            crate::base::events::credential_call(op, err.kind.as_str());
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

/// Shared handle, as the cache and the sessions hold it.
pub type SharedApi = Arc<RedshiftApi>;
