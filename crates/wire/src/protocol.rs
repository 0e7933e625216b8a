//! The protocol's words, named once: message tags, the answers to SSL/GSS negotiation,
//! authentication request codes, ErrorResponse field types, the transaction status of a
//! ReadyForQuery, and every SQLSTATE the project names.
//!
//! Tags share letters between directions (`D` is Describe from a client and DataRow from a
//! server), so they live in two modules named for who sends them.

use super::WireError;

/// Whether a server's `server_version` ParameterStatus is Redshift's (8.0.2).
pub fn is_redshift_version(server_version: &str) -> bool {
    server_version.starts_with("8.0.2")
}

/// Tags of messages a client (frontend) sends.
pub mod frontend {
    pub const BIND: u8 = b'B';
    pub const CLOSE: u8 = b'C';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const PARSE: u8 = b'P';
    /// PasswordMessage, SASLInitialResponse and SASLResponse share it.
    pub const PASSWORD: u8 = b'p';
    pub const QUERY: u8 = b'Q';
    pub const SYNC: u8 = b'S';
    pub const TERMINATE: u8 = b'X';
    /// Redshift's answer to authentication code 13.
    pub const REDSHIFT_DIGEST: u8 = b'd';
}

/// Tags of messages a server (backend) sends.
pub mod backend {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const DATA_ROW: u8 = b'D';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub const NO_DATA: u8 = b'n';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// Describe and Close name a prepared statement or a portal.
pub mod target {
    pub const STATEMENT: u8 = b'S';
    pub const PORTAL: u8 = b'P';
}

/// The one-byte answers to an SSLRequest or a GSSENCRequest (no tag, no length).
pub mod negotiation {
    /// SSLRequest accepted: TLS starts.
    pub const SSL_ACCEPTED: u8 = b'S';
    /// Request declined: the client goes on unencrypted or gives up.
    pub const REFUSED: u8 = b'N';
}

/// Codes of an Authentication (`R`) message.
pub mod auth {
    pub const OK: i32 = 0;
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    pub const MD5_PASSWORD: i32 = 5;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
    /// Redshift's SHA-256 digest with salt and server nonce.
    pub const REDSHIFT_DIGEST: i32 = 13;
    /// Redshift's identity-provider token.
    pub const REDSHIFT_IDP_TOKEN: i32 = 14;
}

/// Field types of an ErrorResponse or NoticeResponse.
pub mod error_field {
    /// Severity, possibly localized.
    pub const SEVERITY: u8 = b'S';
    /// Severity, never localized.
    pub const SEVERITY_NONLOCALIZED: u8 = b'V';
    /// The SQLSTATE.
    pub const CODE: u8 = b'C';
    pub const MESSAGE: u8 = b'M';
    pub const DETAIL: u8 = b'D';
    pub const HINT: u8 = b'H';
    /// Source file of the server that raised it.
    pub const FILE: u8 = b'F';
    /// Source line of the server that raised it.
    pub const LINE: u8 = b'L';
    /// Server routine that raised it.
    pub const ROUTINE: u8 = b'R';
}

/// Every SQLSTATE the project names: those the proxy answers with itself and those it
/// looks for in a server's answers (names as in PostgreSQL's errcodes.txt, by code).
pub mod sqlstate {
    pub const SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION: &str = "08001";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
    pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
    pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const SYNTAX_ERROR: &str = "42601";
    pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const QUERY_CANCELED: &str = "57014";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const CONFIG_FILE_ERROR: &str = "F0000";
}

/// The transaction status a ReadyForQuery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxnStatus {
    /// `I`: no transaction block open.
    #[default]
    Idle,
    /// `T`: inside a transaction block.
    InBlock,
    /// `E`: inside a failed transaction block (statements refused until it ends).
    Failed,
}

impl TxnStatus {
    /// The status of a ReadyForQuery body.
    pub fn from_ready_body(body: &[u8]) -> Result<TxnStatus, WireError> {
        match body {
            [b'I'] => Ok(TxnStatus::Idle),
            [b'T'] => Ok(TxnStatus::InBlock),
            [b'E'] => Ok(TxnStatus::Failed),
            _ => Err(WireError::Malformed("ReadyForQuery with a bad status")),
        }
    }

    /// The byte a ReadyForQuery carries.
    pub fn byte(self) -> u8 {
        match self {
            TxnStatus::Idle => b'I',
            TxnStatus::InBlock => b'T',
            TxnStatus::Failed => b'E',
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_status_round_trips_through_its_byte() {
        for s in [TxnStatus::Idle, TxnStatus::InBlock, TxnStatus::Failed] {
            assert_eq!(TxnStatus::from_ready_body(&[s.byte()]).ok(), Some(s));
        }
        assert!(TxnStatus::from_ready_body(b"X").is_err());
        assert!(TxnStatus::from_ready_body(b"").is_err());
    }
}
