//! A failure before (or instead of) the relay, as the client will hear it.
//!
//! Every error the proxy reports itself (AWS, endpoint, cluster login, pool limits)
//! becomes one of these: a SQLSTATE, a message naming the cause, and a hint naming the
//! fix where there is one. The session turns it into an ErrorResponse.

use crate::endpoint::EndpointError;
use crate::upstream::UpstreamError;
use crate::wire::protocol::sqlstate;

/// Why a client is refused, in the words the client will read.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Refusal {
    pub fn new(code: &str, message: impl Into<String>, hint: Option<&str>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            hint: hint.map(Into::into),
        }
    }
}

impl From<EndpointError> for Refusal {
    fn from(e: EndpointError) -> Self {
        match e {
            EndpointError::Aws(c) => Refusal::new(c.sqlstate(), c.to_string(), c.hint()),
            other => Refusal::new(
                sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                other.to_string(),
                None,
            ),
        }
    }
}

impl From<UpstreamError> for Refusal {
    fn from(e: UpstreamError) -> Self {
        Refusal::from_upstream(&e)
    }
}

impl Refusal {
    /// A failed server login as the client hears it.
    pub fn from_upstream(e: &UpstreamError) -> Self {
        let hint = match e {
            UpstreamError::AuthFailed(f) | UpstreamError::Server(f) => f.hint.clone(),
            _ => None,
        };
        Refusal {
            code: e.sqlstate(),
            message: format!("cluster: {e}"),
            hint,
        }
    }
}
