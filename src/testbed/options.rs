//! What a bed is made of: the knobs that differ between tests, benchmarks, the soak test
//! and the demo.

use crate::config::Config;
use local_cluster::LocalPg;
use redshift_emulator::EmulatorConfig;

/// Why: a test changes the emulator's configuration (roles, workgroups, custom domains)
/// knowing the cluster it provisions on.
pub type EmulatorTweak = dyn Fn(&mut EmulatorConfig, &LocalPg) + Send + Sync;

/// Why: a test changes the parsed proxy configuration before the in-process proxy starts.
pub type ConfigTweak = Box<dyn FnOnce(&mut Config) + Send>;

/// Roles every test bed starts with: base users and groups, as a Redshift admin would have
/// made them.
pub const TEST_SETUP_SQL: &str = "
    CREATE ROLE alice; CREATE ROLE bob; CREATE ROLE md5user; CREATE ROLE plainuser;
    CREATE ROLE analysts; CREATE ROLE sales;
    CREATE TABLE public.copy_target (id int, payload text);
    GRANT ALL ON public.copy_target TO PUBLIC;
";

/// The proxy settings of a test bed beyond the generated base (bounded AWS calls and
/// handshakes, a short drain, `postgres` as the default database).
pub const TEST_PROXY_TOML: &str = r#"
    [aws]
    timeout_secs = 15
    max_attempts = 3
    [cluster]
    default_database = "postgres"
    [limits]
    handshake_timeout_secs = 20
    drain_timeout_secs = 5
"#;

/// The `[[users]]` rules of a test bed.
pub const TEST_USERS_TOML: &str = r#"
    [[users]]
    client_user = "alice"
    db_groups = ["analysts"]
    [[users]]
    client_user = "auto"
    db_user = "dave"
    auto_create = true
    [[users]]
    client_user = "*"
"#;

/// Why: one description of a bed, so every user of the bed (tests, benchmarks, soak, demo)
/// states only what differs; `default()` is the test bed, `bare()` a bed with nothing extra.
pub struct BedOptions {
    /// Cluster identifier the emulator answers for and the proxy config names.
    pub cluster: String,
    /// Identifiers of more clusters (targets), each its own PostgreSQL started like the
    /// first; the proxy config then lists every cluster as a `[[cluster]]` named after it.
    pub more_clusters: Vec<String>,
    /// SQL run as the cluster admin once PostgreSQL is up (roles, tables).
    pub setup_sql: String,
    /// Proxy settings merged over the generated base config (tables merge, values and
    /// arrays replace).
    pub proxy_toml: String,
    /// The `[[users]]` rules (or any other proxy settings), merged last.
    pub users_toml: String,
    /// IAM actions the bed's access key is refused.
    pub denied_actions: Vec<String>,
    /// pg_hba.conf lines placed before the default TLS/SCRAM lines.
    pub hba_extra: Vec<String>,
    /// Database users the emulator provisions with MD5 instead of SCRAM passwords.
    pub md5_users: Vec<String>,
    /// Applied to the generated config before the in-process proxy starts.
    pub tweak: ConfigTweak,
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
    /// Reach the cluster (or the front) through a [`super::faultline::Faultline`] the test
    /// switches (`Bed::faultline`); the proxy config names its address.
    pub faultline: bool,
}

impl BedOptions {
    /// A bed with nothing a test adds: no roles, no extra pg_hba lines, no MD5 users, no
    /// proxy settings beyond the base and no users (benchmarks, soak, demo).
    pub fn bare() -> Self {
        Self {
            cluster: super::CLUSTER.into(),
            more_clusters: vec![],
            setup_sql: String::new(),
            proxy_toml: String::new(),
            users_toml: String::new(),
            denied_actions: vec![],
            hba_extra: vec![],
            md5_users: vec![],
            tweak: Box::new(|_| {}),
            emulator: Box::new(|_, _| {}),
            pg_port_in_config: false,
            pg_max_connections: 200,
            pg_extra_conf: vec![],
            redshift_front: false,
            faultline: false,
        }
    }
}

impl BedOptions {
    /// A bare bed whose proxy maps any client user to the database user of that name and
    /// logs in to `postgres`: for load (benchmarks, soak).
    pub fn for_load() -> Self {
        Self {
            proxy_toml: "[cluster]\ndefault_database = \"postgres\"\n".into(),
            users_toml: "[[users]]\nclient_user = \"*\"\n".into(),
            ..Self::bare()
        }
    }
}

impl Default for BedOptions {
    fn default() -> Self {
        Self {
            setup_sql: TEST_SETUP_SQL.into(),
            proxy_toml: TEST_PROXY_TOML.into(),
            users_toml: TEST_USERS_TOML.into(),
            hba_extra: vec![
                "hostssl all \"IAM:md5user\" 127.0.0.1/32 md5".into(),
                "hostssl all \"IAM:plainuser\" 127.0.0.1/32 password".into(),
            ],
            md5_users: vec!["IAM:md5user".into()],
            ..Self::bare()
        }
    }
}
