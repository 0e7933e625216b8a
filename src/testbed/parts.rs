//! The parts of a bed: a private PostgreSQL cluster (TLS, SCRAM), optionally the
//! Redshift-like front before it, and the credential-API emulator provisioning real role
//! passwords on it and stopping/starting the cluster as it is paused and resumed.

use super::config::{base_toml, merge_toml};
use super::{
    BedError, BedOptions, PasswordLookup, ProxyProcess, RedshiftFront, ACCESS_KEY, SECRET_KEY,
};
use crate::app::server::Proxy;
use crate::aws::credentials::AwsIdentitySource;
use crate::config::Config;
use local_cluster::{LocalPg, LocalPgOptions};
use redshift_emulator::{AccessKey, EmulatedCluster, Emulator, EmulatorConfig};
use std::sync::{Arc, OnceLock};

/// Why: everything but the proxy, started once from [`BedOptions`], so an in-process
/// proxy, the proxy binary, a benchmark or the demo all reach the same cluster and API.
pub struct Parts {
    pub pg: LocalPg,
    /// The Redshift-like front the proxy reaches the cluster through (`BedOptions::redshift_front`).
    pub front: Option<RedshiftFront>,
    pub emu: Emulator,
    /// The clusters of `BedOptions::more_clusters`, by identifier.
    pub more_clusters: Vec<(String, LocalPg)>,
    emulator_config: EmulatorConfig,
    cluster: String,
    proxy_toml: String,
    users_toml: String,
}

impl Parts {
    /// PostgreSQL with `setup_sql` run, the front when asked for (its endpoint is the
    /// cluster's in the emulator), and the emulator, whose minted passwords the front
    /// checks logins against.
    pub async fn start(opts: &BedOptions) -> Result<Parts, BedError> {
        let pg = start_cluster(opts).await?;
        let mut more_clusters = Vec::new();
        for id in &opts.more_clusters {
            more_clusters.push((id.clone(), start_cluster(opts).await?));
        }
        // The front starts before the emulator (whose cluster endpoint it is), so its
        // password lookup is bound to the emulator once that runs.
        let lookup: Arc<OnceLock<PasswordLookup>> = Arc::default();
        let front = if opts.redshift_front {
            let bound = lookup.clone();
            let passwords: PasswordLookup =
                Arc::new(move |role: &str| bound.get().and_then(|lookup| lookup(role)));
            Some(
                RedshiftFront::start(&pg, passwords)
                    .await
                    .map_err(|e| BedError::new("start the Redshift-like front", e))?,
            )
        } else {
            None
        };
        let mut cluster = EmulatedCluster::local(opts.cluster.clone(), &pg);
        if let Some(front) = &front {
            cluster.host = front.host().into();
            cluster.port = front.port();
        }
        let mut emu_config = EmulatorConfig {
            region: "us-east-1".into(),
            keys: vec![AccessKey {
                denied_actions: opts.denied_actions.clone(),
                ..AccessKey::new(ACCESS_KEY, SECRET_KEY)
            }],
            clusters: std::iter::once(cluster)
                .chain(
                    more_clusters
                        .iter()
                        .map(|(id, pg)| EmulatedCluster::local(id.clone(), pg)),
                )
                .collect(),
            md5_users: opts.md5_users.clone(),
            ..Default::default()
        };
        (opts.emulator)(&mut emu_config, &pg);
        let emu = Emulator::start(emu_config.clone(), ([127, 0, 0, 1], 0).into())
            .await
            .map_err(|e| BedError::new("start the credential-API emulator", e))?;
        let _ = lookup.set(emu.password_lookup());
        // Pausing, resuming or rebooting a cluster in the emulator stops and starts its
        // PostgreSQL to match (see `Parts::pause_cluster`).
        emu.set_cluster_power(&opts.cluster, Arc::new(pg.power()));
        for (id, pg) in &more_clusters {
            emu.set_cluster_power(id, Arc::new(pg.power()));
        }
        Ok(Parts {
            pg,
            front,
            emu,
            more_clusters,
            emulator_config: emu_config,
            cluster: opts.cluster.clone(),
            proxy_toml: opts.proxy_toml.clone(),
            users_toml: opts.users_toml.clone(),
        })
    }

    /// The proxy configuration of this bed: the generated base, the options' `proxy_toml`
    /// and `users_toml`.
    pub fn config_toml(&self) -> Result<String, BedError> {
        self.config_toml_with("")
    }

    /// [`Parts::config_toml`] with `fragment` merged last (tables merge, values and arrays
    /// replace), e.g. a fixed `listen`, a `[pool]` table or other `[[users]]`.
    pub fn config_toml_with(&self, fragment: &str) -> Result<String, BedError> {
        Ok(self.config_table_with(fragment)?.to_string())
    }

    fn config_table_with(&self, fragment: &str) -> Result<toml::Table, BedError> {
        let clusters: Vec<(&str, &std::path::Path)> =
            std::iter::once((self.cluster.as_str(), self.pg.ca_cert_path()))
                .chain(
                    self.more_clusters
                        .iter()
                        .map(|(id, pg)| (id.as_str(), pg.ca_cert_path())),
                )
                .collect();
        let mut toml = base_toml(&self.emu.endpoint_url(), &clusters);
        for layer in [&self.proxy_toml, &self.users_toml, fragment] {
            merge_toml(&mut toml, layer)?;
        }
        Ok(toml)
    }

    /// The proxy binary `bin` with [`Parts::config_toml_with`] `fragment`, listening on a
    /// free loopback port chosen here (so it is ready once that port accepts, whatever
    /// `rust_log` filters out).
    pub fn start_binary(
        &self,
        bin: &std::path::Path,
        fragment: &str,
        rust_log: Option<&str>,
    ) -> Result<ProxyProcess, BedError> {
        let mut toml = self.config_table_with(fragment)?;
        toml.insert(
            "listen".into(),
            format!("127.0.0.1:{}", super::free_port()?).into(),
        );
        ProxyProcess::start(bin, &toml.to_string(), rust_log)
    }

    /// The parsed configuration of [`Parts::config_toml_with`] (validated when bound).
    pub fn config_with(&self, fragment: &str) -> Result<Config, BedError> {
        let config = Config::from_toml(&self.config_toml_with(fragment)?)
            .map_err(|e| BedError::new("parse the bed's proxy config", e))?;
        Ok(config)
    }

    /// Binds an in-process proxy with `config`, logging in to the emulator with the bed's key.
    pub async fn bind_proxy(&self, config: Config) -> Result<Proxy, BedError> {
        config
            .validate()
            .map_err(|e| BedError::new("validate the bed's proxy config", e))?;
        let creds =
            aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "testbed");
        let listen = config.listen.clone();
        Proxy::bind(config, AwsIdentitySource::Static(creds))
            .await
            .map_err(|e| BedError::new(format!("bind the proxy on {listen}"), e))
    }

    /// Pauses the bed's cluster in the emulator, as PauseCluster does, and waits until it is
    /// `paused`: its PostgreSQL is stopped (fast shutdown) and refuses connections until the
    /// cluster is resumed (by the proxy, or [`redshift_emulator::Emulator::resume_cluster`]).
    pub async fn pause_cluster(&self) -> Result<(), BedError> {
        self.emu
            .pause_cluster(&self.cluster)
            .map_err(|e| BedError::msg(format!("pause cluster {}: {e}", self.cluster)))?;
        self.emu
            .wait_cluster_status(
                &self.cluster,
                redshift_emulator::ClusterStatus::Paused,
                std::time::Duration::from_secs(30),
            )
            .await
            .map_err(BedError::msg)
    }

    /// The identifier of the bed's (first) cluster.
    pub fn cluster_identifier(&self) -> &str {
        &self.cluster
    }

    /// The configuration the bed's emulator was started with (to start another like it).
    pub fn emulator_config(&self) -> EmulatorConfig {
        self.emulator_config.clone()
    }

    /// Stops the emulator and the clusters (removing their directories).
    pub async fn stop(self) {
        self.emu.shutdown().await;
        drop(self.front);
        self.pg.stop().await;
        for (_, pg) in self.more_clusters {
            pg.stop().await;
        }
    }
}

/// One PostgreSQL cluster of the bed, with the options' setup SQL run.
async fn start_cluster(opts: &BedOptions) -> Result<LocalPg, BedError> {
    let pg = LocalPg::start(LocalPgOptions {
        hba_extra: opts.hba_extra.clone(),
        max_connections: opts.pg_max_connections,
        extra_conf: opts.pg_extra_conf.clone(),
    })
    .await
    .map_err(|e| BedError::new("start PostgreSQL", e))?;
    if !opts.setup_sql.trim().is_empty() {
        let admin = pg
            .admin()
            .await
            .map_err(|e| BedError::new("connect to PostgreSQL as admin", e))?;
        admin
            .batch_execute(&opts.setup_sql)
            .await
            .map_err(|e| BedError::new("run the bed's setup SQL", e))?;
    }
    Ok(pg)
}
