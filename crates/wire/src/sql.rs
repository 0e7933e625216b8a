//! What a client's SQL does to its session, read from the statement text.
//!
//! The pool needs to know which statements may change session state. Settings are not
//! predicted from the text: a statement that *may* change them ([`Effect::Settings`]) makes
//! the pool read them back from the server. The text still says which custom (dotted)
//! settings it names (the server cannot list those), which defaults it restores (`RESET`),
//! what it prepares and deallocates, and what state can be neither carried to another
//! server nor always removed (temporary tables, `SET ROLE`, `LISTEN`, cursors `WITH HOLD`,
//! advisory locks). This is a small lexer, not a parser: it splits statements on `;`
//! outside quotes, comments and dollar-quoted bodies, and looks at their words. When in
//! doubt it answers [`Effect::Sticky`], which makes the pool keep the server for that
//! client (transaction mode) and reset or close it afterwards; wrong guesses cost reuse,
//! never isolation.

/// One statement's effect on session state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The statement may change session settings (`SET`, `RESET`, `set_config`,
    /// `SET LOCAL`, `DISCARD`): their values must be read back from the server.
    Settings,
    /// A custom (dotted, lower-case) setting the statement names; `pg_settings` does not
    /// list those, so it is read back by name.
    Custom(String),
    /// `RESET name`, `SET name TO DEFAULT`, `SET TIME ZONE LOCAL`: the setting (lower case)
    /// returns to its session default.
    Reset(String),
    /// `RESET ALL`.
    ResetAll,
    /// `DISCARD ALL` (PostgreSQL): settings, prepared statements, temp tables gone.
    DiscardAll,
    /// SQL-level `PREPARE name` (the name as PostgreSQL folds it).
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

impl Effect {
    /// Whether the effect means session settings may have changed.
    pub fn touches_settings(&self) -> bool {
        matches!(
            self,
            Effect::Settings
                | Effect::Custom(_)
                | Effect::Reset(_)
                | Effect::ResetAll
                | Effect::DiscardAll
                | Effect::Call
        )
    }
}

/// Effects of every statement in `sql`, in order (statements without one are skipped).
pub fn classify(sql: &str) -> Vec<Effect> {
    let mut out = Vec::new();
    for s in split_statements(sql) {
        statement_effects(&s, &mut out);
    }
    out
}

/// Whether `sql` is one statement that ends a transaction (`COMMIT`, `END`, `ROLLBACK`,
/// `ABORT`, `ROLLBACK TO`, `PREPARE TRANSACTION`, `COMMIT/ROLLBACK PREPARED`): PostgreSQL
/// parses and runs those inside a failed transaction, and refuses everything else (25P02).
pub fn ends_transaction(sql: &str) -> bool {
    let statements: Vec<Statement<'_>> = split_statements(sql)
        .into_iter()
        .filter(|s| !s.words.is_empty())
        .collect();
    let [s] = statements.as_slice() else {
        return false;
    };
    let w = &s.words;
    let at = |i: usize, k: &str| w.get(i).is_some_and(|x| x.is(k));
    at(0, "COMMIT")
        || at(0, "END")
        || at(0, "ROLLBACK")
        || at(0, "ABORT")
        || (at(0, "PREPARE") && at(1, "TRANSACTION"))
}

/// Whether running `sql` (one statement) may return rows: a query, `SHOW`, `EXPLAIN`,
/// `FETCH`, or anything with `RETURNING`. PostgreSQL refuses to describe those in a failed
/// transaction and describes the others.
pub fn may_return_rows(sql: &str) -> bool {
    let words = statement_words(sql);
    let [w] = words.as_slice() else {
        return true;
    };
    let first = w
        .first()
        .map(|f| f.to_ascii_uppercase())
        .unwrap_or_default();
    matches!(
        first.as_str(),
        "SELECT" | "WITH" | "VALUES" | "TABLE" | "SHOW" | "EXPLAIN" | "FETCH" | "("
    ) || w.iter().any(|x| x.eq_ignore_ascii_case("RETURNING"))
}

/// The highest `$n` parameter `sql` refers to (outside quotes and comments): with the
/// declared types, what decides how many parameters a Bind must supply.
pub fn highest_parameter(sql: &str) -> usize {
    let b = sql.as_bytes();
    let (mut i, mut top) = (0, 0usize);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' if b.get(i + 1).is_some_and(u8::is_ascii_digit)
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if let Ok(n) = sql[start..end].parse::<usize>() {
                    top = top.max(n);
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    top
}

/// The statement name of `sql` when it is exactly one `DEALLOCATE [PREPARE] name` (not
/// `ALL`): the pool answers that itself for protocol-level statements.
pub fn single_deallocate(sql: &str) -> Option<String> {
    let statements: Vec<Statement<'_>> = split_statements(sql)
        .into_iter()
        .filter(|s| !s.words.is_empty())
        .collect();
    let [s] = statements.as_slice() else {
        return None;
    };
    let w = &s.words;
    if !w.first()?.is("DEALLOCATE") {
        return None;
    }
    let i = if w.get(1).is_some_and(|x| x.is("PREPARE")) {
        2
    } else {
        1
    };
    let name = w.get(i)?;
    if w.len() != i + 1 || name.is("ALL") {
        return None;
    }
    Some(name.identifier())
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

    /// The name the word stands for, as PostgreSQL reads an identifier: quoted ones as
    /// written (doubled quotes undone), others folded to lower case.
    fn identifier(&self) -> String {
        if self.quoted {
            let inner = self.raw.trim_start_matches('"');
            let inner = inner.strip_suffix('"').unwrap_or(inner);
            inner.replace("\"\"", "\"")
        } else {
            self.raw.to_lowercase()
        }
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

fn statement_effects(s: &Statement<'_>, out: &mut Vec<Effect>) {
    let w = &s.words;
    let Some(first) = w.first() else { return };
    let at = |i: usize, k: &str| w.get(i).is_some_and(|x| x.is(k));
    let any = |ks: &[&str]| w.iter().any(|x| ks.iter().any(|k| x.is(k)));
    // Anywhere in the statement: what no reset or replay can account for.
    if any(&[
        "PG_ADVISORY_LOCK",
        "PG_TRY_ADVISORY_LOCK",
        "PG_ADVISORY_LOCK_SHARED",
        "PG_TRY_ADVISORY_LOCK_SHARED",
    ]) {
        out.push(Effect::Sticky("session advisory lock"));
    }
    if any(&["TEMP", "TEMPORARY"]) || w.iter().any(|x| x.raw.starts_with('#')) {
        out.push(Effect::Sticky("temporary table"));
    }
    set_config_effects(s, out);
    if first.is("SET") {
        return set_effects(s, out);
    }
    if first.is("RESET") {
        if at(1, "ALL") {
            out.extend([Effect::Settings, Effect::ResetAll]);
        } else if at(1, "ROLE") || at(1, "SESSION") {
            out.push(Effect::Sticky("RESET ROLE/SESSION AUTHORIZATION"));
        } else if at(1, "TIME") && at(2, "ZONE") {
            out.extend([Effect::Settings, Effect::Reset("timezone".into())]);
        } else if let Some(name) = setting_name(w, 1) {
            out.push(Effect::Settings);
            push_name(out, name, true);
        } else {
            out.push(Effect::Settings);
        }
        return;
    }
    if first.is("DISCARD") {
        out.push(if at(1, "ALL") {
            Effect::DiscardAll
        } else {
            Effect::Sticky("DISCARD")
        });
        out.push(Effect::Settings);
        return;
    }
    if first.is("PREPARE") {
        if !at(1, "TRANSACTION") {
            if let Some(n) = w.get(1) {
                out.push(Effect::Prepare {
                    name: n.identifier(),
                });
            }
        }
        return;
    }
    if first.is("DEALLOCATE") {
        let i = if at(1, "PREPARE") { 2 } else { 1 };
        if at(i, "ALL") {
            out.push(Effect::DeallocateAll);
        } else if let Some(n) = w.get(i) {
            out.push(Effect::Deallocate {
                name: n.identifier(),
            });
        }
        return;
    }
    if first.is("LISTEN") {
        out.push(Effect::Sticky("LISTEN"));
    } else if first.is("DECLARE") && w.windows(2).any(|p| p[0].is("WITH") && p[1].is("HOLD")) {
        out.push(Effect::Sticky("cursor WITH HOLD"));
    } else if first.is("CALL") {
        out.push(Effect::Call);
    } else if first.is("LOAD") {
        out.push(Effect::Sticky("LOAD"));
    } else if first.is("DO") {
        // An anonymous block can SET, PREPARE or create anything unseen.
        out.push(Effect::Sticky("DO block"));
    }
}

/// `set_config(name, …)` anywhere: settings change; a literal name is known, a computed
/// one cannot be read back if it is a custom setting.
fn set_config_effects(s: &Statement<'_>, out: &mut Vec<Effect>) {
    for word in s.words.iter() {
        if !(word.is("SET_CONFIG") || word.is("PG_CATALOG.SET_CONFIG")) {
            continue;
        }
        out.push(Effect::Settings);
        let after = word.start - s.offset + word.raw.len();
        match first_literal_argument(&s.text[after..]) {
            Some(name) => {
                if name.contains('.') {
                    out.push(Effect::Custom(name.to_lowercase()));
                }
            }
            None => out.push(Effect::Sticky("set_config() with a computed name")),
        }
    }
}

/// The string literal that opens an argument list (`( 'a.b', …`), if it is one.
fn first_literal_argument(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('(')?.trim_start();
    let (escapes, rest) = match rest.strip_prefix(['E', 'e']) {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let mut chars = rest.strip_prefix('\'')?.chars();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' if escapes => out.push(chars.next()?),
            '\'' => {
                let mut peek = chars.clone();
                if peek.next() == Some('\'') {
                    out.push('\'');
                    chars = peek;
                } else {
                    return Some(out);
                }
            }
            c => out.push(c),
        }
    }
    None
}

/// The setting name at word `i` (lower case), if the word can be one.
fn setting_name(w: &[Word<'_>], i: usize) -> Option<String> {
    w.get(i).map(|n| n.identifier().to_lowercase())
}

/// Records that the statement names setting `name` (and restores its default if `reset`).
fn push_name(out: &mut Vec<Effect>, name: String, reset: bool) {
    if name.contains('.') {
        out.push(Effect::Custom(name.clone()));
    }
    if reset {
        out.push(Effect::Reset(name));
    }
}

fn set_effects(s: &Statement<'_>, out: &mut Vec<Effect>) {
    let w = &s.words;
    let at = |i: usize, k: &str| w.get(i).is_some_and(|x| x.is(k));
    if at(1, "TRANSACTION") || at(1, "CONSTRAINTS") {
        return;
    }
    let mut i = 1;
    if at(1, "LOCAL") {
        i = 2;
    } else if at(1, "SESSION") {
        if at(2, "AUTHORIZATION") {
            return out.push(Effect::Sticky("SET SESSION AUTHORIZATION"));
        }
        if at(2, "CHARACTERISTICS") {
            return out.push(Effect::Settings);
        }
        i = 2;
    }
    let local = i == 2 && at(1, "LOCAL");
    if at(i, "ROLE") {
        return out.push(Effect::Sticky("SET ROLE"));
    }
    if at(i, "SESSION") && at(i + 1, "AUTHORIZATION") {
        return out.push(Effect::Sticky("SET SESSION AUTHORIZATION"));
    }
    out.push(Effect::Settings);
    if at(i, "TIME") && at(i + 1, "ZONE") {
        // SET TIME ZONE LOCAL and DEFAULT restore the default.
        if !local && (at(i + 2, "LOCAL") || at(i + 2, "DEFAULT")) {
            out.push(Effect::Reset("timezone".into()));
        }
        return;
    }
    let Some(name) = setting_name(w, i) else {
        return;
    };
    // `SET name TO DEFAULT` / `= DEFAULT`: the value's only word is DEFAULT.
    let value_is_default = w.len() == i + 3 && at(i + 1, "TO") && at(i + 2, "DEFAULT")
        || w.len() == i + 2 && at(i + 1, "DEFAULT");
    push_name(out, name, value_is_default && !local);
}

#[cfg(test)]
mod tests {
    use super::*;
    use Effect::*;

    fn reset(name: &str) -> Effect {
        Reset(name.into())
    }

    fn custom(name: &str) -> Effect {
        Custom(name.into())
    }

    #[test]
    fn statements_map_to_their_effects() {
        let cases: Vec<(&str, Vec<Effect>)> = vec![
            ("SELECT 1", vec![]),
            ("UPDATE t SET a = 1", vec![]),
            ("SET search_path TO a, b", vec![Settings]),
            ("set statement_timeout = 5000;", vec![Settings]),
            ("SET SESSION DateStyle TO 'ISO, DMY'", vec![Settings]),
            ("SET TIME ZONE 'Europe/Paris'", vec![Settings]),
            ("SET TIME ZONE LOCAL", vec![Settings, reset("timezone")]),
            ("SET TIME ZONE DEFAULT", vec![Settings, reset("timezone")]),
            (
                "SET TIME ZONE INTERVAL '+05:00' HOUR TO MINUTE",
                vec![Settings],
            ),
            ("SET LOCAL statement_timeout = 1", vec![Settings]),
            ("SET LOCAL myapp.x = 1", vec![Settings, custom("myapp.x")]),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", vec![]),
            (
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
                vec![Settings],
            ),
            (
                "SET application_name TO DEFAULT",
                vec![Settings, reset("application_name")],
            ),
            (
                "SET search_path = DEFAULT",
                vec![Settings, reset("search_path")],
            ),
            (
                "SET myapp.flag = 'a' -- note",
                vec![Settings, custom("myapp.flag")],
            ),
            (
                "SET \"MyApp.Flag\" = 'a'",
                vec![Settings, custom("myapp.flag")],
            ),
            ("RESET search_path", vec![Settings, reset("search_path")]),
            ("RESET DateStyle", vec![Settings, reset("datestyle")]),
            (
                "RESET myapp.flag",
                vec![Settings, custom("myapp.flag"), reset("myapp.flag")],
            ),
            ("RESET TIME ZONE", vec![Settings, reset("timezone")]),
            ("RESET ALL", vec![Settings, ResetAll]),
            ("DISCARD ALL", vec![DiscardAll, Settings]),
            ("PREPARE q AS SELECT 1", vec![Prepare { name: "q".into() }]),
            (
                "PREPARE \"Q\" AS SELECT 1",
                vec![Prepare { name: "Q".into() }],
            ),
            (
                "DEALLOCATE PREPARE Q",
                vec![Deallocate { name: "q".into() }],
            ),
            ("DEALLOCATE ALL", vec![DeallocateAll]),
            ("SET ROLE admin", vec![Sticky("SET ROLE")]),
            (
                "SET SESSION AUTHORIZATION bob",
                vec![Sticky("SET SESSION AUTHORIZATION")],
            ),
            (
                "CREATE TEMP TABLE t (a int)",
                vec![Sticky("temporary table")],
            ),
            (
                "create temporary table t as select 1",
                vec![Sticky("temporary table")],
            ),
            (
                "CREATE TABLE #stage (a int)",
                vec![Sticky("temporary table")],
            ),
            (
                "SELECT set_config('search_path', 'x', false)",
                vec![Settings],
            ),
            (
                "SELECT pg_catalog.set_config(E'myapp.it''s', 'c', false)",
                vec![Settings, custom("myapp.it's")],
            ),
            (
                "SELECT set_config(name, 'c', false) FROM t",
                vec![Settings, Sticky("set_config() with a computed name")],
            ),
            (
                "SELECT pg_advisory_lock(1)",
                vec![Sticky("session advisory lock")],
            ),
            ("LISTEN chan", vec![Sticky("LISTEN")]),
            (
                "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                vec![Sticky("cursor WITH HOLD")],
            ),
            ("DECLARE c CURSOR FOR SELECT 1", vec![]),
            ("CALL proc()", vec![Call]),
            (
                "DO $$ BEGIN EXECUTE 'SET search_path = x'; END $$",
                vec![Sticky("DO block")],
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
            vec![
                Settings,
                custom("a.x"),
                Settings,
                custom("a.y"),
                reset("a.y")
            ]
        );
    }

    #[test]
    fn touching_settings_is_what_makes_the_pool_read_them_back() {
        let touching: Vec<bool> = [
            Settings,
            custom("a.b"),
            reset("x"),
            ResetAll,
            DiscardAll,
            Call,
            Prepare { name: "p".into() },
            DeallocateAll,
            Sticky("LISTEN"),
        ]
        .iter()
        .map(Effect::touches_settings)
        .collect();
        assert_eq!(
            touching,
            [true, true, true, true, true, true, false, false, false]
        );
    }

    #[test]
    fn a_single_deallocate_names_its_statement() {
        assert_eq!(
            single_deallocate("DEALLOCATE _pg3_0"),
            Some("_pg3_0".into())
        );
        assert_eq!(
            single_deallocate("deallocate prepare \"S 1\" ;"),
            Some("S 1".into())
        );
        assert_eq!(single_deallocate("DEALLOCATE ALL"), None);
        assert_eq!(single_deallocate("DEALLOCATE a; SELECT 1"), None);
        assert_eq!(single_deallocate("SELECT 1"), None);
    }

    #[test]
    fn statements_that_may_return_rows_are_told_apart() {
        assert!(may_return_rows("SELECT 1"));
        assert!(may_return_rows("insert into t values (1) returning id"));
        assert!(!may_return_rows("SET statement_timeout = '7s'"));
        assert!(!may_return_rows("COMMIT"));
    }

    #[test]
    fn the_highest_parameter_is_found_outside_quotes_and_comments() {
        assert_eq!(highest_parameter("SELECT $1::int + $3"), 3);
        assert_eq!(
            highest_parameter("SELECT '$9', \"$8\" -- $7\n/* $6 */ FROM t"),
            0
        );
        assert_eq!(highest_parameter("SELECT a$1 FROM t WHERE x = $2"), 2);
    }

    #[test]
    fn statements_that_end_a_transaction_are_told_apart() {
        for sql in [
            "COMMIT",
            "end",
            "ROLLBACK TO SAVEPOINT a",
            "abort;",
            "PREPARE TRANSACTION 'x'",
            "COMMIT PREPARED 'x'",
        ] {
            assert!(ends_transaction(sql), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "COMMIT; SELECT 1",
            "PREPARE q AS SELECT 1",
            "BEGIN",
            "",
        ] {
            assert!(!ends_transaction(sql), "{sql}");
        }
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
            "SELECT set_config(",
            "SELECT set_config('",
            "SELECT set_config(E'\\",
            "DEALLOCATE",
            "RESET",
        ] {
            let _ = classify(s);
            let _ = single_deallocate(s);
        }
    }
}
