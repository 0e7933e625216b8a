//! Transaction pooling gives each client its own session: several clients of one identity
//! share one server, and what one of them does never shows in another's answers. Each test
//! is one statement family a user tripped over, driven by a real client (tokio-postgres,
//! or the raw protocol where drivers never send what PostgreSQL allows).

use crate::support::pooled;
use bytes::{BufMut, Bytes, BytesMut};
use redshift_iam_proxy::config::PoolMode;
use redshift_iam_proxy::testbed::{db_error, wait_for, Bed};
use redshift_iam_proxy::wire;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::Client;

/// A transaction pool of one server and two clients of the same identity on it.
async fn two_clients() -> (Bed, Client, Client) {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let a = bed.connect("alice").await.expect("a logs in");
    let b = bed.connect("alice").await.expect("b logs in");
    (bed, a, b)
}

async fn show(c: &Client, what: &str) -> String {
    let rows = c
        .simple_query(&format!("SHOW {what}"))
        .await
        .unwrap_or_else(|e| panic!("SHOW {what}: {e}"));
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default()
}

async fn run(c: &Client, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// What a private session that never set anything shows for `what`.
async fn default_of(bed: &Bed, what: &str) -> String {
    let fresh = bed.connect("bob").await.expect("a fresh client");
    show(&fresh, what).await
}

#[tokio::test]
async fn a_set_ending_in_a_line_comment_stays_with_its_client() {
    let (bed, a, b) = two_clients().await;
    run(&a, "SET search_path TO a_schema").await;
    run(&b, "SET statement_timeout = 4321").await;
    run(&a, "SET myapp.flag = 'a' -- note").await;
    assert_eq!(show(&a, "search_path").await, "a_schema");
    assert_eq!(show(&a, "myapp.flag").await, "a");
    assert_eq!(show(&a, "statement_timeout").await, "0");
    assert_eq!(
        show(&b, "search_path").await,
        default_of(&bed, "search_path").await
    );
    assert_eq!(show(&b, "statement_timeout").await, "4321ms");
}

#[tokio::test]
async fn every_set_time_zone_form_stays_with_its_client() {
    let (bed, a, b) = two_clients().await;
    run(&a, "SET TIME ZONE INTERVAL '+05:00' HOUR TO MINUTE").await;
    run(&b, "SET TIME ZONE 'Europe/Paris'").await;
    assert_eq!(show(&a, "TimeZone").await, "<+05>-05");
    assert_eq!(show(&b, "TimeZone").await, "Europe/Paris");
    run(&a, "SET TIME ZONE LOCAL").await;
    assert_eq!(
        show(&a, "TimeZone").await,
        default_of(&bed, "TimeZone").await
    );
    assert_eq!(show(&b, "TimeZone").await, "Europe/Paris");
}

#[tokio::test]
async fn a_set_the_server_refuses_changes_nothing_and_leaks_nothing() {
    let (bed, a, b) = two_clients().await;
    run(&a, "SET search_path TO a_schema").await;
    let err = a
        .batch_execute("SET statement_timeout = 'bogus'")
        .await
        .expect_err("refused");
    assert_eq!(db_error(&err).0, "22023");
    run(&b, "SET statement_timeout = 4321").await;
    assert_eq!(show(&a, "search_path").await, "a_schema");
    assert_eq!(show(&a, "statement_timeout").await, "0");
    assert_eq!(
        show(&b, "search_path").await,
        default_of(&bed, "search_path").await
    );
}

#[tokio::test]
async fn a_set_in_a_transaction_that_rolls_back_is_undone() {
    let (bed, a, _b) = two_clients().await;
    let default = default_of(&bed, "search_path").await;
    for script in [
        "BEGIN; SET search_path TO gone; ROLLBACK",
        "BEGIN; SET search_path TO gone; SAVEPOINT s; RELEASE s; ROLLBACK",
        "BEGIN; SAVEPOINT s; SET search_path TO gone; ROLLBACK TO SAVEPOINT s; COMMIT",
    ] {
        run(&a, script).await;
        assert_eq!(show(&a, "search_path").await, default, "{script}");
    }
    run(&a, "BEGIN; SET search_path TO gone").await;
    assert!(a.batch_execute("SELECT 1/0").await.is_err());
    run(&a, "ROLLBACK").await;
    assert_eq!(show(&a, "search_path").await, default, "after an error");
}

#[tokio::test]
async fn a_set_before_a_kept_savepoint_survives_an_error_after_it() {
    let (_bed, a, b) = two_clients().await;
    run(&a, "BEGIN; SET search_path TO kept; SAVEPOINT s").await;
    assert!(a.batch_execute("SELECT 1/0").await.is_err());
    run(&a, "ROLLBACK TO SAVEPOINT s; COMMIT").await;
    run(&b, "SET search_path TO other").await;
    assert_eq!(show(&a, "search_path").await, "kept");
}

#[tokio::test]
async fn reset_inside_a_transaction_returns_to_the_clients_startup_value() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let info = format!(
        "host=127.0.0.1 port={} user=alice dbname=postgres application_name=mine",
        bed.proxy_addr.port()
    );
    let a = redshift_iam_proxy::testbed::connect(&info)
        .await
        .expect("a");
    let b = bed.connect("alice").await.expect("b");
    run(&b, "SET application_name = 'theirs'").await;
    run(
        &a,
        "BEGIN; SET application_name = 'changed'; RESET application_name",
    )
    .await;
    assert_eq!(show(&a, "application_name").await, "mine");
    run(&a, "COMMIT").await;
    assert_eq!(show(&a, "application_name").await, "mine");
    run(&a, "RESET ALL").await;
    assert_eq!(show(&a, "application_name").await, "mine");
}

#[tokio::test]
async fn deallocate_all_in_an_aborted_transaction_forgets_no_statement() {
    let (_bed, a, b) = two_clients().await;
    let st = a.prepare("SELECT 1::int").await.expect("prepared");
    run(&a, "BEGIN").await;
    assert!(a.batch_execute("SELECT 1/0").await.is_err());
    let err = a.batch_execute("DEALLOCATE ALL").await.expect_err("25P02");
    assert_eq!(db_error(&err).0, "25P02");
    run(&a, "ROLLBACK").await;
    let v: i32 = a.query_one(&st, &[]).await.expect("still prepared").get(0);
    assert_eq!(v, 1);
    let again = b
        .prepare("SELECT 1::int")
        .await
        .expect("same text, other client");
    assert_eq!(
        b.query_one(&again, &[])
            .await
            .expect("runs")
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn a_statement_gone_stale_after_ddl_is_prepared_again() {
    let (bed, a, _b) = two_clients().await;
    let admin = bed.pg.admin().await.expect("admin");
    admin
        .batch_execute("CREATE TABLE public.stale (a int); INSERT INTO public.stale VALUES (1); GRANT ALL ON public.stale TO PUBLIC")
        .await
        .expect("table");
    let old = a
        .prepare("SELECT * FROM public.stale")
        .await
        .expect("prepared");
    a.query(&old, &[]).await.expect("runs");
    admin
        .batch_execute("ALTER TABLE public.stale ADD COLUMN b int")
        .await
        .expect("ddl");
    let err = a.query(&old, &[]).await.expect_err("stale");
    assert_eq!(db_error(&err).0, "0A000");
    let new = a
        .prepare("SELECT * FROM public.stale")
        .await
        .expect("again");
    let rows = a.query(&new, &[]).await.expect("fresh plan");
    assert_eq!(rows[0].len(), 2, "the new column is there");
}

#[tokio::test]
async fn another_clients_first_parse_after_ddl_sees_the_new_schema() {
    let (bed, a, b) = two_clients().await;
    let admin = bed.pg.admin().await.expect("admin");
    admin
        .batch_execute("CREATE TABLE public.ddl (a int, b int); INSERT INTO public.ddl VALUES (1, 2); GRANT ALL ON public.ddl TO PUBLIC")
        .await
        .expect("table");
    let old = a
        .prepare("SELECT * FROM public.ddl")
        .await
        .expect("prepared");
    a.query(&old, &[]).await.expect("runs");
    admin
        .batch_execute("ALTER TABLE public.ddl ALTER COLUMN b TYPE text")
        .await
        .expect("ddl");
    let rows = b
        .query("SELECT * FROM public.ddl", &[])
        .await
        .expect("a new Parse means the schema as it is now");
    assert_eq!(rows[0].get::<_, String>(1), "2");
}

#[tokio::test]
async fn a_cancel_while_waiting_for_a_server_fails_the_statement_with_57014() {
    let (bed, a, b) = two_clients().await;
    run(&a, "BEGIN").await;
    let token = b.cancel_token();
    let waiting = tokio::spawn(async move {
        let r = b.batch_execute("SELECT 'never ran'").await;
        (b, r)
    });
    wait_for_waiting_client(&bed).await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    let (b, r) = waiting.await.expect("task");
    assert_eq!(db_error(&r.expect_err("cancelled")).0, "57014");
    run(&a, "COMMIT").await;
    run(&b, "SELECT 1").await;
}

#[tokio::test]
async fn a_checkout_timeout_in_transaction_mode_fails_only_that_statement() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |c| {
        c.pool.checkout_timeout_secs = 1;
    }))
    .await;
    let a = bed.connect("alice").await.expect("a");
    let b = bed.connect("alice").await.expect("b");
    run(&a, "BEGIN").await;
    let err = b.batch_execute("SELECT 1").await.expect_err("no server");
    assert_eq!(db_error(&err).0, "53300");
    run(&a, "COMMIT").await;
    run(&b, "SELECT 1").await;
}

/// Waits until a client of the bed waits for a server.
async fn wait_for_waiting_client(bed: &Bed) {
    let shared = bed.shared.clone().expect("in-process proxy");
    for _ in 0..1000 {
        let waiting: usize = shared.pools.snapshot().iter().map(|(_, c)| c.waiting).sum();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no client started waiting for a server");
}

/// A client speaking the protocol message by message.
struct Raw {
    s: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn login(bed: &Bed, user: &str) -> Raw {
        let s = TcpStream::connect(bed.proxy_addr).await.expect("connect");
        let mut raw = Raw {
            s,
            buf: BytesMut::new(),
        };
        raw.send(&wire::startup_message(&[
            ("user", user),
            ("database", "postgres"),
        ]))
        .await;
        let msgs = raw.until_ready().await;
        assert!(msgs.iter().all(|(t, _)| *t != b'E'), "login: {msgs:?}");
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("send");
    }

    /// The next message, or `None` at end of stream.
    async fn next(&mut self) -> Option<(u8, Bytes)> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    let m = self.buf.split_to(len + 1).freeze();
                    return Some((m[0], m.slice(5..)));
                }
            }
            let n = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                self.s.read_buf(&mut self.buf),
            )
            .await
            .expect("an answer within 20 s")
            .expect("read");
            if n == 0 {
                return None;
            }
        }
    }

    async fn until_ready(&mut self) -> Vec<(u8, Bytes)> {
        let mut out = Vec::new();
        while let Some(m) = self.next().await {
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                break;
            }
        }
        out
    }
}

fn tags(msgs: &[(u8, Bytes)]) -> String {
    msgs.iter().map(|(t, _)| *t as char).collect()
}

fn error_of(msgs: &[(u8, Bytes)]) -> (String, String) {
    msgs.iter()
        .find(|(t, _)| *t == b'E')
        .map(|(_, b)| {
            let f = wire::parse_error_fields(b);
            (f.code, f.message)
        })
        .unwrap_or_default()
}

fn parse_msg(name: &str, query: &str) -> BytesMut {
    wire::Parse {
        name: name.into(),
        query: query.into(),
        query_raw: None,
        param_types: Bytes::from_static(&[0, 0]),
    }
    .encode_as(name)
}

fn bind_msg(statement: &str) -> BytesMut {
    wire::Bind {
        portal: String::new(),
        statement: statement.into(),
        rest: Bytes::from_static(&[0, 0, 0, 0, 0, 0]),
    }
    .encode_for(statement)
}

fn execute_msg() -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u8(b'E');
    out.put_i32(9);
    out.put_u8(0);
    out.put_i32(0);
    out
}

fn first_value(msgs: &[(u8, Bytes)]) -> Option<String> {
    let (_, body) = msgs.iter().find(|(t, _)| *t == b'D')?;
    let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]) as usize;
    Some(String::from_utf8_lossy(&body[6..6 + len]).into_owned())
}

#[tokio::test]
async fn another_clients_unnamed_statement_never_runs() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let mut a = Raw::login(&bed, "alice").await;
    let mut b = Raw::login(&bed, "alice").await;
    a.send(&[parse_msg("", "SELECT 'a'::text"), wire::sync()].concat())
        .await;
    assert_eq!(tags(&a.until_ready().await), "1Z");
    b.send(&[parse_msg("", "SELECT 'b'::text"), wire::sync()].concat())
        .await;
    assert_eq!(tags(&b.until_ready().await), "1Z");
    a.send(&[bind_msg(""), execute_msg(), wire::sync()].concat())
        .await;
    let answer = a.until_ready().await;
    assert_eq!(first_value(&answer).as_deref(), Some("a"), "{answer:?}");
}

#[tokio::test]
async fn a_bind_of_an_unnamed_statement_never_parsed_gets_26000() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let mut a = Raw::login(&bed, "alice").await;
    let mut b = Raw::login(&bed, "alice").await;
    b.send(&[parse_msg("", "SELECT 'b'::text"), wire::sync()].concat())
        .await;
    b.until_ready().await;
    a.send(&[bind_msg(""), execute_msg(), wire::sync()].concat())
        .await;
    let answer = a.until_ready().await;
    assert_eq!(error_of(&answer).0, "26000", "{answer:?}");
}

#[tokio::test]
async fn a_duplicate_statement_name_is_refused_with_42p05_and_the_first_kept() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let mut a = Raw::login(&bed, "alice").await;
    a.send(&[parse_msg("s1", "SELECT 'first'::text"), wire::sync()].concat())
        .await;
    a.until_ready().await;
    a.send(&[parse_msg("s1", "SELECT 'second'::text"), wire::sync()].concat())
        .await;
    let answer = a.until_ready().await;
    assert_eq!(
        error_of(&answer),
        (
            "42P05".into(),
            "prepared statement \"s1\" already exists".into()
        )
    );
    a.send(&[bind_msg("s1"), execute_msg(), wire::sync()].concat())
        .await;
    assert_eq!(
        first_value(&a.until_ready().await).as_deref(),
        Some("first")
    );
}

#[tokio::test]
async fn a_failed_named_parse_with_its_bind_before_sync_is_answered() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let mut a = Raw::login(&bed, "alice").await;
    a.send(
        &[
            parse_msg("bad", "SELEC 1"),
            bind_msg("bad"),
            execute_msg(),
            wire::sync(),
        ]
        .concat(),
    )
    .await;
    let answer = a.until_ready().await;
    assert_eq!(
        (tags(&answer), error_of(&answer).0),
        ("EZ".into(), "42601".into())
    );
}

#[tokio::test]
async fn a_half_closed_client_gets_its_answer_in_every_pooled_mode() {
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let bed = Bed::with(pooled(mode, 1, |_| {})).await;
        let mut a = Raw::login(&bed, "alice").await;
        a.send(&wire::query("SELECT 'answered'::text")).await;
        a.s.shutdown().await.expect("half-close");
        let mut got = Vec::new();
        while let Some(m) = a.next().await {
            got.push(m);
        }
        assert_eq!(
            first_value(&got).as_deref(),
            Some("answered"),
            "{mode:?}: {got:?}"
        );
    }
}

#[tokio::test]
async fn a_server_terminated_mid_query_is_one_error_and_the_session_goes_on() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let admin = bed.pg.admin().await.expect("admin");
    let mut a = Raw::login(&bed, "alice").await;
    a.send(&wire::query("SELECT pg_sleep(30)")).await;
    wait_for(
        &admin,
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
        "the query runs",
    )
    .await;
    admin
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'")
        .await
        .expect("terminated");
    let got = a.until_ready().await;
    let errors: Vec<String> = got
        .iter()
        .filter(|(t, _)| *t == b'E')
        .map(|(_, b)| wire::parse_error_fields(b).code)
        .collect();
    assert_eq!(errors, vec!["57P01".to_owned()]);
    a.send(&wire::query("SELECT 1")).await;
    assert_eq!(tags(&a.until_ready().await), "TDCZ");
}

#[tokio::test]
async fn sql_deallocate_of_a_protocol_statement_works_in_transaction_mode() {
    // psycopg 3 (prepare_threshold) deallocates its protocol statements with SQL.
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let mut a = Raw::login(&bed, "alice").await;
    a.send(&[parse_msg("_pg3_0", "SELECT 1"), wire::sync()].concat())
        .await;
    assert_eq!(tags(&a.until_ready().await), "1Z");
    a.send(&wire::query("DEALLOCATE _pg3_0")).await;
    assert_eq!(tags(&a.until_ready().await), "CZ");
    a.send(&[bind_msg("_pg3_0"), execute_msg(), wire::sync()].concat())
        .await;
    assert_eq!(error_of(&a.until_ready().await).0, "26000");
}

/// A simple Query message with `sql` as raw bytes (any client encoding).
fn raw_query(sql: &[u8]) -> BytesMut {
    let mut m = BytesMut::new();
    m.extend_from_slice(b"Q");
    m.extend_from_slice(&(i32::try_from(sql.len() + 5).unwrap()).to_be_bytes());
    m.extend_from_slice(sql);
    m.extend_from_slice(&[0]);
    m
}

fn data_row_has(msgs: &[(u8, Bytes)], needle: &[u8]) -> bool {
    msgs.iter()
        .any(|(t, b)| *t == b'D' && b.windows(needle.len()).any(|w| w == needle))
}

#[tokio::test]
async fn query_text_in_a_latin1_client_encoding_runs_in_both_protocols() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let mut a = Raw::login(&bed, "alice").await;
    a.send(&wire::query("SET client_encoding = 'LATIN1'")).await;
    assert_eq!(tags(&a.until_ready().await), "CSZ");
    // 'café' in LATIN1: é is the single byte 0xE9, which is not UTF-8.
    a.send(&raw_query(b"SELECT 'caf\xe9'::text")).await;
    let got = a.until_ready().await;
    assert_eq!(tags(&got), "TDCZ");
    assert!(data_row_has(&got, b"caf\xe9"));
    let parse = wire::Parse {
        name: "s1".into(),
        query: String::new(),
        query_raw: Some(Bytes::from_static(b"SELECT 'th\xe9'::text")),
        param_types: Bytes::from_static(&[0, 0]),
    }
    .encode_as("s1");
    a.send(&[parse, bind_msg("s1"), execute_msg(), wire::sync()].concat())
        .await;
    let got = a.until_ready().await;
    assert_eq!(tags(&got), "12DCZ");
    assert!(data_row_has(&got, b"th\xe9"));
}
