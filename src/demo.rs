//! `redshift-iam-proxy demo`: the whole product on one machine, no AWS account needed.
//!
//! Starts a throwaway PostgreSQL cluster as the stand-in for Redshift (TLS, SCRAM),
//! the credential-API emulator, and the proxy with two users mapped to different
//! groups; prints the `psql` lines to try; on Ctrl-C or SIGTERM stops everything
//! and removes the cluster directory.

use crate::config::Config;
use crate::credentials::AwsIdentitySource;
use crate::server::Proxy;
use local_cluster::{LocalPg, LocalPgOptions};
use redshift_emulator::{AccessKey, EmulatedCluster, Emulator, EmulatorConfig};
use std::future::Future;

/// The sample schema, shared with docker-compose.yml.
pub const SCHEMA_SQL: &str = include_str!("../deploy/demo-schema.sql");
const DEMO_KEY_ID: &str = "AKIDDEMO";
const DEMO_SECRET: &str = "demo-secret-not-for-production";
const CLUSTER: &str = "democluster";

/// Flags of the demo subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Port of the proxy on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 5439)]
    pub port: u16,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the demo until `shutdown` completes, then cleans up.
pub async fn run(args: DemoArgs, shutdown: impl Future<Output = ()>) -> Result<(), BoxError> {
    let pg = LocalPg::start(LocalPgOptions::default()).await?;
    let outcome = run_with(&pg, &args, shutdown).await;
    let dir = pg.data_dir().to_owned();
    pg.stop().await;
    println!("demo stopped; removed {}", dir.display());
    outcome
}

async fn run_with(
    pg: &LocalPg,
    args: &DemoArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError> {
    let admin = pg.admin().await?;
    admin.batch_execute("CREATE DATABASE dev").await?;
    let mut dev = pg.admin_config();
    dev.dbname("dev");
    let (dev_client, conn) = dev.connect(tokio_postgres::NoTls).await?;
    let conn_task = tokio::spawn(conn);
    dev_client.batch_execute(SCHEMA_SQL).await?;
    drop(dev_client);
    let _ = conn_task.await;

    let emulator = Emulator::start(
        EmulatorConfig {
            region: "us-east-1".into(),
            keys: vec![AccessKey::new(DEMO_KEY_ID, DEMO_SECRET)],
            clusters: vec![EmulatedCluster::local(CLUSTER, pg)],
            md5_users: vec![],
            ..Default::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;

    let config = Config::from_toml(&format!(
        r#"
        listen = "127.0.0.1:{port}"
        [aws]
        region = "us-east-1"
        endpoint_url = "{endpoint}"
        [cluster]
        identifier = "{CLUSTER}"
        sslmode = "verify-full"
        sslrootcert = "{ca}"
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
        "#,
        port = args.port,
        endpoint = emulator.endpoint_url(),
        ca = pg.ca_cert_path().display(),
    ))?;
    let creds =
        aws_credential_types::Credentials::new(DEMO_KEY_ID, DEMO_SECRET, None, None, "demo");
    let proxy = Proxy::bind(config, AwsIdentitySource::Static(creds)).await.map_err(|e| {
        format!("{e} (is another proxy or Redshift tunnel on that port? pass --port N, or --port 0 for any free port)")
    })?;
    let port = proxy.local_addr()?.port();
    print_banner(pg, &emulator, port);
    proxy.serve(shutdown).await;
    emulator.shutdown().await;
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
