//! `redshift-iam-proxy token`: an AWS identity token from the caller's own credentials
//! (the SDK's chain: environment, profile, SSO, instance role, web identity), for a client
//! to send as its password.

use super::aws_token::MAX_EXPIRES_SECS;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
pub use redshift_tokens::presign::presign;
use std::time::{Duration, SystemTime};

/// Why: the token subcommand's flags (clap).
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The proxy deployment the token is for (its `[client_auth.aws_token] server_id`).
    #[arg(long)]
    pub server_id: String,
    /// AWS region of the STS endpoint (default: the SDK's region chain).
    #[arg(long)]
    pub region: Option<String>,
    /// Named AWS profile (default: the SDK's default chain).
    #[arg(long)]
    pub profile: Option<String>,
    /// STS endpoint to sign for (default `https://sts.REGION.amazonaws.com`; must be one the
    /// proxy accepts). `AWS_ENDPOINT_URL_STS` also works.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Seconds the token stays valid (1..=900).
    #[arg(long, default_value_t = 900)]
    pub expires: u64,
}

/// A token for `args`, from the caller's AWS credentials.
pub async fn make(args: &TokenArgs) -> Result<String, String> {
    if !(1..=MAX_EXPIRES_SECS as u64).contains(&args.expires) {
        return Err(format!("--expires must be 1..={MAX_EXPIRES_SECS}"));
    }
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(r) = &args.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(p) = &args.profile {
        loader = loader.profile_name(p);
    }
    let sdk = loader.load().await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or("no AWS region: pass --region or set AWS_REGION")?;
    let creds = sdk
        .credentials_provider()
        .ok_or("no AWS credentials provider")?
        .provide_credentials()
        .await
        .map_err(|e| format!("no AWS credentials: {e}"))?;
    let endpoint = args
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_STS").ok())
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
    presign(
        &endpoint,
        &region,
        &args.server_id,
        creds,
        Duration::from_secs(args.expires),
        SystemTime::now(),
    )
}
