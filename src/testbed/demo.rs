//! `redshift-iam-proxy demo`: the whole product on one machine, no AWS account needed.
//!
//! Starts a throwaway PostgreSQL cluster as the stand-in for Redshift (TLS, SCRAM),
//! the credential-API emulator, and the proxy with two users mapped to different
//! groups; prints the `psql` lines to try; on Ctrl-C or SIGTERM stops everything
//! and removes the cluster directory.

use crate::testbed::{BedOptions, Parts};
use local_cluster::LocalPg;
use redshift_emulator::Emulator;
use std::future::Future;

/// The sample schema, shared with docker-compose.yml.
pub const SCHEMA_SQL: &str = include_str!("../../deploy/demo-schema.sql");
const CLUSTER: &str = "democluster";

/// Why: the demo subcommand's flags (clap).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Port of the proxy on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 5439)]
    pub port: u16,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the demo until `shutdown` completes, then cleans up.
pub async fn run(args: DemoArgs, shutdown: impl Future<Output = ()>) -> Result<(), BoxError> {
    let parts = Parts::start(&BedOptions {
        cluster: CLUSTER.into(),
        proxy_toml: PROXY_TOML.into(),
        ..BedOptions::bare()
    })
    .await?;
    let outcome = run_with(&parts, &args, shutdown).await;
    let dir = parts.pg.data_dir().to_owned();
    parts.stop().await;
    println!("demo stopped; removed {}", dir.display());
    outcome
}

/// The demo's proxy settings over the bed's base: two users mapped to different groups.
const PROXY_TOML: &str = r#"
    [cluster]
    sslmode = "verify-full"
    [[users]]
    client_user = "alice"
    db_groups = ["analysts"]
    [[users]]
    client_user = "bob"
    db_groups = ["engineers"]
    [limits]
    drain_timeout_secs = 2
    [client_tls]
    # A throwaway demo: nothing is kept, so no local CA in the user's state directory.
    local_ca = false
"#;

async fn run_with(
    parts: &Parts,
    args: &DemoArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError> {
    let pg = &parts.pg;
    let admin = pg.admin().await?;
    admin.batch_execute("CREATE DATABASE dev").await?;
    let mut dev = pg.admin_config();
    dev.dbname("dev");
    let (dev_client, conn) = dev.connect(tokio_postgres::NoTls).await?;
    let conn_task = tokio::spawn(conn);
    dev_client.batch_execute(SCHEMA_SQL).await?;
    drop(dev_client);
    let _ = conn_task.await;

    let config = parts.config_with(&format!("listen = \"127.0.0.1:{}\"", args.port))?;
    let proxy = parts.bind_proxy(config).await.map_err(|e| {
        format!("{e} (is another proxy or Redshift tunnel on that port? pass --port N, or --port 0 for any free port)")
    })?;
    let port = proxy.local_addr()?.port();
    print_banner(pg, &parts.emu, port);
    proxy.serve(shutdown).await;
    Ok(())
}

fn print_banner(pg: &LocalPg, emulator: &Emulator, port: u16) {
    let conn = |user: &str| format!("host=127.0.0.1 port={port} user={user} dbname=dev");
    println!(
        "\nredshift-iam-proxy demo is running\n\
         \n  stand-in Redshift : PostgreSQL on {host}:{pgport} (TLS, SCRAM), data directory {dir}\
         \n  credential API    : emulator at {endpoint} (GetClusterCredentials, SigV4-checked)\
         \n  proxy             : 127.0.0.1:{port}  alice -> DbGroups [analysts], bob -> DbGroups [engineers]\
         \n\nTry these (no password is asked; the proxy mints one per user and caches it):\
         \n  psql \"{alice}\" -c \"SELECT current_user, * FROM sales.orders\"\
         \n  psql \"{bob}\" -c \"SELECT current_user, * FROM ops.deployments\"\
         \n  psql \"{alice}\" -c \"SELECT * FROM ops.deployments\"      # refused: alice is not in engineers\
         \n  psql \"{carol}\"                                          # refused: no [[users]] rule for carol\
         \n\nEach login is explained in the log below (new credential or cached, which DbUser).\
         \nPress Ctrl-C to stop; the cluster and its directory are removed.\n",
        host = pg.host(),
        pgport = pg.port(),
        dir = pg.data_dir().display(),
        endpoint = emulator.endpoint_url(),
        alice = conn("alice"),
        bob = conn("bob"),
        carol = conn("carol"),
    );
}
