//! A failure before (or instead of) the relay, as the client will hear it.
//!
//! Every error the proxy reports itself (AWS, endpoint, cluster login, pool limits)
//! becomes one of these: a SQLSTATE, a message naming the cause, and a hint naming the
//! fix where there is one. The session turns it into an ErrorResponse. A leaf: each error
//! type says how it reads as a refusal where it is defined (`impl From<…> for Refusal`).

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
