//! Differential tests of pooling: random client scripts (settings in every spelling,
//! transactions and savepoints, failing statements, the extended protocol split over
//! Syncs, prepared statements) run through the proxy and, step by step, through a private
//! session of their own; PostgreSQL (or the Redshift-like front) is the oracle, and every
//! answer must be the same. A failure prints the seed, the client, the step, the script up
//! to it and both answers (and a shrunk script when the client fails alone).
//!
//! The long run: `cargo bench --bench differential -- --minutes 10`.

use redshift_iam_proxy::config::PoolMode;
use redshift_iam_proxy::testbed::differential::{self, shrink, RunSpec};
use redshift_iam_proxy::testbed::Bed;

const CLIENTS: usize = 8;
const STEPS: usize = 40;
const FIXED_SEEDS: [u64; 3] = [1, 2, 3];

/// A seed from the clock, printed so a failure can be replayed.
fn time_seed() -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    eprintln!("time seed: {seed}");
    seed
}

async fn bed(mode: PoolMode, pool_size: usize, redshift_front: bool) -> Bed {
    let bed = Bed::with(differential::bed_options(mode, pool_size, redshift_front)).await;
    differential::prepare(&bed).await.expect("prepare the bed");
    bed
}

/// Runs each seed; panics with the first divergence (and its shrunk form, if any) and the
/// long-run command that replays the seed (`bench_flags`: the bed's pool and front).
async fn assert_no_divergence(
    bed: &Bed,
    seeds: &[u64],
    bench_flags: &str,
    spec: impl Fn(u64) -> RunSpec,
) {
    for &seed in seeds {
        let spec = spec(seed);
        let outcome = differential::run(bed, &spec).await.expect("run");
        if let Some(d) = outcome.divergence {
            let shrunk = shrink::shrink(bed, &spec, &d, 40).await.expect("shrink");
            let shrunk = shrunk.map_or("(does not diverge alone)\n".into(), |s| s.to_string());
            panic!(
                "{d}\nshrunk (the client alone):\n{shrunk}\nreplay (after the earlier seeds {:?} \
                 on the same bed): cargo bench --bench differential -- --seed {seed} --runs 1 \
                 --clients {CLIENTS} --steps {STEPS} {bench_flags}",
                &seeds[..seeds.iter().position(|&s| s == seed).unwrap_or(0)]
            );
        }
    }
}

fn seeds() -> Vec<u64> {
    let mut seeds = FIXED_SEEDS.to_vec();
    seeds.push(time_seed());
    seeds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_finds_no_difference_between_two_private_sessions() {
    let bed = bed(PoolMode::Transaction, 1, false).await;
    assert_no_divergence(&bed, &seeds(), "--oracle-vs-oracle", |seed| {
        RunSpec::oracle_vs_oracle(seed, CLIENTS, STEPS)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oracles_trust_line_leaves_the_proxy_logging_in_over_tls() {
    let bed = bed(PoolMode::Transaction, 1, false).await;
    let c = bed.connect("alice").await.expect("login through the proxy");
    let row = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("the server's TLS state");
    assert!(
        row.get::<_, bool>(0),
        "the proxy's server session is not TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pool_of_one_answers_every_random_script_like_a_private_session() {
    let bed = bed(PoolMode::Transaction, 1, false).await;
    assert_no_divergence(&bed, &seeds(), "--pool-size 1 --mode transaction", |seed| {
        RunSpec::proxy_vs_oracle(seed, CLIENTS, STEPS)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pool_of_two_answers_every_random_script_like_a_private_session() {
    let bed = bed(PoolMode::Transaction, 2, false).await;
    assert_no_divergence(&bed, &seeds(), "--pool-size 2 --mode transaction", |seed| {
        RunSpec::proxy_vs_oracle(seed, CLIENTS, STEPS)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pool_answers_every_random_script_like_a_private_session() {
    // A server per client at a time (4 per identity); servers are reset and reused from
    // one seed's clients to the next.
    let bed = bed(PoolMode::Session, CLIENTS / 2, false).await;
    assert_no_divergence(&bed, &seeds(), "--pool-size 4 --mode session", |seed| {
        RunSpec::proxy_vs_oracle(seed, CLIENTS, STEPS)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pool_behind_the_redshift_front_answers_like_a_private_front_session() {
    let bed = bed(PoolMode::Transaction, 2, true).await;
    assert_no_divergence(
        &bed,
        &seeds(),
        "--pool-size 2 --mode transaction --redshift-front",
        |seed| RunSpec::proxy_vs_oracle(seed, CLIENTS, STEPS),
    )
    .await;
}
