//! The whole bed in one process: [`Parts`] plus the proxy serving on a tokio task.

use super::faultline::Faultline;
use super::{client, BedError, BedOptions, ConfigTweak, Parts};
use crate::config::Config;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why: most tests talk to an in-process proxy whose shared state they can inspect; the
/// parts (`bed.pg`, `bed.emu`, `bed.front`) are reached through `Deref`.
pub struct Bed {
    parts: Parts,
    pub proxy_addr: SocketAddr,
    /// Every listener: the main one (`None`) and each target's own (`Some(name)`).
    pub listener_addrs: Vec<(Option<String>, SocketAddr)>,
    pub config: Config,
    pub shared: Option<Arc<crate::context::Shared>>,
    /// The forwarder between proxy and cluster (`BedOptions::faultline`).
    pub faultline: Option<Faultline>,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<()>>,
}

impl Deref for Bed {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.parts
    }
}

impl DerefMut for Bed {
    fn deref_mut(&mut self) -> &mut Parts {
        &mut self.parts
    }
}

impl Bed {
    /// The default test bed; panics with the failing part (test helper).
    pub async fn start() -> Bed {
        Self::with(BedOptions::default()).await
    }

    /// A bed from `opts`; panics with the failing part (test helper).
    pub async fn with(opts: BedOptions) -> Bed {
        match Self::try_with(opts).await {
            Ok(bed) => bed,
            Err(e) => panic!("test bed: {e}"),
        }
    }

    /// A bed from `opts`, or which part failed to start.
    pub async fn try_with(opts: BedOptions) -> Result<Bed, BedError> {
        super::init_tracing();
        let parts = Parts::start(&opts).await?;
        let port = parts.front.as_ref().map_or(parts.pg.port(), |f| f.port());
        let config = parts.config_with("")?;
        let mut bed = Bed {
            parts,
            proxy_addr: ([127, 0, 0, 1], 0).into(),
            listener_addrs: vec![],
            config,
            shared: None,
            faultline: None,
            stop: None,
            join: None,
        };
        if opts.faultline {
            let line = Faultline::start(([127, 0, 0, 1], port).into())
                .await
                .map_err(|e| BedError::new("start the fault-injecting forwarder", e))?;
            bed.faultline = Some(line);
        }
        let line = bed.faultline.as_ref().map(|l| l.addr.port());
        let (pin, tweak) = (opts.pg_port_in_config, opts.tweak);
        bed.try_start_proxy(
            &opts.users_toml,
            Box::new(move |c| {
                if pin {
                    c.cluster[0].port = Some(port);
                }
                if let Some(line) = line {
                    c.cluster[0].host = Some("127.0.0.1".into());
                    c.cluster[0].port = Some(line);
                }
                tweak(c)
            }),
        )
        .await?;
        Ok(bed)
    }

    /// (Re)starts the proxy of this bed with other `[[users]]` and a tweak; the old one is
    /// stopped. Panics with the reason (test helper).
    pub async fn start_proxy(&mut self, users_toml: &str, tweak: ConfigTweak) {
        if let Err(e) = self.try_start_proxy(users_toml, tweak).await {
            panic!("test bed: {e}");
        }
    }

    async fn try_start_proxy(
        &mut self,
        users_toml: &str,
        tweak: ConfigTweak,
    ) -> Result<(), BedError> {
        self.stop_proxy().await;
        let mut config = self.parts.config_with(users_toml)?;
        tweak(&mut config);
        let proxy = self.parts.bind_proxy(config.clone()).await?;
        self.proxy_addr = proxy
            .local_addr()
            .map_err(|e| BedError::new("read the proxy's address", e))?;
        self.listener_addrs = proxy.listener_addrs();
        self.shared = Some(proxy.shared());
        let (tx, rx) = oneshot::channel::<()>();
        self.join = Some(tokio::spawn(proxy.serve(async move {
            let _ = rx.await;
        })));
        self.stop = Some(tx);
        self.config = config;
        Ok(())
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
        client::connect(&self.conninfo(user)).await
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
