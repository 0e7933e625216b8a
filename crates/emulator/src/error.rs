//! AWS Query errors shared by every layer of the emulator.

/// Why: one AWS error (HTTP status, code, message) that signing, validation and the actions
/// return alike, so the server renders every failure as the same `<ErrorResponse>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// `Sender` for 4xx, `Receiver` for 5xx, as AWS Query reports the fault side.
    pub(crate) fn fault_type(&self) -> &'static str {
        if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        }
    }

    pub(crate) fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameterValue", message)
    }

    pub(crate) fn missing_parameter(name: &str) -> Self {
        Self::new(
            400,
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    pub(crate) fn cluster_not_found(id: &str) -> Self {
        Self::new(404, "ClusterNotFound", format!("Cluster {id} not found."))
    }

    pub(crate) fn signature_mismatch(message: impl Into<String>) -> Self {
        Self::new(403, "SignatureDoesNotMatch", message)
    }

    pub(crate) fn incomplete_signature(message: impl Into<String>) -> Self {
        Self::new(400, "IncompleteSignature", message)
    }

    pub(crate) fn invalid_client_token() -> Self {
        Self::new(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalFailure", message)
    }
}
