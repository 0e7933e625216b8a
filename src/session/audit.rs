//! The audit log: one structured line per client session, whatever its outcome.
//!
//! Emitted under the tracing target `redshift_iam_proxy::audit` (filter it with
//! `RUST_LOG=redshift_iam_proxy::audit=info`), with client address, application name,
//! client user, verified principal (token logins), IAM identity, DbUser, target, database, start and end times, bytes each
//! way and the outcome. Never a secret: there is no field a password could go into.

use crate::access::login::LoginPlan;
use crate::config::PoolMode;
use std::net::SocketAddr;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What is known about a session so far; logged once when dropped.
pub struct AuditRecord {
    peer: SocketAddr,
    started: OffsetDateTime,
    pub client_user: String,
    /// The verified principal of a token login (ARN, or issuer#subject); empty otherwise.
    pub principal: String,
    pub application_name: String,
    pub target: String,
    pub database: String,
    /// The role ARN used for credential calls, or "proxy" for the proxy's own identity.
    pub iam_identity: String,
    pub db_user: String,
    pub client_tls: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// "closed", "shutdown", "error: …" or "refused SQLSTATE: …".
    pub outcome: String,
    /// "none", "session" or "transaction".
    pub pool_mode: &'static str,
}

impl AuditRecord {
    pub fn new(peer: SocketAddr, client_user: &str) -> Self {
        Self {
            peer,
            started: OffsetDateTime::now_utc(),
            client_user: client_user.to_owned(),
            principal: String::new(),
            application_name: String::new(),
            target: String::new(),
            database: String::new(),
            iam_identity: String::new(),
            db_user: String::new(),
            client_tls: false,
            bytes_in: 0,
            bytes_out: 0,
            outcome: "client left during login".into(),
            pool_mode: "",
        }
    }

    /// What the login policy decided: target, IAM identity, database and pool mode.
    pub fn planned(&mut self, plan: &LoginPlan, target: &str, mode: PoolMode) {
        self.target = target.to_owned();
        self.iam_identity = plan
            .identity
            .role
            .as_ref()
            .map_or_else(|| "proxy".into(), |r| r.arn.clone());
        self.database = plan.database.clone();
        self.pool_mode = mode.as_str();
    }

    pub fn refused(&mut self, code: &str, message: &str) {
        self.outcome = format!("refused {code}: {message}");
    }
}

impl Drop for AuditRecord {
    fn drop(&mut self) {
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        tracing::info!(
            target: "redshift_iam_proxy::audit",
            client_addr = %self.peer,
            application_name = %self.application_name,
            client_user = %self.client_user,
            principal = %self.principal,
            iam_identity = %self.iam_identity,
            db_user = %self.db_user,
            target = %self.target,
            database = %self.database,
            client_tls = self.client_tls,
            start = %fmt(self.started),
            end = %fmt(OffsetDateTime::now_utc()),
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            outcome = %self.outcome,
            pool_mode = self.pool_mode,
            "session audit"
        );
    }
}
