//! AWS errors as the proxy sees them: every failed AWS call becomes a [`CredentialError`]
//! whose [`FailureKind`] decides the client's SQLSTATE, the hint and whether to retry.
//!
//! Kept apart from the calls (`credentials`, `endpoint`) so the classification table and
//! the back-off are one small, tested piece.

use crate::wire::protocol::sqlstate;
use aws_sdk_redshift::config::http::HttpResponse;
use aws_sdk_redshift::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use rand::Rng;
use std::fmt;
use std::time::Duration;

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

impl FailureKind {
    /// Short name for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Throttled => "throttled",
            FailureKind::Denied => "denied",
            FailureKind::NotFound => "not_found",
            FailureKind::Invalid => "invalid",
            FailureKind::Timeout => "timeout",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Other => "other",
        }
    }
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
            FailureKind::Denied | FailureKind::Invalid => {
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION
            }
            FailureKind::Throttled => sqlstate::TOO_MANY_CONNECTIONS,
            FailureKind::NotFound
            | FailureKind::Timeout
            | FailureKind::Unavailable
            | FailureKind::Other => sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        }
    }

    /// A hint the user can act on.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self.kind {
            FailureKind::Denied => "check the IAM policy of the proxy's AWS identity (or of the user's role_arn): redshift:GetClusterCredentials, redshift:JoinGroup for db_groups, redshift:CreateClusterUser for auto_create, redshift:GetClusterCredentialsWithIAM, redshift-serverless:GetCredentials, sts:AssumeRole",
            FailureKind::NotFound => "check cluster.identifier / workgroup / custom_domain_name and aws.region in the proxy configuration",
            FailureKind::Throttled => "AWS is throttling credential calls; retry shortly",
            FailureKind::Timeout | FailureKind::Unavailable => "the AWS endpoint did not answer; check network access to it (or aws.endpoint_url)",
            FailureKind::Invalid | FailureKind::Other => return None,
        })
    }

    pub(crate) fn retryable(&self) -> bool {
        matches!(self.kind, FailureKind::Throttled | FailureKind::Unavailable)
    }

    /// An error AWS answered with: its code and message, and whether the status was 5xx.
    fn from_service(
        operation: &'static str,
        code: String,
        message: String,
        server_error: bool,
    ) -> Self {
        Self {
            kind: kind_of(&code, &message, server_error),
            operation,
            code,
            message,
        }
    }

    pub(crate) fn other(operation: &'static str, code: &str, message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Other,
            operation,
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Exponential back-off with "equal jitter": half fixed, half random, capped at 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base_ms: u64 = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let half = base_ms / 2;
    Duration::from_millis(half + rand::thread_rng().gen_range(0..=half))
}

/// Translates an SDK error of `op` into a [`CredentialError`].
pub(crate) fn classify<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> CredentialError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) => CredentialError {
            kind: FailureKind::Timeout,
            operation: op,
            code: "Timeout".into(),
            message: DisplayErrorContext(&err).to_string(),
        },
        SdkError::DispatchFailure(d) => {
            let message = DisplayErrorContext(&err).to_string();
            // A role that cannot be assumed surfaces here, as a failure to get credentials.
            if !d.is_io() && !d.is_timeout() && message.contains("AccessDenied") {
                return CredentialError {
                    kind: FailureKind::Denied,
                    operation: op,
                    code: "AccessDenied".into(),
                    message,
                };
            }
            CredentialError {
                kind: if d.is_timeout() {
                    FailureKind::Timeout
                } else {
                    FailureKind::Unavailable
                },
                operation: op,
                code: if d.is_io() {
                    "EndpointUnreachable".into()
                } else {
                    "DispatchFailure".into()
                },
                message,
            }
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_owned();
            let message = se.err().message().unwrap_or("").to_owned();
            let server_error = se.raw().status().as_u16() >= 500;
            CredentialError::from_service(op, code, message, server_error)
        }
        _ => CredentialError::other(op, "SdkError", DisplayErrorContext(&err).to_string()),
    }
}

/// The kind of a service error, from its AWS error code, message and HTTP status class.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_map_to_a_kind_and_a_sqlstate() {
        // (AWS code, message, HTTP 5xx) -> (kind, SQLSTATE the client hears)
        let cases = [
            (
                "Throttling",
                "Rate exceeded",
                false,
                FailureKind::Throttled,
                "53300",
            ),
            (
                "ThrottlingException",
                "",
                false,
                FailureKind::Throttled,
                "53300",
            ),
            (
                "RequestLimitExceeded",
                "",
                false,
                FailureKind::Throttled,
                "53300",
            ),
            (
                "TooManyRequestsException",
                "",
                false,
                FailureKind::Throttled,
                "53300",
            ),
            (
                "Whatever",
                "Rate exceeded",
                false,
                FailureKind::Throttled,
                "53300",
            ),
            ("AccessDenied", "", false, FailureKind::Denied, "28000"),
            (
                "AccessDeniedException",
                "",
                false,
                FailureKind::Denied,
                "28000",
            ),
            (
                "UnauthorizedOperation",
                "",
                false,
                FailureKind::Denied,
                "28000",
            ),
            (
                "InvalidClientTokenId",
                "",
                false,
                FailureKind::Denied,
                "28000",
            ),
            (
                "SignatureDoesNotMatch",
                "",
                false,
                FailureKind::Denied,
                "28000",
            ),
            ("ExpiredToken", "", false, FailureKind::Denied, "28000"),
            (
                "ExpiredTokenException",
                "",
                false,
                FailureKind::Denied,
                "28000",
            ),
            (
                "MissingAuthenticationToken",
                "",
                false,
                FailureKind::Denied,
                "28000",
            ),
            (
                "UnrecognizedClientException",
                "",
                false,
                FailureKind::Denied,
                "28000",
            ),
            ("ClusterNotFound", "", false, FailureKind::NotFound, "08001"),
            (
                "ClusterNotFoundFault",
                "",
                false,
                FailureKind::NotFound,
                "08001",
            ),
            (
                "ResourceNotFoundException",
                "",
                false,
                FailureKind::NotFound,
                "08001",
            ),
            (
                "InvalidParameterValue",
                "",
                false,
                FailureKind::Invalid,
                "28000",
            ),
            (
                "InvalidParameterCombination",
                "",
                false,
                FailureKind::Invalid,
                "28000",
            ),
            ("MissingParameter", "", false, FailureKind::Invalid, "28000"),
            (
                "UnsupportedOperation",
                "",
                false,
                FailureKind::Invalid,
                "28000",
            ),
            (
                "ValidationException",
                "",
                false,
                FailureKind::Invalid,
                "28000",
            ),
            (
                "InternalFailure",
                "",
                false,
                FailureKind::Unavailable,
                "08001",
            ),
            (
                "ServiceUnavailable",
                "",
                false,
                FailureKind::Unavailable,
                "08001",
            ),
            (
                "InternalServerException",
                "",
                false,
                FailureKind::Unavailable,
                "08001",
            ),
            ("Weird", "", true, FailureKind::Unavailable, "08001"),
            ("Weird", "", false, FailureKind::Other, "08001"),
        ];
        for (code, message, server_error, kind, sqlstate) in cases {
            let e = CredentialError::from_service("Op", code.into(), message.into(), server_error);
            assert_eq!(
                (e.kind, e.sqlstate()),
                (kind, sqlstate),
                "{code} / {message:?} / 5xx {server_error}"
            );
        }
    }

    #[test]
    fn a_code_wins_over_the_status_class() {
        let e = CredentialError::from_service("Op", "AccessDenied".into(), String::new(), true);
        assert_eq!(e.kind, FailureKind::Denied);
    }

    #[test]
    fn only_throttling_and_unavailability_are_retried() {
        let cases = [
            (FailureKind::Throttled, true),
            (FailureKind::Unavailable, true),
            (FailureKind::Denied, false),
            (FailureKind::NotFound, false),
            (FailureKind::Invalid, false),
            (FailureKind::Timeout, false),
            (FailureKind::Other, false),
        ];
        for (kind, retried) in cases {
            let e = CredentialError {
                kind,
                ..CredentialError::other("Op", "X", "")
            };
            assert_eq!(e.retryable(), retried, "{kind:?}");
        }
    }

    #[test]
    fn timeouts_and_other_failures_are_connection_failures() {
        for kind in [FailureKind::Timeout, FailureKind::Other] {
            let e = CredentialError {
                kind,
                ..CredentialError::other("Op", "X", "")
            };
            assert_eq!(e.sqlstate(), "08001", "{kind:?}");
        }
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
