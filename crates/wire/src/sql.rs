//! What a client's SQL does to its session, read from the statement text.
//!
//! The pool needs to know which statements change session state: `SET`/`RESET` are
//! carried from server to server (transaction mode) or undone at check-in; SQL-level
//! `PREPARE` is deallocated; and some state can be neither carried nor always removed
//! (temporary tables, `SET ROLE`, `LISTEN`, cursors `WITH HOLD`, `set_config`, advisory
//! locks). This is a small lexer, not a parser: it splits statements on `;` outside
//! quotes, comments and dollar-quoted bodies, and looks at their leading words. When in
//! doubt it answers [`Effect::Sticky`], which makes the pool keep the server for that
//! client (transaction mode) and reset or close it afterwards; wrong guesses cost
//! reuse, never isolation.

/// One statement's effect on session state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `SET [SESSION] name {TO|=} value`: `value` is the SQL text after TO/=.
    Set { name: String, value: String },
    /// `RESET name` or `SET name TO DEFAULT`.
    Reset { name: String },
    /// `RESET ALL`.
    ResetAll,
    /// `DISCARD ALL` (PostgreSQL): settings, prepared statements, temp tables gone.
    DiscardAll,
    /// SQL-level `PREPARE name`.
    Prepare { name: String },
    /// `DEALLOCATE [PREPARE] name`.
    Deallocate { name: String },
    /// `DEALLOCATE [PREPARE] ALL`.
    DeallocateAll,
    /// `CALL` of a stored procedure (may change state the proxy cannot see).
    Call,
    /// State the proxy cannot carry between servers; the reason names it.
    Sticky(&'static str),
}

/// Effects of every statement in `sql`, in order (statements without one are skipped).
pub fn classify(sql: &str) -> Vec<Effect> {
    split_statements(sql)
        .into_iter()
        .filter_map(|s| statement_effect(&s))
        .collect()
}

/// The words of each non-empty statement in `sql`: keywords and identifiers outside
/// string literals and comments, as written (a quoted identifier keeps its quotes, so it
/// never equals a keyword). For callers that match statements on their own terms, such
/// as the test bed's Redshift-like front.
pub fn statement_words(sql: &str) -> Vec<Vec<&str>> {
    split_statements(sql)
        .into_iter()
        .map(|s| s.words.iter().map(|w| w.raw).collect::<Vec<_>>())
        .filter(|words| !words.is_empty())
        .collect()
}

/// A statement reduced to its words (outside quotes and comments) and its source text.
struct Statement<'a> {
    words: Vec<Word<'a>>,
    text: &'a str,
    /// Where `text` starts in the whole SQL string (words carry absolute offsets).
    offset: usize,
}

/// A lexical unit: a keyword or identifier with its place (compared case-insensitively,
/// without allocating: this runs on every query in the pooled relay).
#[derive(Debug, Clone)]
struct Word<'a> {
    raw: &'a str,
    start: usize,
    /// A "quoted identifier" (never a keyword).
    quoted: bool,
}

impl Word<'_> {
    fn is(&self, keyword: &str) -> bool {
        !self.quoted && self.raw.eq_ignore_ascii_case(keyword)
    }
}

fn split_statements(sql: &str) -> Vec<Statement<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut words: Vec<Word<'_>> = Vec::new();
    let mut stmt_start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b';' => {
                out.push(Statement {
                    words: std::mem::take(&mut words),
                    text: &sql[stmt_start..i],
                    offset: stmt_start,
                });
                i += 1;
                stmt_start = i;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                // E'…' strings allow backslash escapes; standard strings only ''.
                let escapes = i > 0 && matches!(b[i - 1], b'E' | b'e');
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() {
                    if b[i] == b'"' {
                        if b.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
                let end = i.min(b.len());
                words.push(Word {
                    raw: &sql[start..end],
                    start,
                    quoted: true,
                });
            }
            b'$' => {
                // $tag$ … $tag$ (a positional parameter $1 is just skipped).
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
                    .map(|p| i + 1 + p);
                match tag_end {
                    Some(e) if b[e] == b'$' && !(e > i + 1 && b[i + 1].is_ascii_digit()) => {
                        let tag = &sql[i..=e];
                        let body_start = e + 1;
                        match sql[body_start..].find(tag) {
                            Some(p) => i = body_start + p + tag.len(),
                            None => i = b.len(),
                        }
                    }
                    _ => i += 1,
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'#' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || matches!(b[i], b'_' | b'$' | b'#' | b'.')
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                let raw = &sql[start..i];
                words.push(Word {
                    raw,
                    start,
                    quoted: false,
                });
            }
            _ => i += 1,
        }
    }
    if stmt_start < sql.len() {
        out.push(Statement {
            words,
            text: &sql[stmt_start..],
            offset: stmt_start,
        });
    }
    out
}

fn statement_effect(s: &Statement<'_>) -> Option<Effect> {
    let w = &s.words;
    let first = w.first()?;
    let at = |i: usize, k: &str| w.get(i).is_some_and(|x| x.is(k));
    let any = |ks: &[&str]| w.iter().any(|x| ks.iter().any(|k| x.is(k)));
    // Anywhere in the statement: what no reset or replay can account for.
    if any(&["SET_CONFIG", "PG_CATALOG.SET_CONFIG"]) {
        return Some(Effect::Sticky("set_config()"));
    }
    if any(&[
        "PG_ADVISORY_LOCK",
        "PG_TRY_ADVISORY_LOCK",
        "PG_ADVISORY_LOCK_SHARED",
        "PG_TRY_ADVISORY_LOCK_SHARED",
    ]) {
        return Some(Effect::Sticky("session advisory lock"));
    }
    if any(&["TEMP", "TEMPORARY"]) || w.iter().any(|x| x.raw.starts_with('#')) {
        return Some(Effect::Sticky("temporary table"));
    }
    if first.is("SET") {
        return set_effect(s);
    }
    if first.is("RESET") {
        return Some(if at(1, "ALL") {
            Effect::ResetAll
        } else if at(1, "ROLE") || at(1, "SESSION") {
            Effect::Sticky("RESET ROLE/SESSION AUTHORIZATION")
        } else if at(1, "TIME") && at(2, "ZONE") {
            Effect::Reset {
                name: "timezone".into(),
            }
        } else {
            let name = w.get(1)?;
            if name.quoted {
                return Some(Effect::Sticky("RESET of a quoted name"));
            }
            Effect::Reset {
                name: name.raw.to_ascii_lowercase(),
            }
        });
    }
    if first.is("DISCARD") {
        return Some(if at(1, "ALL") {
            Effect::DiscardAll
        } else {
            Effect::Sticky("DISCARD")
        });
    }
    if first.is("PREPARE") {
        if at(1, "TRANSACTION") {
            return None;
        }
        return w.get(1).map(|n| Effect::Prepare {
            name: n.raw.to_owned(),
        });
    }
    if first.is("DEALLOCATE") {
        let i = if at(1, "PREPARE") { 2 } else { 1 };
        if at(i, "ALL") {
            return Some(Effect::DeallocateAll);
        }
        return w.get(i).map(|n| Effect::Deallocate {
            name: n.raw.to_owned(),
        });
    }
    if first.is("LISTEN") {
        return Some(Effect::Sticky("LISTEN"));
    }
    if first.is("DECLARE") && w.windows(2).any(|p| p[0].is("WITH") && p[1].is("HOLD")) {
        return Some(Effect::Sticky("cursor WITH HOLD"));
    }
    if first.is("CALL") {
        return Some(Effect::Call);
    }
    if first.is("LOAD") {
        return Some(Effect::Sticky("LOAD"));
    }
    // An anonymous block can SET, PREPARE or create anything unseen.
    if first.is("DO") {
        return Some(Effect::Sticky("DO block"));
    }
    None
}

fn set_effect(s: &Statement<'_>) -> Option<Effect> {
    let w = &s.words;
    let at = |i: usize, k: &str| w.get(i).is_some_and(|x| x.is(k));
    let mut i = 1;
    if at(1, "LOCAL") || at(1, "TRANSACTION") || at(1, "CONSTRAINTS") {
        return None;
    }
    if at(1, "SESSION") {
        if at(2, "AUTHORIZATION") {
            return Some(Effect::Sticky("SET SESSION AUTHORIZATION"));
        }
        if at(2, "CHARACTERISTICS") {
            return Some(Effect::Sticky("SET SESSION CHARACTERISTICS"));
        }
        i = 2;
    }
    let name_word = w.get(i)?;
    if name_word.is("ROLE") {
        return Some(Effect::Sticky("SET ROLE"));
    }
    if name_word.is("TIME") && at(i + 1, "ZONE") {
        let zone = w.get(i + 1)?;
        let value = s.text[zone.start - s.offset + zone.raw.len()..].trim();
        return Some(value_effect("timezone".into(), value));
    }
    if name_word.quoted {
        return Some(Effect::Sticky("SET of a quoted name"));
    }
    let name = name_word.raw.to_ascii_lowercase();
    // The value is whatever follows TO or = (the first of them after the name).
    let after_name = name_word.start - s.offset + name_word.raw.len();
    let rest = s.text[after_name..].trim_start();
    let value = if let Some(v) = rest.strip_prefix('=') {
        v
    } else if rest.get(..2).is_some_and(|t| t.eq_ignore_ascii_case("TO")) {
        rest.get(2..).unwrap_or_default()
    } else {
        return Some(Effect::Sticky("SET the proxy cannot read"));
    };
    let value = value.trim();
    if value.is_empty() {
        return Some(Effect::Sticky("SET the proxy cannot read"));
    }
    Some(value_effect(name, value))
}

fn value_effect(name: String, value: &str) -> Effect {
    if value.eq_ignore_ascii_case("DEFAULT") {
        Effect::Reset { name }
    } else {
        Effect::Set {
            name,
            value: value.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str) -> Effect {
        Effect::Set {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn statements_map_to_their_effects() {
        let cases: Vec<(&str, Vec<Effect>)> = vec![
            ("SELECT 1", vec![]),
            ("SET search_path TO a, b", vec![set("search_path", "a, b")]),
            (
                "set statement_timeout = 5000;",
                vec![set("statement_timeout", "5000")],
            ),
            (
                "SET SESSION DateStyle TO 'ISO, DMY'",
                vec![set("datestyle", "'ISO, DMY'")],
            ),
            (
                "SET TIME ZONE 'Europe/Paris'",
                vec![set("timezone", "'Europe/Paris'")],
            ),
            ("SET LOCAL statement_timeout = 1", vec![]),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", vec![]),
            (
                "SET application_name TO DEFAULT",
                vec![Effect::Reset {
                    name: "application_name".into(),
                }],
            ),
            (
                "RESET search_path",
                vec![Effect::Reset {
                    name: "search_path".into(),
                }],
            ),
            (
                "RESET TIME ZONE",
                vec![Effect::Reset {
                    name: "timezone".into(),
                }],
            ),
            ("RESET ALL", vec![Effect::ResetAll]),
            ("DISCARD ALL", vec![Effect::DiscardAll]),
            (
                "PREPARE q AS SELECT 1",
                vec![Effect::Prepare { name: "q".into() }],
            ),
            (
                "DEALLOCATE PREPARE q",
                vec![Effect::Deallocate { name: "q".into() }],
            ),
            ("DEALLOCATE ALL", vec![Effect::DeallocateAll]),
            ("SET ROLE admin", vec![Effect::Sticky("SET ROLE")]),
            (
                "SET SESSION AUTHORIZATION bob",
                vec![Effect::Sticky("SET SESSION AUTHORIZATION")],
            ),
            (
                "CREATE TEMP TABLE t (a int)",
                vec![Effect::Sticky("temporary table")],
            ),
            (
                "create temporary table t as select 1",
                vec![Effect::Sticky("temporary table")],
            ),
            (
                "CREATE TABLE #stage (a int)",
                vec![Effect::Sticky("temporary table")],
            ),
            (
                "SELECT set_config('a.b', 'c', false)",
                vec![Effect::Sticky("set_config()")],
            ),
            (
                "SELECT pg_advisory_lock(1)",
                vec![Effect::Sticky("session advisory lock")],
            ),
            ("LISTEN chan", vec![Effect::Sticky("LISTEN")]),
            (
                "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                vec![Effect::Sticky("cursor WITH HOLD")],
            ),
            ("DECLARE c CURSOR FOR SELECT 1", vec![]),
            ("CALL proc()", vec![Effect::Call]),
            (
                "DO $$ BEGIN EXECUTE 'SET search_path = x'; END $$",
                vec![Effect::Sticky("DO block")],
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(classify(sql), want, "{sql}");
        }
    }

    #[test]
    fn quotes_comments_and_dollar_bodies_hide_keywords() {
        assert_eq!(classify("SELECT 'SET x = 1; temp'"), vec![]);
        assert_eq!(classify("SELECT 1 -- ; SET x = 1\n"), vec![]);
        assert_eq!(classify("/* SET x = 1; /* nested */ */ SELECT 1"), vec![]);
        assert_eq!(
            classify("CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; CREATE TEMP TABLE t(a int) $body$ LANGUAGE sql"),
            vec![]
        );
        assert_eq!(classify("SELECT E'it\\'s; SET a=1'"), vec![]);
        assert_eq!(classify("SELECT $1::text"), vec![]);
    }

    #[test]
    fn each_statement_of_a_multi_statement_query_counts() {
        assert_eq!(
            classify("SET a.x = 1; SELECT 1; RESET a.y"),
            vec![set("a.x", "1"), Effect::Reset { name: "a.y".into() }]
        );
    }

    #[test]
    fn unreadable_set_is_sticky() {
        assert_eq!(
            classify("SET x"),
            vec![Effect::Sticky("SET the proxy cannot read")]
        );
        assert_eq!(
            classify("SET \"Weird\" = 1"),
            vec![Effect::Sticky("SET of a quoted name")]
        );
    }

    #[test]
    fn words_that_merely_contain_temp_are_not_temporary_tables() {
        assert_eq!(classify("SELECT temperature FROM weather"), vec![]);
    }

    #[test]
    fn statement_words_skip_literals_comments_and_empty_statements() {
        assert_eq!(
            statement_words("DISCARD ALL; ; SELECT 'a; b' /* c; d */, \"Q\" -- e\nFROM t"),
            vec![vec!["DISCARD", "ALL"], vec!["SELECT", "\"Q\"", "FROM", "t"]]
        );
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "'",
            "\"",
            "$",
            "$a",
            "$a$",
            "/*",
            "--",
            "SET",
            "SET TIME",
            "SET x =",
            "E'\\",
            "é SET ü = 1",
        ] {
            let _ = classify(s);
        }
    }
}
