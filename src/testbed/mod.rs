//! Test bed: a private PostgreSQL cluster (TLS, SCRAM), the credential-API emulator
//! provisioning real role passwords on it, and the proxy in front, all on random ports.
pub mod faultline;
mod redshift_front;

pub use redshift_front::{PasswordLookup, RedshiftFront, REDSHIFT_SERVER_VERSION};

use crate::config::Config;
use crate::credentials::AwsIdentitySource;
use crate::server::Proxy;
use local_cluster::{LocalPg, LocalPgOptions};
use redshift_emulator::{AccessKey, EmulatedCluster, Emulator, EmulatorConfig};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ACCESS_KEY: &str = "AKIDPROXYTEST";
pub const SECRET_KEY: &str = "proxy-test-secret-key";
pub const CLUSTER: &str = "testcluster";

/// Roles every bed starts with: base users and groups, as a Redshift admin would have made them.
const SETUP_SQL: &str = "
    CREATE ROLE alice; CREATE ROLE bob; CREATE ROLE md5user; CREATE ROLE plainuser;
    CREATE ROLE analysts; CREATE ROLE sales;
    CREATE TABLE public.copy_target (id int, payload text);
    GRANT ALL ON public.copy_target TO PUBLIC;
";

/// Changes a test makes to the emulator's configuration, knowing the cluster.
pub type EmulatorTweak = dyn Fn(&mut EmulatorConfig, &LocalPg) + Send + Sync;

/// Knobs a test can turn before the bed starts.
pub struct BedOptions {
    pub users_toml: String,
    pub denied_actions: Vec<String>,
    pub hba_extra: Vec<String>,
    pub md5_users: Vec<String>,
    /// Applied to the generated config before the proxy starts.
    pub tweak: Box<dyn FnOnce(&mut Config) + Send>,
    /// Applied to the emulator's configuration (roles, workgroups, custom domains).
    pub emulator: Box<EmulatorTweak>,
    /// Put the cluster's port in the proxy config (for custom-domain targets).
    pub pg_port_in_config: bool,
    /// PostgreSQL max_connections and extra postgresql.conf lines.
    pub pg_max_connections: u32,
    pub pg_extra_conf: Vec<String>,
    /// Put a Redshift-like front (TLS only, auth code 13, `server_version` 8.0.2, Redshift's
    /// refusals) in front of the cluster: DescribeClusters returns the front's endpoint.
    pub redshift_front: bool,
}

impl Default for BedOptions {
    fn default() -> Self {
        Self {
            users_toml: r#"
                [[users]]
                client_user = "alice"
                db_groups = ["analysts"]
                [[users]]
                client_user = "auto"
                db_user = "dave"
                auto_create = true
                [[users]]
                client_user = "*"
            "#
            .into(),
            denied_actions: vec![],
            hba_extra: vec![
                "hostssl all \"IAM:md5user\" 127.0.0.1/32 md5".into(),
                "hostssl all \"IAM:plainuser\" 127.0.0.1/32 password".into(),
            ],
            md5_users: vec!["IAM:md5user".into()],
            tweak: Box::new(|_| {}),
            emulator: Box::new(|_, _| {}),
            pg_port_in_config: false,
            pg_max_connections: 200,
            pg_extra_conf: vec![],
            redshift_front: false,
        }
    }
}

/// A running PostgreSQL + emulator + proxy.
pub struct Bed {
    pub pg: LocalPg,
    /// The Redshift-like front the proxy reaches the cluster through (`BedOptions::redshift_front`).
    pub front: Option<RedshiftFront>,
    pub emu: Emulator,
    pub proxy_addr: SocketAddr,
    pub config: Config,
    pub shared: Option<Arc<crate::session::Shared>>,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<()>>,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// PostgreSQL and the emulator, without a Redshift-like front.
pub async fn start_pg_and_emulator(opts: &BedOptions) -> (LocalPg, Emulator) {
    assert!(
        !opts.redshift_front,
        "the front needs a Bed (Bed::with) to stay alive"
    );
    let (pg, _front, emu) = start_parts(opts).await;
    (pg, emu)
}

/// PostgreSQL, the front when asked for (its endpoint is the cluster's in the emulator), and
/// the emulator, whose minted passwords the front checks logins against.
pub async fn start_parts(opts: &BedOptions) -> (LocalPg, Option<RedshiftFront>, Emulator) {
    init_tracing();
    let pg = LocalPg::start(LocalPgOptions {
        hba_extra: opts.hba_extra.clone(),
        max_connections: opts.pg_max_connections,
        extra_conf: opts.pg_extra_conf.clone(),
    })
    .await
    .expect("start PostgreSQL");
    let admin = pg.admin().await.expect("admin connection");
    admin.batch_execute(SETUP_SQL).await.expect("setup SQL");
    // The front starts before the emulator (whose cluster endpoint it is), so its password
    // lookup is bound to the emulator once that runs.
    let lookup: Arc<OnceLock<PasswordLookup>> = Arc::default();
    let front = if opts.redshift_front {
        let bound = lookup.clone();
        let passwords: PasswordLookup =
            Arc::new(move |role: &str| bound.get().and_then(|lookup| lookup(role)));
        Some(
            RedshiftFront::start(&pg, passwords)
                .await
                .expect("start the Redshift-like front"),
        )
    } else {
        None
    };
    let mut cluster = EmulatedCluster::local(CLUSTER, &pg);
    if let Some(front) = &front {
        cluster.host = front.host().into();
        cluster.port = front.port();
    }
    let mut emu_config = EmulatorConfig {
        region: "us-east-1".into(),
        keys: vec![AccessKey {
            arn: redshift_emulator::DEFAULT_KEY_ARN.into(),
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
            session_token: None,
            denied_actions: opts.denied_actions.clone(),
        }],
        clusters: vec![cluster],
        md5_users: opts.md5_users.clone(),
        ..Default::default()
    };
    (opts.emulator)(&mut emu_config, &pg);
    let emu = Emulator::start(emu_config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start emulator");
    let _ = lookup.set(emu.password_lookup());
    (pg, front, emu)
}

/// The proxy configuration for a bed (listening on a random loopback port).
pub fn proxy_config_toml(pg: &LocalPg, emu: &Emulator, users_toml: &str) -> String {
    format!(
        r#"
        listen = "127.0.0.1:0"
        [aws]
        region = "us-east-1"
        endpoint_url = "{endpoint}"
        timeout_secs = 15
        max_attempts = 3
        [cluster]
        identifier = "{CLUSTER}"
        sslrootcert = "{ca}"
        default_database = "postgres"
        [limits]
        handshake_timeout_secs = 20
        drain_timeout_secs = 5
        [client_tls]
        state_dir = "{state}"
        {users_toml}
        "#,
        endpoint = emu.endpoint_url(),
        ca = pg.ca_cert_path().display(),
        // The local CA lives with the bed's cluster, never in the user's home.
        state = pg.ca_cert_path().with_file_name("proxy-state").display(),
    )
}

impl Bed {
    pub async fn start() -> Bed {
        Self::with(BedOptions::default()).await
    }

    pub async fn with(opts: BedOptions) -> Bed {
        let (pg, front, emu) = start_parts(&opts).await;
        let mut bed = Bed {
            pg,
            front,
            emu,
            proxy_addr: "127.0.0.1:0".parse().expect("addr"),
            config: Config::from_toml("[cluster]\nidentifier = \"x\"").expect("config"),
            shared: None,
            stop: None,
            join: None,
        };
        let users = opts.users_toml.clone();
        let port = bed.front.as_ref().map_or(bed.pg.port(), |f| f.port());
        let (pin, tweak) = (opts.pg_port_in_config, opts.tweak);
        bed.start_proxy(
            &users,
            Box::new(move |c| {
                if pin {
                    c.cluster[0].port = Some(port);
                }
                tweak(c)
            }),
        )
        .await;
        bed
    }

    /// (Re)starts the proxy of this bed with another configuration; the old one is stopped.
    pub async fn start_proxy(
        &mut self,
        users_toml: &str,
        tweak: Box<dyn FnOnce(&mut Config) + Send>,
    ) {
        self.stop_proxy().await;
        let mut config =
            Config::from_toml(&proxy_config_toml(&self.pg, &self.emu, users_toml)).expect("config");
        tweak(&mut config);
        config.validate().expect("tweaked config is valid");
        let creds =
            aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
        let proxy = Proxy::bind(config.clone(), AwsIdentitySource::Static(creds))
            .await
            .expect("proxy binds");
        self.proxy_addr = proxy.local_addr().expect("addr");
        self.shared = Some(proxy.shared());
        let (tx, rx) = oneshot::channel::<()>();
        self.join = Some(tokio::spawn(proxy.serve(async move {
            let _ = rx.await;
        })));
        self.stop = Some(tx);
        self.config = config;
    }

    /// libpq-style connection string to the proxy (no password, no TLS).
    pub fn conninfo(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres application_name=proxytest",
            self.proxy_addr.port()
        )
    }

    /// A tokio-postgres client logged in through the proxy.
    pub async fn connect(
        &self,
        user: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.conninfo(user), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    pub fn get_credentials_calls(&self) -> u64 {
        self.emu.call_count("GetClusterCredentials")
    }

    /// Stops the proxy (graceful) and waits for it.
    pub async fn stop_proxy(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), j).await;
        }
    }
}

/// The SQLSTATE and message of a failed connect or query.
pub fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
        None => ("".into(), e.to_string()),
    }
}
