//! The long differential run (not in CI): random client scripts through the proxy and
//! through private sessions of their own, seed after seed, until the time is up; exits
//! non-zero at the first difference, printing it, a shrunk form and the command that
//! replays it.
//!
//! `cargo bench --bench differential -- --minutes 10 [--seed S] [--clients 8] [--steps 40]
//!  [--pool-size 2] [--mode transaction|session] [--redshift-front] [--runs N]
//!  [--keep-going] [--oracle-vs-oracle]`

use redshift_iam_proxy::config::PoolMode;
use redshift_iam_proxy::testbed::differential::{self, shrink, At, Divergence, RunSpec};
use redshift_iam_proxy::testbed::Bed;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Seeds per summary line.
const BATCH: u64 = 10;
/// Runs the shrinker may spend on one difference.
const SHRINK_BUDGET: usize = 150;

const USAGE: &str = "usage: cargo bench --bench differential -- [--minutes N] [--seed S] \
[--clients C] [--steps N] [--pool-size P] [--mode transaction|session] [--redshift-front] \
[--runs N] [--keep-going] [--oracle-vs-oracle]";

/// Why: what the command line asked for.
#[derive(Debug, Clone)]
struct Options {
    minutes: f64,
    seed: u64,
    clients: usize,
    steps: usize,
    pool_size: Option<usize>,
    mode: PoolMode,
    redshift_front: bool,
    /// Stop after this many seeds (a replay), whatever the time.
    runs: Option<u64>,
    /// Go on after a difference, and print each distinct one at the end.
    keep_going: bool,
    /// Two private sessions per client instead of the proxy: checks the harness itself.
    oracle_vs_oracle: bool,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut o = Options {
            minutes: 10.0,
            seed: clock_seed(),
            clients: 8,
            steps: 40,
            pool_size: None,
            mode: PoolMode::Transaction,
            redshift_front: false,
            runs: None,
            keep_going: false,
            oracle_vs_oracle: false,
        };
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--minutes" => o.minutes = number(&flag, &value()?)?,
                "--seed" => o.seed = number(&flag, &value()?)?,
                "--clients" => o.clients = number(&flag, &value()?)?,
                "--steps" => o.steps = number(&flag, &value()?)?,
                "--pool-size" => o.pool_size = Some(number(&flag, &value()?)?),
                "--runs" => o.runs = Some(number(&flag, &value()?)?),
                "--mode" => o.mode = mode(&value()?)?,
                "--redshift-front" => o.redshift_front = true,
                "--keep-going" => o.keep_going = true,
                "--oracle-vs-oracle" => o.oracle_vs_oracle = true,
                // cargo bench passes it to every harness-less bench.
                "--bench" => {}
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(o)
    }

    /// The pool size asked for, else 2 in transaction mode and a server per client of an
    /// identity in session mode (each session-mode client holds one until it ends).
    fn pool_size(&self) -> usize {
        self.pool_size.unwrap_or(match self.mode {
            PoolMode::Session => self.clients.div_ceil(2),
            _ => 2,
        })
    }

    fn spec(&self, seed: u64) -> RunSpec {
        if self.oracle_vs_oracle {
            RunSpec::oracle_vs_oracle(seed, self.clients, self.steps)
        } else {
            RunSpec::proxy_vs_oracle(seed, self.clients, self.steps)
        }
    }

    /// The command that replays `seed` alone.
    fn replay(&self, seed: u64) -> String {
        let mode = match self.mode {
            PoolMode::Session => "session",
            _ => "transaction",
        };
        let mut cmd = format!(
            "cargo bench --bench differential -- --seed {seed} --runs 1 --clients {} --steps {} \
             --pool-size {} --mode {mode}",
            self.clients,
            self.steps,
            self.pool_size()
        );
        if self.redshift_front {
            cmd.push_str(" --redshift-front");
        }
        if self.oracle_vs_oracle {
            cmd.push_str(" --oracle-vs-oracle");
        }
        cmd
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{flag}: not a number: {v}"))
}

fn mode(v: &str) -> Result<PoolMode, String> {
    match v {
        "transaction" => Ok(PoolMode::Transaction),
        "session" => Ok(PoolMode::Session),
        other => Err(format!("--mode {other}: expected transaction or session")),
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why: the differences found so far, one per kind (the diverging step and the first
/// answers that differ), with how often each came up.
#[derive(Default)]
struct Found {
    kinds: BTreeMap<String, (usize, String)>,
}

impl Found {
    fn add(&mut self, kind: String, report: String) {
        self.kinds.entry(kind).or_insert((0, report)).0 += 1;
    }
}

/// A difference, shrunk when the client diverges alone, with the command that replays it,
/// as printed; and its kind.
async fn report(bed: &Bed, o: &Options, spec: &RunSpec, d: &Divergence) -> (String, String) {
    let replay = format!("replay: {}\n", o.replay(d.seed));
    match shrink::shrink(bed, spec, d, SHRINK_BUDGET).await {
        Ok(Some(s)) => (
            kind(&s),
            format!("{d}shrunk (the client alone):\n{s}{replay}"),
        ),
        Ok(None) => (
            kind(d),
            format!("{d}(does not diverge with the client alone)\n{replay}"),
        ),
        Err(e) => (kind(d), format!("{d}(shrinking failed: {e})\n{replay}")),
    }
}

/// What kind of difference: the diverging step's messages and the first answers apart.
fn kind(d: &Divergence) -> String {
    let at = d.first_difference();
    let step = match d.at {
        At::Login => "(login)".to_owned(),
        At::Step(i) => d
            .script
            .steps
            .get(i)
            .map_or(String::new(), |s| s.to_string()),
    };
    let answer = |i: usize| {
        d.answers[i]
            .get(at)
            .map_or("(nothing)".into(), |e| e.to_string())
    };
    format!("{step}\n    {} | {}", answer(0), answer(1))
}

async fn long_run(o: Options) -> bool {
    let bed = Bed::with(differential::bed_options(
        o.mode,
        o.pool_size(),
        o.redshift_front,
    ))
    .await;
    if let Err(e) = differential::prepare(&bed).await {
        eprintln!("cannot prepare the bed: {e}");
        return false;
    }
    eprintln!("differential run: {o:?}, pool size {}", o.pool_size());
    let (started, until) = (Instant::now(), Instant::now() + minutes(o.minutes));
    let mut found = Found::default();
    let (mut seed, mut runs, mut steps) = (o.seed, 0u64, 0usize);
    let more = |runs: u64| o.runs.map_or(Instant::now() < until, |n| runs < n);
    while more(runs) {
        let (batch_start, first) = (Instant::now(), seed);
        for _ in 0..BATCH {
            if !more(runs) {
                break;
            }
            let spec = o.spec(seed);
            let outcome = match differential::run(&bed, &spec).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    eprintln!("seed {seed}: the harness failed: {e}");
                    return false;
                }
            };
            runs += 1;
            seed += 1;
            steps += outcome.steps_compared;
            if let Some(d) = outcome.divergence {
                let (kind, text) = report(&bed, &o, &spec, &d).await;
                if !o.keep_going {
                    println!("{text}");
                    return false;
                }
                found.add(kind, text);
            }
        }
        println!(
            "seeds {first}..={}: {:.1} s; so far {} runs, {steps} steps compared, \
             {} kinds of difference, {:.1} min",
            seed - 1,
            batch_start.elapsed().as_secs_f64(),
            runs,
            found.kinds.len(),
            started.elapsed().as_secs_f64() / 60.0
        );
    }
    for (kind, (count, text)) in &found.kinds {
        println!("=== {count} × {kind}\n{text}");
    }
    found.kinds.is_empty()
}

fn minutes(m: f64) -> Duration {
    Duration::from_secs_f64((m * 60.0).max(0.0))
}

fn main() {
    let o = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    // Everything runs in the main thread's block_on, so the cluster (PDEATHSIG) lives as
    // long as we do.
    if !rt.block_on(long_run(o)) {
        std::process::exit(1);
    }
}
