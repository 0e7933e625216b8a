//! LiveConfig clients: who is connected, as which Redshift user, through which pool, for
//! `SHOW CLIENTS` and `KILL_CLIENT`. A session registers once it has authenticated and
//! is removed when its guard drops.

use crate::base::sync::lock;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;

/// Every registered client by id.
#[derive(Default)]
pub struct Clients {
    next: AtomicU64,
    map: Arc<Mutex<BTreeMap<u64, Arc<ClientEntry>>>>,
}

/// One client as the console shows it.
pub struct ClientEntry {
    pub id: u64,
    pub user: String,
    /// The verified principal of a token login (ARN, or issuer#subject); empty otherwise.
    pub principal: String,
    pub database: String,
    pub addr: SocketAddr,
    pub tls: bool,
    pub application_name: String,
    pub connected_at: SystemTime,
    /// Cancelled by `KILL_CLIENT` (a child of the proxy's hard stop).
    pub stop: CancellationToken,
    info: Mutex<ClientInfo>,
}

/// What changes during a client's life.
#[derive(Clone, Default)]
pub struct ClientInfo {
    pub state: &'static str,
    pub target: String,
    pub db_user: String,
    pub pool: String,
    /// The server a session-mode client holds.
    pub server_id: Option<u64>,
}

impl ClientEntry {
    pub fn info(&self) -> ClientInfo {
        lock(&self.info).clone()
    }

    /// Records the login's outcome: DbUser, pool label (empty unpooled), server held.
    pub fn logged_in(&self, target: &str, db_user: &str, pool: &str, server_id: Option<u64>) {
        let mut i = lock(&self.info);
        i.state = "active";
        i.target = target.to_owned();
        i.db_user = db_user.to_owned();
        i.pool = pool.to_owned();
        i.server_id = server_id;
    }
}

/// Keeps a client registered while it lives.
pub struct ClientGuard {
    pub entry: Arc<ClientEntry>,
    map: Arc<Mutex<BTreeMap<u64, Arc<ClientEntry>>>>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        lock(&self.map).remove(&self.entry.id);
    }
}

impl std::ops::Deref for ClientGuard {
    type Target = ClientEntry;
    fn deref(&self) -> &ClientEntry {
        &self.entry
    }
}

/// Who registers: the authenticated client's facts at login.
pub struct NewClient<'a> {
    pub user: &'a str,
    pub principal: &'a str,
    pub database: &'a str,
    pub addr: SocketAddr,
    pub tls: bool,
    pub application_name: &'a str,
}

impl Clients {
    /// Registers a client; `parent` is the proxy's hard stop.
    pub fn register(&self, c: NewClient<'_>, parent: &CancellationToken) -> ClientGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(ClientEntry {
            id,
            user: c.user.to_owned(),
            principal: c.principal.to_owned(),
            database: c.database.to_owned(),
            addr: c.addr,
            tls: c.tls,
            application_name: c.application_name.to_owned(),
            connected_at: SystemTime::now(),
            stop: parent.child_token(),
            info: Mutex::new(ClientInfo {
                state: "login",
                ..Default::default()
            }),
        });
        lock(&self.map).insert(id, entry.clone());
        ClientGuard {
            entry,
            map: self.map.clone(),
        }
    }

    pub fn list(&self) -> Vec<Arc<ClientEntry>> {
        lock(&self.map).values().cloned().collect()
    }

    /// Closes client `id` (its relay ends at once); false if there is none.
    pub fn kill(&self, id: u64) -> bool {
        match lock(&self.map).get(&id) {
            Some(e) => {
                e.stop.cancel();
                true
            }
            None => false,
        }
    }
}
