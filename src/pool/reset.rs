//! Returning a server to a clean state before another client gets it, on the server's
//! own terms.
//!
//! PostgreSQL: `DISCARD ALL` (settings, prepared statements, temporary tables, cursors,
//! listeners, advisory locks, role). Redshift (server_version 8.0.2) refuses DISCARD,
//! `DEALLOCATE ALL`, `CLOSE ALL`, LISTEN and the advisory-lock functions, so there the
//! reset is: Close each protocol statement the client named, `DEALLOCATE` each
//! SQL-prepared one, `RESET ALL`. What no Redshift statement removes (temporary tables,
//! `SET ROLE`/`SET SESSION AUTHORIZATION`, state made inside procedures) makes the proxy
//! close the server instead. A failed reset closes the server too; a dirty server is
//! never reused.

use super::server::ServerConn;
use crate::wire::{self, TxnStatus};
use bytes::BytesMut;
use std::time::Duration;

/// Time allowed for a reset before the server is closed instead.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// What one client left on a server, as seen by the relay.
#[derive(Debug, Default, Clone)]
pub struct Leftovers {
    /// Protocol-level statements the client named itself (session mode).
    pub statements: Vec<String>,
    /// SQL-level `PREPARE` names.
    pub sql_prepared: Vec<String>,
    /// State the proxy saw that `RESET ALL` does not remove, with the reason.
    pub sticky: Option<&'static str>,
    /// A stored procedure ran (on Redshift it may have made temporary tables).
    pub called_procedure: bool,
    /// Settings may differ from what the proxy tracked.
    pub settings_changed: bool,
}

/// How the server will be made clean, or why it cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to undo.
    Nothing,
    /// Protocol bytes to send and the number of ReadyForQuery answers to read.
    Run { description: String, syncs: usize },
    /// The server must be closed.
    Close(String),
}

/// Decides the reset for `server` after a client left `left` (pure, for tests).
pub fn plan(
    redshift: bool,
    txn: TxnStatus,
    left: &Leftovers,
    reset_query: Option<&str>,
) -> (Plan, BytesMut) {
    let mut out = BytesMut::new();
    let mut syncs = 0;
    let mut steps: Vec<String> = Vec::new();
    if txn != TxnStatus::Idle {
        out.extend_from_slice(&wire::query("ROLLBACK"));
        syncs += 1;
        steps.push("ROLLBACK".into());
    }
    if redshift {
        if let Some(why) = left.sticky {
            return (
                Plan::Close(format!("{why} cannot be undone on Redshift")),
                out,
            );
        }
        if left.called_procedure {
            return (
                Plan::Close("a stored procedure may have left temporary tables".into()),
                out,
            );
        }
        syncs += release_statements(left, &mut out, &mut steps);
        let q = reset_query.unwrap_or("RESET ALL");
        out.extend_from_slice(&wire::query(q));
        syncs += 1;
        steps.push(q.to_owned());
    } else {
        match reset_query {
            // A custom reset may not remove what DISCARD ALL would: be strict.
            Some(q) => {
                if let Some(why) = left.sticky {
                    return (
                        Plan::Close(format!("{why} is not undone by pool.reset_query")),
                        out,
                    );
                }
                syncs += release_statements(left, &mut out, &mut steps);
                out.extend_from_slice(&wire::query(q));
                syncs += 1;
                steps.push(q.to_owned());
            }
            None => {
                out.extend_from_slice(&wire::query("DISCARD ALL"));
                syncs += 1;
                steps.push("DISCARD ALL".into());
            }
        }
    }
    if syncs == 0 {
        return (Plan::Nothing, out);
    }
    (
        Plan::Run {
            description: steps.join("; "),
            syncs,
        },
        out,
    )
}

/// Closes the protocol statements the client named and deallocates its SQL-prepared
/// ones (what `DISCARD ALL` would do, said in words Redshift accepts); returns the
/// number of ReadyForQuery answers to expect.
fn release_statements(left: &Leftovers, out: &mut BytesMut, steps: &mut Vec<String>) -> usize {
    let mut syncs = 0;
    if !left.statements.is_empty() {
        for name in &left.statements {
            out.extend_from_slice(&wire::close(wire::protocol::target::STATEMENT, name));
        }
        out.extend_from_slice(&wire::sync());
        syncs += 1;
        steps.push(format!("Close {} statements", left.statements.len()));
    }
    for name in &left.sql_prepared {
        out.extend_from_slice(&wire::query(&format!("DEALLOCATE {name}")));
        syncs += 1;
        steps.push(format!("DEALLOCATE {name}"));
    }
    syncs
}

/// Resets `server` for the next client; `Err` says why it must be closed instead.
pub async fn reset(
    server: &mut ServerConn,
    left: &Leftovers,
    reset_query: Option<&str>,
) -> Result<(), String> {
    let (plan, bytes) = plan(server.redshift(), server.tracked.txn, left, reset_query);
    match plan {
        Plan::Nothing => Ok(()),
        Plan::Close(why) => Err(why),
        Plan::Run { description, syncs } => {
            server
                .run_messages(&bytes, syncs, RESET_TIMEOUT)
                .await
                .map_err(|e| format!("reset ({description}) failed: {e}"))?;
            if server.tracked.txn != TxnStatus::Idle {
                return Err("server still in a transaction after reset".into());
            }
            // DISCARD ALL also drops the proxy's own prepared statements.
            let discarded = !server.redshift() && reset_query.is_none();
            server.tracked.after_reset(discarded);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &BytesMut) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn postgres_is_reset_with_discard_all() {
        let (p, b) = plan(false, TxnStatus::Idle, &Leftovers::default(), None);
        assert_eq!(
            p,
            Plan::Run {
                description: "DISCARD ALL".into(),
                syncs: 1
            }
        );
        assert!(text(&b).contains("DISCARD ALL"));
    }

    #[test]
    fn redshift_is_never_sent_what_it_refuses() {
        let left = Leftovers {
            statements: vec!["s1".into()],
            sql_prepared: vec!["q".into()],
            ..Default::default()
        };
        let (p, b) = plan(true, TxnStatus::Idle, &left, None);
        let t = text(&b);
        for refused in [
            "DISCARD",
            "DEALLOCATE ALL",
            "CLOSE ALL",
            "pg_advisory",
            "UNLISTEN",
        ] {
            assert!(!t.contains(refused), "{refused} in {t}");
        }
        assert!(t.contains("DEALLOCATE q") && t.contains("RESET ALL"), "{t}");
        assert!(matches!(p, Plan::Run { syncs: 3, .. }), "{p:?}");
    }

    #[test]
    fn an_open_transaction_is_rolled_back_first() {
        let (_, b) = plan(true, TxnStatus::InBlock, &Leftovers::default(), None);
        let t = text(&b);
        assert!(t.find("ROLLBACK") < t.find("RESET ALL"), "{t}");
    }

    #[test]
    fn temporary_tables_on_redshift_close_the_server() {
        let left = Leftovers {
            sticky: Some("temporary table"),
            ..Default::default()
        };
        assert!(matches!(
            plan(true, TxnStatus::Idle, &left, None).0,
            Plan::Close(_)
        ));
        // PostgreSQL's DISCARD ALL drops them.
        assert!(matches!(
            plan(false, TxnStatus::Idle, &left, None).0,
            Plan::Run { .. }
        ));
    }

    #[test]
    fn procedures_on_redshift_close_the_server() {
        let left = Leftovers {
            called_procedure: true,
            ..Default::default()
        };
        assert!(matches!(
            plan(true, TxnStatus::Idle, &left, None).0,
            Plan::Close(_)
        ));
    }

    #[test]
    fn a_custom_reset_query_replaces_the_default() {
        let (p, b) = plan(
            false,
            TxnStatus::Idle,
            &Leftovers::default(),
            Some("RESET ALL"),
        );
        assert!(matches!(p, Plan::Run { syncs: 1, .. }));
        assert!(!text(&b).contains("DISCARD"));
    }
}
