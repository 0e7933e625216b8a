//! The machine's rules, one claim each: client frames and server answers in, the bytes
//! each side would get and the events out.

use super::*;
use crate::pool::tracked::{Presence, UnnamedOnServer};
use crate::wire::protocol::target;
use crate::wire::{Bind, Execute, Framer, NamedTarget, Parse, Query};
use bytes::{Bytes, BytesMut};
use postgres_protocol::message::frontend;

fn frames(bytes: &[u8]) -> Vec<Frame> {
    fn never(_: u8) -> bool {
        false
    }
    let mut f = Framer::new(1 << 20, never);
    f.buf_mut().extend_from_slice(bytes);
    let mut out = Vec::new();
    while let Ok(Some(frame)) = f.next_frame() {
        out.push(frame);
    }
    out
}

/// The client messages in `bytes`, one readable line each.
fn client_msgs(bytes: &[u8]) -> Vec<String> {
    use crate::wire::protocol::frontend as tag;
    frames(bytes)
        .into_iter()
        .map(|f| {
            let body = wire::body(f.raw());
            let line = match f.tag() {
                tag::QUERY => Query::decode(&body).map(|q| format!("Q {}", q.text)),
                tag::PARSE => Parse::decode(&body).map(|p| format!("P {:?} {}", p.name, p.query)),
                tag::BIND => {
                    Bind::decode(&body).map(|b| format!("B {:?} {:?}", b.portal, b.statement))
                }
                tag::DESCRIBE | tag::CLOSE => NamedTarget::decode(&body)
                    .map(|t| format!("{} {} {:?}", f.tag() as char, t.kind as char, t.name)),
                tag::EXECUTE => Execute::decode(&body).map(|e| format!("E {:?}", e.portal)),
                t => Ok(format!("{}", t as char)),
            };
            line.unwrap_or_else(|e| format!("{} malformed: {e}", f.tag() as char))
        })
        .collect()
}

/// The server messages the client got, one readable line each.
fn server_msgs(bytes: &[u8]) -> Vec<String> {
    use crate::wire::protocol::backend as tag;
    frames(bytes)
        .into_iter()
        .map(|f| {
            let body = wire::body(f.raw());
            let line = match f.tag() {
                tag::COMMAND_COMPLETE => wire::command_tag(&body).map(|t| format!("C {t}")),
                tag::READY_FOR_QUERY => {
                    wire::ready_status(&body).map(|s| format!("Z {}", s.byte() as char))
                }
                tag::ERROR_RESPONSE => {
                    let e = wire::parse_error_fields(&body);
                    Ok(format!("E {} {}", e.code, e.message))
                }
                tag::PARAMETER_STATUS => {
                    wire::parse_parameter_status(&body).map(|(k, v)| format!("S {k}={v}"))
                }
                t => Ok(format!("{}", t as char)),
            };
            line.unwrap_or_else(|e| format!("{} malformed: {e}", f.tag() as char))
        })
        .collect()
}

fn parse(name: &str, q: &str) -> BytesMut {
    Parse {
        name: name.into(),
        query: q.into(),
        query_raw: None,
        param_types: Bytes::from_static(&[0, 0]),
    }
    .encode_as(name)
}

fn bind(portal: &str, statement: &str) -> BytesMut {
    Bind {
        portal: portal.into(),
        statement: statement.into(),
        rest: Bytes::from_static(&[0, 0, 0, 0, 0, 0]),
    }
    .encode_for(statement)
}

fn execute(portal: &str) -> BytesMut {
    let mut out = BytesMut::new();
    let _ = frontend::execute(portal, 0, &mut out);
    out
}

fn error(code: &str, msg: &str) -> BytesMut {
    wire::error_response("ERROR", code, msg, None)
}

fn ready(s: TxnStatus) -> BytesMut {
    wire::ready_for_query(s)
}

fn row(values: &[&str]) -> BytesMut {
    let v: Vec<Option<&str>> = values.iter().map(|s| Some(*s)).collect();
    wire::data_row(&v)
}

fn cat(parts: &[BytesMut]) -> BytesMut {
    let mut out = BytesMut::new();
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A machine in `mode` with startup settings, and a server it holds.
struct Bench {
    m: Machine,
    srv: Tracked,
}

impl Bench {
    fn new(mode: PoolMode, startup: &[(&str, &str)]) -> Bench {
        let startup: params::Settings = startup
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let defaults = Arc::new(BTreeMap::from([(
            "DateStyle".to_owned(),
            "ISO, MDY".to_owned(),
        )]));
        let client = ClientState::new(startup, BTreeMap::new());
        let mut srv = Tracked::new(BTreeMap::new(), 10);
        srv.unnamed = UnnamedOnServer::Empty;
        Bench {
            m: Machine::new(mode, client, defaults),
            srv,
        }
    }

    fn txn() -> Bench {
        let mut b = Bench::new(PoolMode::Transaction, &[]);
        b.attach();
        b
    }

    fn attach(&mut self) {
        self.m.attach(&mut self.srv).expect("attach");
    }

    fn client(&mut self, bytes: BytesMut) {
        for f in frames(&bytes) {
            self.m
                .on_client(f, Some(&mut self.srv))
                .expect("client frame");
        }
    }

    fn server(&mut self, bytes: BytesMut) {
        for f in frames(&bytes) {
            self.m.on_server(f, &mut self.srv).expect("server frame");
        }
    }

    fn sent(&mut self) -> Vec<String> {
        let out = client_msgs(&self.m.to_server);
        self.m.to_server.clear();
        out
    }

    fn heard(&mut self) -> Vec<String> {
        let out = server_msgs(&self.m.to_client);
        self.m.to_client.clear();
        out
    }

    fn event(&mut self) -> Option<Event> {
        self.m.event(Some(&mut self.srv), true)
    }

    /// Runs `sql` to an idle ReadyForQuery with a plain CommandComplete.
    fn simple(&mut self, sql: &str, tag: &str) {
        self.client(wire::query(sql));
        self.sent();
        self.server(cat(&[wire::command_complete(tag), ready(TxnStatus::Idle)]));
        self.heard();
    }
}

fn rip(q: &str) -> String {
    let settings = params::Settings::new();
    server_name(
        &Parse {
            name: String::new(),
            query: q.into(),
            query_raw: None,
            param_types: Bytes::from_static(&[0, 0]),
        },
        super::client::settings_fingerprint(&settings),
    )
}

#[test]
fn settings_are_read_back_from_the_server_before_it_is_released() {
    let mut b = Bench::txn();
    b.simple("SET search_path = a -- note", "SET");
    assert_eq!(b.event(), None, "not released before the read-back");
    let sent = b.sent();
    assert!(sent[0].contains("pg_settings"), "{sent:?}");
    b.server(cat(&[
        wire::row_description(&["name", "setting"]),
        row(&["search_path", "a"]),
        wire::command_complete("SELECT 1"),
        ready(TxnStatus::Idle),
    ]));
    assert_eq!(
        b.heard(),
        Vec::<String>::new(),
        "the read-back is the proxy's own"
    );
    assert_eq!(b.event(), Some(Event::Release));
    assert_eq!(
        b.m.client.settings.get("search_path").map(String::as_str),
        Some("a")
    );
    assert_eq!(
        b.srv.settings.get("search_path").map(String::as_str),
        Some("a")
    );
}

#[test]
fn a_transaction_that_sets_nothing_is_released_without_a_read_back() {
    let mut b = Bench::txn();
    b.simple("UPDATE t SET a = 1", "UPDATE 1");
    assert_eq!(b.event(), Some(Event::Release));
    assert!(b.sent().is_empty());
}

#[test]
fn a_settings_change_rolled_back_is_read_back_as_the_server_has_it() {
    let mut b = Bench::txn();
    b.client(wire::query("BEGIN; SET search_path = x; ROLLBACK"));
    b.server(cat(&[
        wire::command_complete("BEGIN"),
        wire::command_complete("SET"),
        wire::command_complete("ROLLBACK"),
        ready(TxnStatus::Idle),
    ]));
    b.sent();
    assert_eq!(b.event(), None);
    b.sent();
    b.server(cat(&[
        wire::row_description(&["name", "setting"]),
        wire::command_complete("SELECT 0"),
        ready(TxnStatus::Idle),
    ]));
    assert_eq!(b.event(), Some(Event::Release));
    assert!(b.m.client.settings.is_empty(), "{:?}", b.m.client.settings);
}

#[test]
fn a_new_server_gets_the_clients_settings_before_the_clients_statement() {
    let mut b = Bench::new(PoolMode::Transaction, &[("search_path", "mine")]);
    b.m.on_client(frames(&wire::query("SELECT 1")).remove(0), None)
        .expect("queued");
    assert_eq!(b.m.event(None, true), Some(Event::NeedServer));
    b.attach();
    let sent = b.sent();
    assert_eq!(
        sent.len(),
        1,
        "only the settings, the statement waits: {sent:?}"
    );
    assert!(sent[0].contains("set_config(E'search_path', E'mine', false)"));
    b.server(cat(&[
        wire::row_description(&["set_config"]),
        row(&["mine"]),
        wire::command_complete("SELECT 1"),
        ready(TxnStatus::Idle),
    ]));
    assert_eq!(b.sent(), vec!["Q SELECT 1"]);
    assert!(
        b.heard().is_empty(),
        "the settings' answers are the proxy's own"
    );
}

#[test]
fn a_server_that_refuses_the_settings_never_runs_the_clients_statement() {
    let mut b = Bench::new(PoolMode::Transaction, &[("search_path", "mine")]);
    b.m.on_client(frames(&wire::query("SELECT 1")).remove(0), None)
        .expect("queued");
    b.attach();
    b.sent();
    b.server(cat(&[
        error(sqlstate::INVALID_PARAMETER_VALUE, "invalid value"),
        ready(TxnStatus::Idle),
    ]));
    assert!(b.sent().is_empty());
    assert!(matches!(b.event(), Some(Event::SyncFailed(_))));
    assert!(!b.srv.settings_known, "that server is reset before reuse");
}

#[test]
fn a_waiting_statement_that_cannot_get_a_server_gets_an_error_and_the_session_goes_on() {
    let mut b = Bench::new(PoolMode::Transaction, &[]);
    for f in frames(&cat(&[wire::query("SELECT 1"), wire::query("SELECT 2")])) {
        b.m.on_client(f, None).expect("queued");
    }
    b.m.fail_waiting(sqlstate::TOO_MANY_CONNECTIONS, "no server", None);
    assert_eq!(b.heard(), vec!["E 53300 no server", "Z I"]);
    assert_eq!(
        b.m.event(None, true),
        Some(Event::NeedServer),
        "SELECT 2 still waits"
    );
}

#[test]
fn another_clients_unnamed_statement_is_never_bound() {
    let mut b = Bench::txn();
    b.client(cat(&[parse("", "SELECT 'mine'"), wire::sync()]));
    b.server(cat(&[wire::parse_complete(), ready(TxnStatus::Idle)]));
    b.sent();
    // Meanwhile another client prepared its own unnamed statement on this server.
    b.srv.unnamed = UnnamedOnServer::Of(u64::MAX);
    b.client(cat(&[bind("", ""), execute(""), wire::sync()]));
    assert_eq!(
        b.sent(),
        vec!["P \"\" SELECT 'mine'", "B \"\" \"\"", "E \"\"", "S"]
    );
}

#[test]
fn a_bind_of_no_unnamed_statement_reaches_a_server_without_one() {
    let mut b = Bench::txn();
    b.srv.unnamed = UnnamedOnServer::Of(u64::MAX);
    b.client(cat(&[bind("", ""), wire::sync()]));
    assert_eq!(b.sent(), vec!["C S \"\"", "B \"\" \"\"", "S"]);
}

#[test]
fn a_duplicate_statement_name_gets_42p05_naming_the_clients_statement() {
    let mut b = Bench::txn();
    b.client(cat(&[parse("s1", "SELECT 1"), wire::sync()]));
    b.server(cat(&[wire::parse_complete(), ready(TxnStatus::Idle)]));
    b.sent();
    b.heard();
    b.client(cat(&[parse("s1", "SELECT 2"), wire::sync()]));
    assert_eq!(
        b.sent(),
        vec![format!("P {:?} SELECT 2", rip("SELECT 1")), "S".into()]
    );
    let said = format!("prepared statement \"{}\" already exists", rip("SELECT 1"));
    b.server(cat(&[
        error(sqlstate::DUPLICATE_PREPARED_STATEMENT, &said),
        ready(TxnStatus::Idle),
    ]));
    assert_eq!(
        b.heard(),
        vec!["E 42P05 prepared statement \"s1\" already exists", "Z I"]
    );
    let kept =
        b.m.client
            .statements
            .get("s1")
            .map(|s| s.parse.query.clone());
    assert_eq!(kept.as_deref(), Some("SELECT 1"), "the first one is kept");
}

#[test]
fn a_statement_whose_parse_failed_is_not_held() {
    let mut b = Bench::txn();
    b.client(cat(&[parse("s1", "SELEC 1"), wire::sync()]));
    b.server(cat(&[
        error(sqlstate::SYNTAX_ERROR, "syntax error"),
        ready(TxnStatus::Idle),
    ]));
    assert!(!b.m.client.statements.contains_key("s1"));
    assert_eq!(b.srv.statements.touch(&rip("SELEC 1")), Presence::Absent);
}

#[test]
fn a_close_skipped_after_an_error_closes_nothing() {
    let mut b = Bench::txn();
    b.client(cat(&[parse("s1", "SELECT 1"), wire::sync()]));
    b.server(cat(&[wire::parse_complete(), ready(TxnStatus::Idle)]));
    b.sent();
    b.heard();
    b.client(cat(&[
        bind("", "nosuch"),
        wire::close(target::STATEMENT, "s1"),
        wire::sync(),
    ]));
    b.server(cat(&[
        error(
            sqlstate::INVALID_SQL_STATEMENT_NAME,
            "prepared statement \"nosuch\" does not exist",
        ),
        ready(TxnStatus::Idle),
    ]));
    assert_eq!(
        b.heard(),
        vec![
            "E 26000 prepared statement \"nosuch\" does not exist",
            "Z I"
        ]
    );
    assert!(b.m.client.statements.contains_key("s1"));
}

#[test]
fn messages_after_an_error_are_dropped_until_the_clients_sync() {
    let mut b = Bench::txn();
    b.client(parse("s1", "SELEC"));
    b.client(wire::describe(target::STATEMENT, "s1"));
    let mut flush = BytesMut::new();
    frontend::flush(&mut flush);
    b.client(flush);
    b.sent();
    b.server(error(sqlstate::SYNTAX_ERROR, "syntax error"));
    b.client(cat(&[
        bind("", "s1"),
        execute(""),
        wire::close(target::STATEMENT, "x"),
    ]));
    assert!(b.sent().is_empty(), "the server would discard them");
    b.client(wire::sync());
    assert_eq!(b.sent(), vec!["S"]);
    b.server(ready(TxnStatus::Idle));
    assert_eq!(b.heard(), vec!["E 42601 syntax error", "Z I"]);
}

#[test]
fn deallocate_all_that_fails_forgets_no_statement() {
    let mut b = Bench::txn();
    b.client(cat(&[parse("s1", "SELECT 1"), wire::sync()]));
    b.server(cat(&[wire::parse_complete(), ready(TxnStatus::Idle)]));
    b.client(wire::query("DEALLOCATE ALL"));
    b.server(cat(&[
        error(
            sqlstate::IN_FAILED_SQL_TRANSACTION,
            "current transaction is aborted",
        ),
        ready(TxnStatus::Failed),
    ]));
    assert!(b.m.client.statements.contains_key("s1"));
    assert_eq!(b.srv.statements.touch(&rip("SELECT 1")), Presence::Present);
}

#[test]
fn deallocate_all_that_succeeds_forgets_every_statement_on_both_sides() {
    let mut b = Bench::txn();
    b.client(cat(&[parse("s1", "SELECT 1"), wire::sync()]));
    b.server(cat(&[wire::parse_complete(), ready(TxnStatus::Idle)]));
    b.simple("DEALLOCATE ALL", "DEALLOCATE ALL");
    assert!(b.m.client.statements.is_empty());
    assert_eq!(b.srv.statements.touch(&rip("SELECT 1")), Presence::Absent);
}

#[test]
fn sql_deallocate_of_a_protocol_statement_is_answered_by_the_proxy() {
    let mut b = Bench::txn();
    b.client(cat(&[parse("_pg3_0", "SELECT 1"), wire::sync()]));
    b.server(cat(&[wire::parse_complete(), ready(TxnStatus::Idle)]));
    b.sent();
    b.heard();
    b.client(wire::query("DEALLOCATE _pg3_0"));
    assert!(b.sent().is_empty());
    assert_eq!(b.heard(), vec!["C DEALLOCATE", "Z I"]);
    assert!(!b.m.client.statements.contains_key("_pg3_0"));
}

#[test]
fn extended_deallocate_of_a_protocol_statement_needs_only_the_sync() {
    let mut b = Bench::txn();
    b.client(cat(&[parse("_pg3_0", "SELECT 1"), wire::sync()]));
    b.server(cat(&[wire::parse_complete(), ready(TxnStatus::Idle)]));
    b.sent();
    b.heard();
    b.client(cat(&[
        parse("", "DEALLOCATE _pg3_0"),
        bind("", ""),
        wire::describe(target::PORTAL, ""),
        execute(""),
        wire::sync(),
    ]));
    assert_eq!(b.sent(), vec!["S"]);
    b.server(ready(TxnStatus::Idle));
    assert_eq!(b.heard(), vec!["1", "2", "n", "C DEALLOCATE", "Z I"]);
    assert!(!b.m.client.statements.contains_key("_pg3_0"));
}

#[test]
fn a_stale_plan_is_closed_and_prepared_again() {
    let mut b = Bench::txn();
    b.client(cat(&[parse("a1", "SELECT * FROM t"), wire::sync()]));
    b.server(cat(&[wire::parse_complete(), ready(TxnStatus::Idle)]));
    b.client(cat(&[bind("", "a1"), execute(""), wire::sync()]));
    b.server(cat(&[
        error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "cached plan must not change result type",
        ),
        ready(TxnStatus::Idle),
    ]));
    assert_eq!(b.m.invalidated, vec![rip("SELECT * FROM t")]);
    b.sent();
    b.client(cat(&[parse("a2", "SELECT * FROM t"), wire::sync()]));
    let r = rip("SELECT * FROM t");
    assert_eq!(
        b.sent(),
        vec![
            format!("C S {r:?}"),
            format!("P {r:?} SELECT * FROM t"),
            "S".into()
        ]
    );
}

#[test]
fn a_reset_restores_the_clients_startup_value_before_its_ready_for_query() {
    let mut b = Bench::new(PoolMode::Transaction, &[("datestyle", "ISO, DMY")]);
    b.srv.settings = b.m.client.settings.clone();
    b.attach();
    b.client(wire::query("RESET DateStyle"));
    let sent = b.sent();
    assert_eq!(sent[0], "Q RESET DateStyle");
    assert!(
        sent[1].contains("set_config(E'datestyle', E'ISO, DMY', false)"),
        "{sent:?}"
    );
    b.server(cat(&[
        wire::parameter_status("DateStyle", "ISO, MDY"),
        wire::command_complete("RESET"),
        ready(TxnStatus::Idle),
    ]));
    assert_eq!(
        b.heard(),
        vec!["S DateStyle=ISO, MDY", "C RESET"],
        "ReadyForQuery held"
    );
    b.server(cat(&[
        wire::parse_complete(),
        wire::bind_complete(),
        wire::parameter_status("DateStyle", "ISO, DMY"),
        row(&["ISO, DMY"]),
        wire::command_complete("SELECT 1"),
        wire::close_complete(),
        wire::close_complete(),
        ready(TxnStatus::Idle),
    ]));
    assert_eq!(b.heard(), vec!["S DateStyle=ISO, DMY", "Z I"]);
}

#[test]
fn a_parameter_status_the_client_knows_is_not_repeated() {
    let mut b = Bench::txn();
    b.m.client
        .reported
        .insert("application_name".into(), "app".into());
    b.server(wire::parameter_status("application_name", "app"));
    assert!(b.heard().is_empty());
    b.server(wire::parameter_status("application_name", "other"));
    assert_eq!(b.heard(), vec!["S application_name=other"]);
}

#[test]
fn a_server_fatal_waits_for_the_relay_to_decide_whether_the_session_ends() {
    let mut b = Bench::txn();
    b.client(wire::query("SELECT pg_terminate_backend(pg_backend_pid())"));
    b.server(wire::error_response(
        "FATAL",
        sqlstate::ADMIN_SHUTDOWN,
        "terminating",
        None,
    ));
    assert!(b.m.server_fatal.is_some());
    assert!(b.heard().is_empty());
}

#[test]
fn a_transaction_pool_client_whose_server_dies_mid_query_hears_one_error_and_goes_on() {
    let mut b = Bench::txn();
    b.client(wire::query("SELECT pg_sleep(10)"));
    b.server(wire::error_response(
        "FATAL",
        sqlstate::ADMIN_SHUTDOWN,
        "terminating",
        None,
    ));
    assert_eq!(b.m.server_lost("connection closed"), super::Lost::GoesOn);
    assert_eq!(
        b.heard(),
        vec!["E 57P01 the server connection was lost: terminating", "Z I"]
    );
    assert_eq!(b.m.phase(), Phase::NoServer);
}

#[test]
fn a_temporary_table_makes_a_lost_server_end_the_session() {
    let mut b = Bench::txn();
    b.simple("CREATE TEMP TABLE t (a int)", "CREATE TABLE");
    assert_eq!(b.m.server_lost("connection closed"), super::Lost::EndsNow);
}

#[test]
fn a_temporary_table_pins_the_client_to_its_server() {
    let mut b = Bench::txn();
    b.simple("CREATE TEMP TABLE t (a int)", "CREATE TABLE");
    assert_eq!(b.event(), None);
    assert_eq!(b.m.client.pinned, Some("temporary table"));
}

#[test]
fn session_mode_sends_statement_names_as_the_client_wrote_them() {
    let mut b = Bench::new(PoolMode::Session, &[]);
    b.attach();
    b.client(cat(&[
        parse("s1", "SELECT 1"),
        bind("", "s1"),
        wire::sync(),
    ]));
    assert_eq!(b.sent(), vec!["P \"s1\" SELECT 1", "B \"\" \"s1\"", "S"]);
    assert_eq!(b.event(), None, "session mode never releases");
}

#[test]
fn a_parse_of_a_statement_the_server_has_parses_it_again_against_the_schema_now() {
    let mut b = Bench::txn();
    let name = rip("SELECT 1");
    b.srv.statements.insert(&name);
    b.client(cat(&[parse("s1", "SELECT 1"), wire::sync()]));
    assert_eq!(
        b.sent(),
        vec![
            format!("C S \"{name}\""),
            format!("P \"{name}\" SELECT 1"),
            "S".to_owned()
        ]
    );
    b.server(cat(&[
        wire::close_complete(),
        wire::parse_complete(),
        ready(TxnStatus::Idle),
    ]));
    assert_eq!(b.heard(), vec!["1", "Z I"]);
}

#[test]
fn a_bind_of_a_statement_the_server_has_does_not_prepare_it_again() {
    let mut b = Bench::txn();
    b.client(cat(&[parse("s1", "SELECT 1"), wire::sync()]));
    b.sent();
    b.server(cat(&[wire::parse_complete(), ready(TxnStatus::Idle)]));
    b.heard();
    b.client(cat(&[bind("", "s1"), wire::sync()]));
    let name = rip("SELECT 1");
    assert_eq!(b.sent(), vec![format!("B \"\" \"{name}\""), "S".to_owned()]);
}

#[test]
fn a_client_that_leaves_after_setting_something_leaves_a_server_to_reset() {
    let mut b = Bench::txn();
    b.simple("SET search_path = x", "SET");
    b.m.leaving(&mut b.srv);
    assert!(!b.srv.settings_known);
}

#[test]
fn a_plain_application_name_goes_ahead_of_the_statement_without_a_wait() {
    let mut b = Bench::new(PoolMode::Transaction, &[("application_name", "app")]);
    b.m.on_client(frames(&wire::query("SELECT 1")).remove(0), None)
        .expect("queued");
    b.attach();
    let sent = b.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1], "Q SELECT 1");
}

#[test]
fn a_server_lost_before_the_settings_were_read_back_ends_the_session_at_its_next_message() {
    let mut b = Bench::txn();
    b.simple("SET search_path = a", "SET");
    assert_eq!(b.event(), None, "the read-back is in flight");
    assert!(matches!(
        b.m.server_lost("connection closed"),
        super::Lost::EndsAtNextMessage(_)
    ));
}

#[test]
fn a_server_lost_with_only_a_close_in_flight_answers_it_and_goes_on() {
    let mut b = Bench::new(PoolMode::Session, &[]);
    b.attach();
    b.client(cat(&[
        wire::close(crate::wire::protocol::target::STATEMENT, "s0"),
        wire::sync(),
    ]));
    assert_eq!(b.m.server_lost("connection closed"), super::Lost::GoesOn);
    assert_eq!(b.heard(), vec!["3", "Z I"]);
}
