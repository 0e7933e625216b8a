//! The seeded script generator. A small model of the client's session (open transaction,
//! savepoints, statement names that may exist) steers it towards sequences that mean
//! something; it need not be exact, since the oracle decides what the right answer is.
//!
//! One thing is left out on purpose: reading a custom setting (`myapp.color`) the client
//! has not set in its session. A PostgreSQL backend keeps every custom name it has seen as
//! a placeholder for good (`DISCARD ALL` and `RESET ALL` keep it, with an empty value), so
//! on a pooled server such a read shows whether *another* client used the name (`''`
//! instead of NULL or error 42704) — a limit of pooling itself, not of this proxy.

use super::msg::{Msg, Target};
use super::script::{schema_of, Flavor, Identity, Script, Step};
use super::vocab::{self, Prepared, Setting};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

/// The script of client `client` in the run of `seed`: `steps` steps (one more when the
/// last pair of steps belongs together), saying only what `flavor` accepts.
pub fn script(seed: u64, client: usize, steps: usize, flavor: Flavor) -> Script {
    let mut g = Gen::new(seed, client, flavor);
    let startup = g.startup(client);
    let mut out: Vec<Step> = Vec::with_capacity(steps + 1);
    while out.len() < steps {
        out.extend(g.next_steps());
    }
    Script {
        client,
        identity: Identity::of_client(client),
        startup,
        steps: out,
    }
}

/// Why: the generator's picture of one client's session.
struct Gen {
    rng: StdRng,
    flavor: Flavor,
    schema: String,
    in_txn: bool,
    savepoints: Vec<String>,
    /// Protocol statement names that may exist, and what they were prepared from.
    statements: BTreeMap<String, &'static Prepared>,
    /// Whether this client uses what keeps it on one server (SQL PREPARE, set_config).
    pins: bool,
    /// Custom settings the client has set in its session (so reading them is fair).
    custom: BTreeSet<&'static str>,
    /// Whether `in_txn == false` is certain. An extended-protocol BEGIN or COMMIT, or a
    /// `BEGIN; …; COMMIT` string sent while a block may have failed (then PostgreSQL skips
    /// the whole string), leaves the model unsure until a standalone COMMIT or ROLLBACK; a
    /// custom setting set meanwhile may never have been set, so it is not counted as set.
    block_known: bool,
    counter: u32,
}

impl Gen {
    fn new(seed: u64, client: usize, flavor: Flavor) -> Gen {
        let mixed = seed ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = StdRng::seed_from_u64(mixed);
        let pins = rng.gen_bool(0.35);
        Gen {
            rng,
            flavor,
            schema: schema_of(client),
            in_txn: false,
            savepoints: vec![],
            statements: BTreeMap::new(),
            pins,
            custom: BTreeSet::new(),
            block_known: true,
            counter: 0,
        }
    }

    fn startup(&mut self, client: usize) -> Vec<(String, String)> {
        let mut params = vec![("application_name".to_owned(), format!("dc{client}"))];
        for (name, values) in vocab::STARTUP {
            if self.rng.gen_bool(0.4) {
                let value = self.pick(values).replace("{s}", &self.schema);
                params.push(((*name).to_owned(), value));
            }
        }
        params
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        *items.choose(&mut self.rng).unwrap_or(&items[0])
    }

    fn fill(&mut self, template: &str) -> String {
        self.counter += 1;
        template
            .replace("{s}", &self.schema)
            .replace("{n}", &(self.counter % 9 + 1).to_string())
    }

    fn fill_pick(&mut self, templates: &[&str]) -> String {
        let template = self.pick(templates);
        self.fill(template)
    }

    /// The next step or two.
    fn next_steps(&mut self) -> Vec<Step> {
        match self.rng.gen_range(0..100) {
            0..=17 => vec![self.set()],
            18..=22 => vec![self.time_zone()],
            23..=24 => vec![self.reset_all()],
            25..=40 => vec![self.read()],
            41..=52 => vec![self.txn()],
            53..=58 => vec![Step::query(self.pick(vocab::FAILING))],
            59..=64 => vec![self.write()],
            65..=70 => vec![self.multi()],
            71..=93 => self.protocol(),
            94..=96 => vec![self.sql_prepared()],
            97 if self.pins => vec![self.set_config()],
            _ => vec![self.session_wide()],
        }
    }

    fn setting(&mut self) -> &'static Setting {
        self.pick(vocab::SETTINGS.iter().collect::<Vec<_>>().as_slice())
    }

    /// A setting's name as written: as documented, lower case or upper case.
    fn spelled(&mut self, name: &str) -> String {
        match self.rng.gen_range(0..5) {
            0 => name.to_lowercase(),
            1 => name.to_uppercase(),
            _ => name.to_owned(),
        }
    }

    fn set(&mut self) -> Step {
        let s = self.setting();
        let name = self.spelled(s.name);
        let value = self.pick(s.values).0;
        let value = self.fill(value);
        let form = self.rng.gen_range(0..10);
        let sql = match form {
            0 => format!("SET {name} TO {value}"),
            1 => format!("SET SESSION {name} = {value}"),
            2 => format!("SET LOCAL {name} = {value}"),
            3 => format!("RESET {name}"),
            4 => format!("SET {name} TO DEFAULT"),
            5 => format!("SET {name} = DEFAULT"),
            6 if !s.refused.is_empty() => format!("SET {name} = {}", self.pick(s.refused)),
            _ => format!("SET {name} = {value}"),
        };
        if is_custom(s) {
            match form {
                3..=5 => {
                    self.custom.remove(s.name);
                }
                0 | 1 | 7.. if self.surely_outside_a_block() => {
                    self.custom.insert(s.name);
                }
                _ => {}
            }
        }
        let sql = self.decorate(sql);
        Step::query(sql).touching(s.reported.as_slice())
    }

    /// A setting to read: any built-in one, or a custom one the client has set.
    fn readable_setting(&mut self) -> &'static Setting {
        let readable: Vec<&'static Setting> = vocab::SETTINGS
            .iter()
            .filter(|s| !is_custom(s) || self.custom.contains(s.name))
            .collect();
        self.pick(&readable)
    }

    /// Comments and spellings a client may wrap a statement in.
    fn decorate(&mut self, sql: String) -> String {
        match self.rng.gen_range(0..12) {
            0 => format!("{sql} -- note"),
            1 => format!("/* lead */ {sql}"),
            2 => format!("{sql} /* tail */"),
            3 if sql.contains(" = ") => sql.replacen(" = ", " = /* c */ ", 1),
            4 => format!("{sql};"),
            5 => format!("{sql}\n-- note on its own line"),
            6 => sql.replacen("SET ", "set ", 1),
            _ => sql,
        }
    }

    fn time_zone(&mut self) -> Step {
        Step::query(self.pick(vocab::TIME_ZONE_FORMS)).touching(&["TimeZone"])
    }

    fn reset_all(&mut self) -> Step {
        self.custom.clear();
        let sql = self.decorate("RESET ALL".into());
        Step::query(sql).touching(&vocab::reported_names())
    }

    fn read(&mut self) -> Step {
        let sql = match self.rng.gen_range(0..6) {
            0 => {
                let name = self.readable_setting().name;
                format!("SHOW {}", self.spelled(name))
            }
            1 => format!("SELECT current_setting('{}')", self.readable_setting().name),
            2 => "SHOW TIME ZONE".to_owned(),
            _ => self.fill_pick(vocab::READS),
        };
        Step::query(sql)
    }

    fn write(&mut self) -> Step {
        let sql = self.fill_pick(vocab::WRITES);
        Step::query(sql)
    }

    fn txn(&mut self) -> Step {
        if !self.in_txn {
            return self.txn_outside();
        }
        let sql = match self.rng.gen_range(0..10) {
            0..=2 => {
                let sp = format!("sp{}", self.savepoints.len() + 1);
                self.savepoints.push(sp.clone());
                format!("SAVEPOINT {sp}")
            }
            3 if !self.savepoints.is_empty() => {
                let at = self.rng.gen_range(0..self.savepoints.len());
                self.savepoints.truncate(at + 1);
                let word = self.pick(&[
                    "ROLLBACK TO SAVEPOINT",
                    "ROLLBACK TO",
                    "rollback to savepoint",
                ]);
                format!("{word} {}", self.savepoints[at])
            }
            4 if !self.savepoints.is_empty() => {
                let at = self.rng.gen_range(0..self.savepoints.len());
                let sp = self.savepoints[at].clone();
                self.savepoints.truncate(at);
                format!("{} {sp}", self.pick(&["RELEASE SAVEPOINT", "RELEASE"]))
            }
            5 => "ROLLBACK TO SAVEPOINT nosuch".to_owned(),
            6 => {
                self.savepoints.clear();
                "COMMIT AND CHAIN".to_owned()
            }
            7 => self.end_txn_alone(&["ROLLBACK", "ABORT", "rollback -- undo"]),
            _ => self.end_txn_alone(&["COMMIT", "END", "COMMIT /* done */"]),
        };
        Step::query(sql)
    }

    fn txn_outside(&mut self) -> Step {
        if self.rng.gen_bool(0.85) {
            self.in_txn = true;
            self.savepoints.clear();
            // Not `BEGIN ISOLATION LEVEL …`: after a RESET restore in a block the generator
            // may think closed, PostgreSQL refuses it (25001), a documented pooling limit.
            let sql = self.pick(&["BEGIN", "START TRANSACTION", "begin -- open"]);
            return Step::query(sql);
        }
        Step::query(self.pick(&[
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT stray",
            "RELEASE SAVEPOINT stray",
            "ROLLBACK TO SAVEPOINT stray",
            "COMMIT AND CHAIN",
        ]))
    }

    /// A standalone COMMIT or ROLLBACK: it ends any block, failed or not.
    fn end_txn_alone(&mut self, words: &[&'static str]) -> String {
        self.block_known = true;
        self.end_txn(words)
    }

    /// Whether a statement sent now surely runs outside a transaction block.
    fn surely_outside_a_block(&self) -> bool {
        !self.in_txn && self.block_known
    }

    fn end_txn(&mut self, words: &[&'static str]) -> String {
        self.in_txn = false;
        self.savepoints.clear();
        self.pick(words).to_owned()
    }

    /// Several statements in one Query (an implicit transaction unless one is open).
    fn multi(&mut self) -> Step {
        // What the statements do depends on whether the others fail: assume nothing new.
        let custom = self.custom.clone();
        let set = self.set();
        self.custom = custom;
        // In a block that may have failed, `BEGIN; …; COMMIT` is skipped whole.
        let was_in_txn = self.in_txn;
        let sql = match self.rng.gen_range(0..6) {
            0 => format!("{}; {}", query_text(&set), self.pick(vocab::FAILING)),
            1 => {
                self.end_txn(&["COMMIT"]);
                self.block_known &= !was_in_txn;
                // A line comment swallows the COMMIT: the block stays open.
                self.in_txn = query_text(&set).contains("--");
                format!("BEGIN; {}; COMMIT", query_text(&set))
            }
            2 => {
                self.end_txn(&["ROLLBACK"]);
                self.block_known &= !was_in_txn;
                self.in_txn = query_text(&set).contains("--");
                format!("BEGIN; {}; ROLLBACK", query_text(&set))
            }
            3 => format!(
                "{}; {}",
                self.fill_pick(vocab::WRITES),
                self.pick(vocab::FAILING)
            ),
            // A documented pooling limit: after a RESET the client's startup value is back
            // at the end of its query string, not for the statements after it in the string.
            _ if restores_a_default(&query_text(&set)) => {
                format!("{}; {}", query_text(&set), self.pick(vocab::FAILING))
            }
            _ => format!("{}; {}", query_text(&set), query_text(&self.read())),
        };
        Step {
            msgs: vec![Msg::Query(sql)],
            ..set
        }
    }

    /// `PREPARE`, `EXECUTE`, `DEALLOCATE` of SQL-prepared names (`q1`…, never a protocol name).
    fn sql_prepared(&mut self) -> Step {
        let k = self.rng.gen_range(1..=3);
        let sql = match self.rng.gen_range(0..4) {
            0 if self.pins => format!("PREPARE q{k} AS SELECT $1::int * {k}"),
            1 if self.pins => format!("PREPARE q{k}(int) AS SELECT $1 + {k}"),
            2 => format!("DEALLOCATE {}q{k}", self.pick(&["", "PREPARE "])),
            _ => format!("EXECUTE q{k}({})", self.rng.gen_range(1..100)),
        };
        Step::query(sql)
    }

    /// `set_config()` in a session or transaction (keeps the client on its server).
    fn set_config(&mut self) -> Step {
        let s = self.setting();
        let value = self.pick(s.values).1;
        let value = self.fill(value).replace('\'', "''");
        let local = self.rng.gen_bool(0.5);
        if is_custom(s) && !local && self.surely_outside_a_block() {
            self.custom.insert(s.name);
        }
        let sql = format!("SELECT set_config('{}', '{value}', {local})", s.name);
        Step::query(sql).touching(s.reported.as_slice())
    }

    /// `DEALLOCATE ALL` or `DISCARD ALL` (PostgreSQL only), when the client has no protocol
    /// statement they would drop too; otherwise a read.
    fn session_wide(&mut self) -> Step {
        if self.flavor != Flavor::Postgres || !self.statements.is_empty() {
            return self.read();
        }
        if self.rng.gen_bool(0.5) {
            Step::query("DEALLOCATE ALL")
        } else {
            self.custom.clear();
            Step::query("DISCARD ALL").touching(&vocab::reported_names())
        }
    }

    fn prepared(&mut self) -> &'static Prepared {
        self.pick(vocab::PREPARED.iter().collect::<Vec<_>>().as_slice())
    }

    /// A statement name for a Parse: unnamed or one of three (so duplicates happen).
    fn parse_name(&mut self) -> String {
        match self.rng.gen_range(0..5) {
            0 | 1 => String::new(),
            n => format!("s{}", n - 1),
        }
    }

    /// A statement name to use: one that may exist, the unnamed one, or an unknown one.
    fn used_name(&mut self) -> String {
        let known: Vec<String> = self.statements.keys().cloned().collect();
        match self.rng.gen_range(0..6) {
            0 => "s9".to_owned(),
            1 | 2 => String::new(),
            _ if !known.is_empty() => self.pick(&known.iter().collect::<Vec<_>>()).clone(),
            _ => "s1".to_owned(),
        }
    }

    fn parse(&mut self, name: &str, p: &'static Prepared) -> Msg {
        if !name.is_empty() {
            self.statements.entry(name.to_owned()).or_insert(p);
        }
        Msg::Parse {
            name: name.to_owned(),
            sql: p.sql.replace("{s}", &self.schema),
            types: p.types.to_vec(),
        }
    }

    fn bind(&mut self, portal: &str, statement: &str, p: Option<&Prepared>) -> Msg {
        // Transaction control through the extended protocol is not modelled.
        if p.is_none_or(|p| matches!(p.sql, "BEGIN" | "COMMIT")) {
            self.block_known = false;
        }
        let params = p.map_or(vec![], |p| {
            p.params.iter().map(|v| Some((*v).to_owned())).collect()
        });
        Msg::Bind {
            portal: portal.to_owned(),
            statement: statement.to_owned(),
            params,
        }
    }

    fn execute(&mut self, portal: &str) -> Msg {
        let max_rows = if self.rng.gen_bool(0.2) { 1 } else { 0 };
        Msg::Execute {
            portal: portal.to_owned(),
            max_rows,
        }
    }

    fn portal(&mut self) -> String {
        if self.in_txn && self.rng.gen_bool(0.3) {
            "p1".to_owned()
        } else {
            String::new()
        }
    }

    /// One extended-protocol exchange, over one step or several.
    fn protocol(&mut self) -> Vec<Step> {
        let p = self.prepared();
        let touches: Vec<&str> = p.touches.to_vec();
        let steps = match self.rng.gen_range(0..10) {
            0 => vec![self.one_shot(p)],
            1 => vec![self.prepare_only(p)],
            2 | 3 => vec![self.use_statement()],
            4 => vec![self.close()],
            5 => self.split_over_syncs(p),
            6 => self.glued(p),
            7 => vec![self.two_syncs(p)],
            8 => vec![self.describe_statement()],
            _ => self.resumed_portal(),
        };
        steps.into_iter().map(|s| s.touching(&touches)).collect()
    }

    fn one_shot(&mut self, p: &'static Prepared) -> Step {
        let (name, portal) = (self.parse_name(), self.portal());
        let mut msgs = vec![self.parse(&name, p), self.bind(&portal, &name, Some(p))];
        if self.rng.gen_bool(0.3) {
            msgs.push(Msg::Describe(Target::Portal, portal.clone()));
        }
        msgs.extend([self.execute(&portal), Msg::Sync]);
        Step::messages(msgs)
    }

    fn prepare_only(&mut self, p: &'static Prepared) -> Step {
        let name = self.parse_name();
        let mut msgs = vec![self.parse(&name, p)];
        if self.rng.gen_bool(0.5) {
            msgs.push(Msg::Describe(Target::Statement, name));
        }
        msgs.push(Msg::Sync);
        Step::messages(msgs)
    }

    fn use_statement(&mut self) -> Step {
        let (name, portal) = (self.used_name(), self.portal());
        let p = self.statements.get(&name).copied();
        let mut msgs = vec![self.bind(&portal, &name, p)];
        if self.rng.gen_bool(0.3) {
            msgs.push(Msg::Describe(Target::Portal, portal.clone()));
        }
        msgs.extend([self.execute(&portal), Msg::Sync]);
        Step::messages(msgs)
    }

    fn close(&mut self) -> Step {
        let msg = if self.rng.gen_bool(0.75) {
            let name = self.used_name();
            self.statements.remove(&name);
            Msg::Close(Target::Statement, name)
        } else {
            Msg::Close(Target::Portal, self.pick(&["", "p1", "p9"]).to_owned())
        };
        Step::messages(vec![msg, Msg::Sync])
    }

    /// `Parse + Sync`, maybe a step between, then `Bind + Execute + Sync`.
    fn split_over_syncs(&mut self, p: &'static Prepared) -> Vec<Step> {
        let name = self.parse_name();
        let mut steps = vec![Step::messages(vec![self.parse(&name, p), Msg::Sync])];
        if self.rng.gen_bool(0.4) {
            steps.push(self.read());
        }
        let msgs = vec![self.bind("", &name, Some(p)), self.execute(""), Msg::Sync];
        steps.push(Step::messages(msgs));
        steps
    }

    /// A batch left open over two steps: `Parse + Bind [+ Flush]`, then `… Execute + Sync`.
    fn glued(&mut self, p: &'static Prepared) -> Vec<Step> {
        let name = self.parse_name();
        let mut first = vec![self.parse(&name, p), self.bind("", &name, Some(p))];
        if self.rng.gen_bool(0.6) {
            first.push(Msg::Flush);
        }
        let mut second = vec![];
        if self.rng.gen_bool(0.4) {
            second.push(Msg::Describe(Target::Portal, String::new()));
        }
        second.extend([self.execute(""), Msg::Sync]);
        let mut open = Step::messages(first);
        open.glued = true;
        vec![open, Step::messages(second)]
    }

    /// `Parse + Sync + Bind + Execute + Sync` in one step.
    fn two_syncs(&mut self, p: &'static Prepared) -> Step {
        let name = self.parse_name();
        let msgs = vec![
            self.parse(&name, p),
            Msg::Sync,
            self.bind("", &name, Some(p)),
            self.execute(""),
            Msg::Sync,
        ];
        Step::messages(msgs)
    }

    fn describe_statement(&mut self) -> Step {
        if self.in_txn {
            // A documented pooling limit: in a failed transaction, a statement the client's
            // current server lacks, with parameter types the client did not declare, cannot
            // be described there (25P02, where PostgreSQL describes it).
            return self.read();
        }
        let name = self.used_name();
        Step::messages(vec![Msg::Describe(Target::Statement, name), Msg::Sync])
    }

    /// In a transaction: a portal read one row at a time over several steps, then closed.
    fn resumed_portal(&mut self) -> Vec<Step> {
        let rows = &vocab::PREPARED[3];
        if !self.in_txn {
            return vec![self.one_shot(rows)];
        }
        let first = vec![
            self.parse("", rows),
            self.bind("p1", "", Some(rows)),
            Msg::Execute {
                portal: "p1".into(),
                max_rows: 1,
            },
            Msg::Sync,
        ];
        let more = Msg::Execute {
            portal: "p1".into(),
            max_rows: 1,
        };
        vec![
            Step::messages(first),
            Step::messages(vec![more, Msg::Sync]),
            Step::messages(vec![Msg::Close(Target::Portal, "p1".into()), Msg::Sync]),
        ]
    }
}

/// Whether `sql` returns a setting to its default (`RESET`, `SET … TO DEFAULT`,
/// `SET TIME ZONE LOCAL`).
fn restores_a_default(sql: &str) -> bool {
    use crate::wire::sql::{classify, Effect};
    classify(sql)
        .iter()
        .any(|e| matches!(e, Effect::Reset(_) | Effect::ResetAll | Effect::DiscardAll))
}

fn is_custom(s: &Setting) -> bool {
    s.name.starts_with("myapp.")
}

/// The SQL of a one-Query step.
fn query_text(step: &Step) -> String {
    match step.msgs.first() {
        Some(Msg::Query(sql)) => sql.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_script() {
        assert_eq!(
            script(7, 3, 40, Flavor::Postgres),
            script(7, 3, 40, Flavor::Postgres)
        );
        assert_ne!(
            script(7, 3, 40, Flavor::Postgres),
            script(8, 3, 40, Flavor::Postgres)
        );
    }

    #[test]
    fn scripts_for_the_front_never_say_what_redshift_refuses() {
        for seed in 0..200 {
            let s = script(seed, 1, 60, Flavor::RedshiftFront);
            for m in s.steps.iter().flat_map(|s| s.msgs.iter()) {
                let text = m.to_string().to_uppercase();
                assert!(
                    !text.contains("DISCARD") && !text.contains("DEALLOCATE ALL"),
                    "{m}"
                );
            }
        }
    }

    #[test]
    fn a_glued_step_is_followed_by_a_step_that_ends_with_sync() {
        for seed in 0..200 {
            let s = script(seed, 0, 60, Flavor::Postgres);
            for pair in s.steps.windows(2) {
                if pair[0].glued {
                    assert_eq!(pair[1].msgs.last(), Some(&Msg::Sync));
                }
            }
            assert!(!s.steps.last().is_some_and(|s| s.glued));
        }
    }

    #[test]
    fn every_family_appears_over_a_few_seeds() {
        let all: Vec<String> = (0..20)
            .flat_map(|seed| script(seed, 2, 40, Flavor::Postgres).steps)
            .map(|s| s.to_string())
            .collect();
        for needle in [
            "SET TIME ZONE INTERVAL",
            "-- note",
            "RESET ALL",
            "SAVEPOINT",
            "ROLLBACK TO",
            "Parse(\"\"",
            "Flush",
            "Close(S",
            "PREPARE q",
            "DISCARD ALL",
            "1/0",
        ] {
            assert!(
                all.iter().any(|s| s.contains(needle)),
                "{needle} never appears"
            );
        }
    }
}
