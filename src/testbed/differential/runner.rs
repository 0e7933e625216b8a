//! The runner: each client's script through two sides at once, in lock step (a step on
//! the first side, the same step on the second, compare), all clients concurrently; the
//! first step whose answers differ is reported with the script that led there.

use super::conn::RawConn;
use super::generate;
use super::script::Script;
use super::setup::{self, DATABASES};
use super::transcript::Event;
use super::DiffError;
use crate::testbed::Bed;
use crate::wire::TxnStatus;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why: where one side of a comparison sends a client's script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Through the proxy, as the client user (`alice`).
    Proxy,
    /// A private session of its own as the database user (`IAM:alice`): directly to
    /// PostgreSQL, or through the Redshift-like front when the bed has one.
    Oracle,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Proxy => "proxy",
            Side::Oracle => "oracle (private session)",
        })
    }
}

/// Why: one run: which scripts (seed, clients, steps) go to which two sides.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub seed: u64,
    pub clients: usize,
    pub steps: usize,
    pub sides: [Side; 2],
    /// Longest wait for one step's answers.
    pub step_limit: Duration,
}

impl RunSpec {
    /// The proxy against the oracle.
    pub fn proxy_vs_oracle(seed: u64, clients: usize, steps: usize) -> RunSpec {
        RunSpec {
            seed,
            clients,
            steps,
            sides: [Side::Proxy, Side::Oracle],
            step_limit: Duration::from_secs(20),
        }
    }

    /// Two private sessions per client (the harness's self-check).
    pub fn oracle_vs_oracle(seed: u64, clients: usize, steps: usize) -> RunSpec {
        RunSpec {
            sides: [Side::Oracle, Side::Oracle],
            ..Self::proxy_vs_oracle(seed, clients, steps)
        }
    }
}

/// Why: the first step where the two sides answered differently, with all it takes to
/// read and reproduce it.
#[derive(Debug, Clone)]
pub struct Divergence {
    pub seed: u64,
    pub sides: [Side; 2],
    pub script: Script,
    pub at: At,
    pub answers: [Vec<Event>; 2],
}

/// Where a client's answers first differed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// One side accepted the login and the other refused it.
    Login,
    /// At this step (numbered from 0).
    Step(usize),
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub seed: u64,
    /// Steps compared over all clients.
    pub steps_compared: usize,
    pub divergence: Option<Divergence>,
}

/// The scripts of `spec`'s seed for the bed's flavor, run on both sides.
pub async fn run(bed: &Bed, spec: &RunSpec) -> Result<RunOutcome, DiffError> {
    let flavor = setup::flavor_of(bed);
    let scripts = (0..spec.clients)
        .map(|c| generate::script(spec.seed, c, spec.steps, flavor))
        .collect();
    run_scripts(bed, spec, scripts).await
}

/// Runs given scripts (each with its own client number) on both sides of `spec`.
pub async fn run_scripts(
    bed: &Bed,
    spec: &RunSpec,
    scripts: Vec<Script>,
) -> Result<RunOutcome, DiffError> {
    let clients: Vec<usize> = scripts.iter().map(|s| s.client).collect();
    setup::reset_tables(bed, &clients).await?;
    let ends = Arc::new(Ends::of(bed)?);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for script in scripts {
        let (ends, stop, spec) = (ends.clone(), stop.clone(), spec.clone());
        tasks.spawn(async move {
            match open_both(&ends, &spec, &script).await? {
                Ok(conns) => Ok(drive(&spec, script, conns, &stop).await),
                Err(refused) => {
                    stop.store(true, Ordering::Relaxed);
                    Ok((0, Some((Instant::now(), refused))))
                }
            }
        });
    }
    let mut outcome = RunOutcome {
        seed: spec.seed,
        steps_compared: 0,
        divergence: None,
    };
    let mut earliest: Option<Instant> = None;
    while let Some(done) = tasks.join_next().await {
        let (compared, diverged) = done.map_err(|e| DiffError::new("a client task", e))??;
        outcome.steps_compared += compared;
        if let Some((when, divergence)) = diverged {
            if earliest.is_none_or(|e| when < e) {
                earliest = Some(when);
                outcome.divergence = Some(divergence);
            }
        }
    }
    Ok(outcome)
}

/// Runs `scripts` one step at a time in `order` (indices into `scripts`), each step on
/// both sides before the next, logging each client in at its first step: a deterministic
/// interleaving, for reproductions. A client whose script is done is skipped; a step that
/// waits for a server another client holds waits until `spec.step_limit`.
pub async fn run_in_order(
    bed: &Bed,
    spec: &RunSpec,
    scripts: Vec<Script>,
    order: &[usize],
) -> Result<RunOutcome, DiffError> {
    let clients: Vec<usize> = scripts.iter().map(|s| s.client).collect();
    setup::reset_tables(bed, &clients).await?;
    let ends = Ends::of(bed)?;
    let mut conns: Vec<Option<[RawConn; 2]>> = scripts.iter().map(|_| None).collect();
    let mut next = vec![0; scripts.len()];
    let mut outcome = RunOutcome {
        seed: spec.seed,
        steps_compared: 0,
        divergence: None,
    };
    for &who in order {
        let (Some(script), Some(slot)) = (scripts.get(who), conns.get_mut(who)) else {
            continue;
        };
        if next[who] >= script.steps.len() {
            continue;
        }
        if slot.is_none() {
            match open_both(&ends, spec, script).await? {
                Ok(both) => *slot = Some(both),
                Err(refused) => {
                    outcome.divergence = Some(refused);
                    break;
                }
            }
        }
        let Some(both) = slot.as_mut() else {
            continue;
        };
        outcome.steps_compared += 1;
        if let Some(answers) = compare_step(spec, script, next[who], both).await {
            outcome.divergence = Some(divergence(spec, script, At::Step(next[who]), answers));
            break;
        }
        next[who] += 1;
    }
    for [a, b] in conns.into_iter().flatten() {
        a.terminate().await;
        b.terminate().await;
    }
    Ok(outcome)
}

/// Both sides' sessions of `script`, the first side first: through the proxy, that login
/// mints the password the front checks the oracle's login against. `Ok(Err(_))`: one side
/// refused the login the other accepted; `Err`: both refused (the harness is broken).
async fn open_both(
    ends: &Ends,
    spec: &RunSpec,
    script: &Script,
) -> Result<Result<[RawConn; 2], Divergence>, DiffError> {
    let a = ends.open(spec.sides[0], DATABASES[0], script).await;
    let b = ends.open(spec.sides[1], DATABASES[1], script).await;
    let (a, b) = match (a, b) {
        (Ok(a), Ok(b)) => return Ok(Ok([a, b])),
        (Err(e), Err(_)) => return Err(e),
        other => other,
    };
    let mut answers = [vec![], vec![]];
    for (answer, conn) in answers.iter_mut().zip([a, b]) {
        match conn {
            Ok(c) => {
                answer.push(Event::Ready(Some(TxnStatus::Idle), vec![]));
                c.terminate().await;
            }
            Err(e) => answer.push(Event::Closed(e.to_string())),
        }
    }
    Ok(Err(divergence(spec, script, At::Login, answers)))
}

fn divergence(spec: &RunSpec, script: &Script, at: At, answers: [Vec<Event>; 2]) -> Divergence {
    Divergence {
        seed: spec.seed,
        sides: spec.sides,
        script: script.clone(),
        at,
        answers,
    }
}

/// Step `i` of `script` on the first side, then on the second; both answers if they differ.
async fn compare_step(
    spec: &RunSpec,
    script: &Script,
    i: usize,
    [a, b]: &mut [RawConn; 2],
) -> Option<[Vec<Event>; 2]> {
    let step = script.steps.get(i)?;
    let touched = script.touched_through(i);
    let first = a.step(&step.msgs, &touched, spec.step_limit).await;
    let second = b.step(&step.msgs, &touched, spec.step_limit).await;
    (first != second).then_some([first, second])
}

/// One client in lock step: steps compared, and when and where it diverged. It stops at
/// the first difference (telling the other clients to stop) or when another client found
/// one.
async fn drive(
    spec: &RunSpec,
    script: Script,
    mut conns: [RawConn; 2],
    stop: &AtomicBool,
) -> (usize, Option<(Instant, Divergence)>) {
    let mut compared = 0;
    let mut diverged = None;
    for i in 0..script.steps.len() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        compared += 1;
        if let Some(answers) = compare_step(spec, &script, i, &mut conns).await {
            stop.store(true, Ordering::Relaxed);
            let d = divergence(spec, &script, At::Step(i), answers);
            diverged = Some((Instant::now(), d));
            break;
        }
    }
    let [a, b] = conns;
    a.terminate().await;
    b.terminate().await;
    (compared, diverged)
}

/// Why: where each side's sessions are opened on this bed.
struct Ends {
    proxy: SocketAddr,
    postgres: SocketAddr,
    front: Option<crate::cluster::upstream::UpstreamTarget>,
    passwords: crate::testbed::PasswordLookup,
}

impl Ends {
    fn of(bed: &Bed) -> Result<Ends, DiffError> {
        Ok(Ends {
            proxy: bed.proxy_addr,
            postgres: ([127, 0, 0, 1], bed.pg.port()).into(),
            front: setup::front_target(bed)?,
            passwords: bed.emu.password_lookup(),
        })
    }

    async fn open(&self, side: Side, database: &str, s: &Script) -> Result<RawConn, DiffError> {
        let user = s.identity;
        match (side, &self.front) {
            (Side::Proxy, _) => {
                RawConn::plain(self.proxy, user.client_user(), database, &s.startup).await
            }
            (Side::Oracle, None) => {
                RawConn::plain(self.postgres, user.db_user(), database, &s.startup).await
            }
            (Side::Oracle, Some(front)) => {
                // The front checks the newest password: one the proxy minted while this
                // login was under way fails it once.
                match self.front_login(front, database, s).await {
                    Err(_) => self.front_login(front, database, s).await,
                    ok => ok,
                }
            }
        }
    }
}

impl Ends {
    async fn front_login(
        &self,
        front: &crate::cluster::upstream::UpstreamTarget,
        database: &str,
        s: &Script,
    ) -> Result<RawConn, DiffError> {
        let user = s.identity.db_user();
        let password = (self.passwords)(user)
            .ok_or_else(|| DiffError::msg(format!("no password minted for {user}")))?;
        RawConn::tls(front, user, &password, database, &s.startup).await
    }
}

impl Divergence {
    /// Where the two answers first differ (index into both).
    pub fn first_difference(&self) -> usize {
        let [a, b] = &self.answers;
        a.iter().zip(b).take_while(|(x, y)| x == y).count()
    }
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (seed, client) = (self.seed, self.script.client);
        match self.at {
            At::Login => {
                writeln!(f, "answers differ: seed {seed}, client {client}, at login")?;
                f.write_str(&self.script.header())?;
            }
            At::Step(step) => {
                writeln!(
                    f,
                    "answers differ: seed {seed}, client {client}, step {step}"
                )?;
                writeln!(f, "script up to that step:")?;
                f.write_str(&self.script.text_through(step))?;
            }
        }
        let mark = self.first_difference();
        for (side, answers) in self.sides.iter().zip(&self.answers) {
            writeln!(f, "{side} answered:")?;
            for (i, e) in answers.iter().enumerate() {
                let arrow = if i == mark { "->" } else { "  " };
                writeln!(f, "  {arrow} {e}")?;
            }
            if answers.len() == mark {
                writeln!(f, "  -> (nothing more)")?;
            }
        }
        Ok(())
    }
}
