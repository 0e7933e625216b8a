//! Cancels across replicas (`[peers]`). Behind a TCP load balancer a CancelRequest may
//! land on another replica than the session it is for.
//!
//! - `addresses` (PgBouncer 1.19's peering model): each replica puts its `peer_id` in the
//!   cancel keys it hands out; a CancelRequest whose key names another known peer is
//!   passed on to that peer's client listener as is (plain TCP, as libpq sends cancels).
//!   The peer finds its own id in the key and cancels locally: one hop.
//! - `dns`: a name resolving to every replica (a Kubernetes headless Service) is resolved
//!   at start and every `dns_refresh_secs`. Addresses come without ids, so a client's
//!   cancel for a key no session here holds goes to every other replica found. It never
//!   travels further: a replica does not pass on a cancel that came from an address the
//!   name resolves to, nor one for a key carrying its own `peer_id` (that session is
//!   over), nor one for a key whose cancel it is passing on right now (views of the name
//!   that differ for a moment cannot make a cycle).

use super::CancelRegistry;
use crate::base::sync::lock;
use crate::cancel::peer_of;
use crate::config::PeersConfig;
use crate::wire;
use arc_swap::ArcSwapOption;
use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Time allowed for reaching a peer and handing it the cancel.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// Time allowed for one resolution of `[peers] dns`.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What one resolution of `[peers] dns` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Every address the name resolved to, this replica's own included.
    pub all: BTreeSet<SocketAddr>,
    /// The other replicas: `all` without this replica's own listeners.
    pub others: Vec<SocketAddr>,
}

/// The replicas `[peers] dns` finds, and the cancels being passed on to them.
#[derive(Default)]
pub struct Peers {
    /// The last successful resolution (`None`: none yet).
    found: ArcSwapOption<Found>,
    /// Why the last resolution failed (a failure is logged once, not at every refresh).
    last_error: Mutex<Option<String>>,
    /// Keys whose cancel this replica is passing on now.
    in_flight: Mutex<HashSet<(i32, Vec<u8>)>>,
    /// This replica's client listeners.
    local: OnceLock<Vec<SocketAddr>>,
}

/// A key being passed on; dropping it ends that.
struct Flight<'a> {
    peers: &'a Peers,
    key: (i32, Vec<u8>),
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        lock(&self.peers.in_flight).remove(&self.key);
    }
}

impl Peers {
    /// Records this replica's client listeners (never peers of their own; a specific
    /// listen address is also the source address of the cancels passed on).
    pub fn set_local(&self, addrs: Vec<SocketAddr>) {
        let _ = self.local.set(addrs);
    }

    fn local(&self) -> &[SocketAddr] {
        self.local.get().map_or(&[], Vec::as_slice)
    }

    /// The last resolution of `[peers] dns`.
    pub fn found(&self) -> Option<Arc<Found>> {
        self.found.load_full()
    }

    /// How many other replicas cancels can go to: found by `dns`, or listed in `addresses`.
    pub fn count(&self, config: &PeersConfig) -> usize {
        if config.dns.is_some() {
            self.found().map_or(0, |f| f.others.len())
        } else {
            config.addresses.len()
        }
    }

    /// Resolves `[peers] dns` now. A change is logged (and the first result); a failure
    /// is logged once and the replicas found before stay.
    pub async fn refresh(&self, config: &PeersConfig) {
        let Some((name, port)) = config.dns_target() else {
            return;
        };
        match resolve(&name, port, config.hosts_file.as_deref()).await {
            Ok(all) => {
                let others: Vec<SocketAddr> = all
                    .iter()
                    .filter(|a| !is_own(**a, self.local()))
                    .copied()
                    .collect();
                let found = Found { all, others };
                let before = self.found();
                if before.as_deref() != Some(&found) {
                    let was: Vec<SocketAddr> = before.map(|f| f.others.clone()).unwrap_or_default();
                    let added: Vec<String> = found
                        .others
                        .iter()
                        .filter(|a| !was.contains(a))
                        .map(ToString::to_string)
                        .collect();
                    let removed: Vec<String> = was
                        .iter()
                        .filter(|a| !found.others.contains(a))
                        .map(ToString::to_string)
                        .collect();
                    tracing::info!(
                        name = %name,
                        peers = found.others.len(),
                        added = %added.join(","),
                        removed = %removed.join(","),
                        "peers.dns resolved to a new set of replicas"
                    );
                }
                self.found.store(Some(Arc::new(found)));
                if lock(&self.last_error).take().is_some() {
                    tracing::info!(name = %name, "peers.dns resolves again");
                }
            }
            Err(e) => {
                let mut last = lock(&self.last_error);
                if last.as_deref() != Some(e.as_str()) {
                    tracing::warn!(name = %name, error = %e, "resolving peers.dns failed; the replicas found before stay");
                    *last = Some(e);
                }
            }
        }
    }

    /// Marks `pid`/`secret` as being passed on; `None` if it already is.
    fn start_flight(&self, pid: i32, secret: &[u8]) -> Option<Flight<'_>> {
        let key = (pid, secret.to_vec());
        // The lock is released before a Flight exists: dropping one takes it.
        let fresh = lock(&self.in_flight).insert(key.clone());
        fresh.then(|| Flight { peers: self, key })
    }

    /// The source address for cancels passed on: the listener on the peers' port, when it
    /// is bound to one address (peers know this replica by it).
    fn source_ip(&self, port: u16) -> Option<IpAddr> {
        self.local()
            .iter()
            .find(|a| a.port() == port && !a.ip().is_unspecified())
            .map(SocketAddr::ip)
    }
}

/// Resolves `[peers] dns` every `dns_refresh_secs` (the first resolution ran at start).
pub async fn discover(config: &PeersConfig, peers: &Peers) {
    if config.dns.is_none() {
        return;
    }
    let every = config.dns_refresh();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        peers.refresh(config).await;
    }
}

/// The addresses of `name`: from `hosts_file` when it lists the name, else from DNS.
pub async fn resolve(
    name: &str,
    port: u16,
    hosts_file: Option<&Path>,
) -> Result<BTreeSet<SocketAddr>, String> {
    if let Some(path) = hosts_file {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("peers.hosts_file {}: {e}", path.display()))?;
        let ips = hosts_lookup(&text, name);
        if !ips.is_empty() {
            return Ok(ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect());
        }
    }
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port))).await {
        Ok(Ok(addrs)) => Ok(addrs
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
            .collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs())),
    }
}

/// The addresses a hosts(5)-style text gives `name` (`address name [alias…]` lines, `#`
/// comments; names compare without case and a trailing dot).
pub fn hosts_lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let want = name.trim_end_matches('.');
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(ip) = fields.next().and_then(|a| a.parse::<IpAddr>().ok()) else {
            continue;
        };
        if fields.any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(want)) && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// Whether `addr` is one of this replica's `listeners`: the same address, or a listener
/// on all addresses with the same port and `addr`'s IP local to this host.
pub fn is_own(addr: SocketAddr, listeners: &[SocketAddr]) -> bool {
    listeners.iter().any(|l| {
        *l == addr
            || (l.ip().is_unspecified()
                && l.port() == addr.port()
                && std::net::UdpSocket::bind((addr.ip(), 0)).is_ok())
    })
}

/// `[peers] peer_id = "auto"`: the ordinal ending the host name (`proxy-3`, a
/// StatefulSet pod) plus 1, so ordinals 0..=254 give ids 1..=255.
pub fn auto_peer_id(host: &str) -> Result<u8, String> {
    let ordinal = host
        .rsplit_once('-')
        .map(|(_, n)| n)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    match ordinal.map(str::parse::<u64>) {
        Some(Ok(n)) if n <= 254 => Ok(n as u8 + 1),
        Some(_) => Err(format!(
            "peers.peer_id = \"auto\": the ordinal of host name {host:?} is above 254 (ids stop at 255)"
        )),
        None => Err(format!(
            "peers.peer_id = \"auto\": host name {host:?} does not end in -N (a StatefulSet pod's ordinal); set a number, or leave peer_id out with peers.dns"
        )),
    }
}

/// This host's name: `$HOSTNAME` (set in containers), else the kernel's.
pub fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Handles a client's CancelRequest (from `from`): here, or at the replica(s) that may
/// hold the key.
pub async fn cancel(
    cancels: &CancelRegistry,
    peers: &Peers,
    config: &PeersConfig,
    pid: i32,
    secret: &[u8],
    from: SocketAddr,
) {
    if config.dns.is_some() {
        return cancel_by_dns(cancels, peers, pid, secret, from).await;
    }
    let own = cancels.peer_id();
    let issuer = peer_of(pid);
    if own == 0 || issuer == own || issuer == 0 {
        if !cancels.cancel(pid, secret).await {
            ignored(pid, "unknown key");
        }
        return;
    }
    let Some((_, addr)) = config.peer_list().into_iter().find(|(id, _)| *id == issuer) else {
        tracing::debug!(
            peer = issuer,
            "cancel request for a key of an unknown peer ignored"
        );
        crate::base::events::cancel("unknown_peer");
        return;
    };
    let sent = tokio::time::timeout(PEER_TIMEOUT, async {
        let s = tokio::net::TcpStream::connect(&addr).await?;
        hand_over(s, pid, secret).await
    })
    .await;
    match sent {
        Ok(Ok(())) => {
            crate::base::events::cancel("forwarded_to_peer");
            tracing::info!(peer = issuer, %addr, "cancel request forwarded to peer");
        }
        Ok(Err(e)) => {
            crate::base::events::cancel("peer_failed");
            tracing::warn!(peer = issuer, %addr, error = %e, "forwarding a cancel to a peer failed");
        }
        Err(_) => {
            crate::base::events::cancel("peer_failed");
            tracing::warn!(peer = issuer, %addr, "forwarding a cancel to a peer timed out");
        }
    }
}

fn ignored(pid: i32, why: &str) {
    crate::base::events::cancel("ignored");
    tracing::debug!(pid, why, "cancel request ignored");
}

/// `[peers] dns`: a key no session here holds goes to every other replica found, unless
/// the cancel was passed on already (see the module documentation).
async fn cancel_by_dns(
    cancels: &CancelRegistry,
    peers: &Peers,
    pid: i32,
    secret: &[u8],
    from: SocketAddr,
) {
    if cancels.cancel(pid, secret).await {
        return;
    }
    let found = peers.found();
    let from_ip = from.ip().to_canonical();
    if found
        .as_deref()
        .is_some_and(|f| f.all.iter().any(|a| a.ip() == from_ip))
    {
        return ignored(pid, "unknown key, passed on by a peer");
    }
    let own = cancels.peer_id();
    if own != 0 && peer_of(pid) == own {
        return ignored(pid, "this replica's key, its session is over");
    }
    let Some(_flight) = peers.start_flight(pid, secret) else {
        return ignored(pid, "unknown key, being passed on already");
    };
    let targets = found.map(|f| f.others.clone()).unwrap_or_default();
    if targets.is_empty() {
        crate::base::events::cancel("unknown_peer");
        tracing::debug!(
            pid,
            "cancel request for an unknown key: peers.dns found no other replica"
        );
        return;
    }
    let source = targets.first().and_then(|a| peers.source_ip(a.port()));
    let results = futures_util::future::join_all(
        targets
            .iter()
            .map(|addr| pass_on(*addr, source, pid, secret)),
    )
    .await;
    let mut reached = 0;
    for (addr, r) in targets.iter().zip(results) {
        match r {
            Ok(()) => reached += 1,
            Err(e) => {
                tracing::warn!(%addr, error = %e, "passing a cancel to a peer failed")
            }
        }
    }
    if reached > 0 {
        crate::base::events::cancel("forwarded_to_peer");
        tracing::info!(
            pid,
            peers = targets.len(),
            reached,
            "cancel request forwarded to peers"
        );
    } else {
        crate::base::events::cancel("peer_failed");
    }
}

/// Connects to `addr` (from `source` when set) and hands it the cancel.
async fn pass_on(
    addr: SocketAddr,
    source: Option<IpAddr>,
    pid: i32,
    secret: &[u8],
) -> Result<(), String> {
    let sent = tokio::time::timeout(PEER_TIMEOUT, async {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        if let Some(ip) = source.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        hand_over(socket.connect(addr).await?, pid, secret).await
    })
    .await;
    match sent {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("timed out after {} s", PEER_TIMEOUT.as_secs())),
    }
}

/// Writes the CancelRequest and waits until the peer closes: it does once it delivered
/// the cancel to its cluster.
async fn hand_over(
    mut s: impl AsyncRead + AsyncWrite + Unpin,
    pid: i32,
    secret: &[u8],
) -> std::io::Result<()> {
    s.write_all(&wire::cancel_request(pid, secret)).await?;
    s.flush().await?;
    let mut sink = [0u8; 16];
    while s.read(&mut sink).await? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lookup_finds_every_address_of_a_name_and_alias() {
        let text = "# replicas\n127.0.0.2 peers.local peers\n127.0.0.3\tpeers # second\n::1 other\nnot-an-ip peers\n127.0.0.2 peers\n";
        let want: Vec<IpAddr> = vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into()];
        assert_eq!(hosts_lookup(text, "PEERS."), want);
        assert!(hosts_lookup(text, "absent").is_empty());
    }

    #[test]
    fn own_addresses_are_the_listeners_and_local_ips_on_an_all_addresses_listener() {
        let specific: SocketAddr = "127.0.0.2:5439".parse().unwrap();
        assert!(is_own(specific, &[specific]));
        assert!(!is_own("127.0.0.3:5439".parse().unwrap(), &[specific]));
        let all: SocketAddr = "0.0.0.0:5439".parse().unwrap();
        assert!(is_own("127.0.0.3:5439".parse().unwrap(), &[all]));
        assert!(!is_own("127.0.0.3:5440".parse().unwrap(), &[all]));
        // TEST-NET-1 is never a local address.
        assert!(!is_own("192.0.2.1:5439".parse().unwrap(), &[all]));
    }

    #[test]
    fn a_key_being_passed_on_is_not_passed_on_twice_at_once() {
        let peers = Peers::default();
        let first = peers.start_flight(7, b"abcd");
        assert!(first.is_some());
        assert!(peers.start_flight(7, b"abcd").is_none());
        assert!(peers.start_flight(7, b"abce").is_some());
        drop(first);
        assert!(peers.start_flight(7, b"abcd").is_some());
    }

    /// Log lines written while `f` runs on this thread.
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Captures this thread's log lines until the guard drops.
    fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Captured(sink.clone()))
            .with_ansi(false)
            .finish();
        (buf, tracing::subscriber::set_default(subscriber))
    }

    fn count_lines(buf: &Mutex<Vec<u8>>, needle: &str) -> usize {
        String::from_utf8_lossy(&lock(buf)).matches(needle).count()
    }

    /// `[peers] dns` resolving through `hosts` only; this replica listens on 127.0.0.2.
    fn discovery(hosts: &Path) -> (PeersConfig, Peers) {
        let config: PeersConfig = toml::from_str(&format!(
            "dns = \"replicas.invalid:5439\"\nhosts_file = {:?}\n",
            hosts.display().to_string()
        ))
        .unwrap();
        let peers = Peers::default();
        peers.set_local(vec!["127.0.0.2:5439".parse().unwrap()]);
        (config, peers)
    }

    const CHANGED: &str = "peers.dns resolved to a new set of replicas";

    #[tokio::test(flavor = "current_thread")]
    async fn resolutions_are_logged_only_when_the_replicas_change() {
        let (logs, _guard) = capture_logs();
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        let (config, peers) = discovery(&hosts);
        std::fs::write(
            &hosts,
            "127.0.0.2 replicas.invalid\n127.0.0.3 replicas.invalid\n",
        )
        .unwrap();
        for _ in 0..3 {
            peers.refresh(&config).await;
        }
        assert_eq!(count_lines(&logs, CHANGED), 1);
        std::fs::write(&hosts, "127.0.0.2 replicas.invalid\n").unwrap();
        for _ in 0..3 {
            peers.refresh(&config).await;
        }
        assert_eq!(count_lines(&logs, CHANGED), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_resolution_is_logged_once_and_the_replicas_found_stay() {
        let (logs, _guard) = capture_logs();
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        let (config, peers) = discovery(&hosts);
        std::fs::write(
            &hosts,
            "127.0.0.2 replicas.invalid\n127.0.0.3 replicas.invalid\n",
        )
        .unwrap();
        peers.refresh(&config).await;
        std::fs::remove_file(&hosts).unwrap();
        for _ in 0..3 {
            peers.refresh(&config).await;
        }
        assert_eq!(count_lines(&logs, "resolving peers.dns failed"), 1);
        assert_eq!(peers.count(&config), 1);
    }

    #[test]
    fn auto_peer_id_is_the_statefulset_ordinal_plus_one() {
        assert_eq!(auto_peer_id("redshift-iam-proxy-0"), Ok(1));
        assert_eq!(auto_peer_id("proxy-254"), Ok(255));
        for bad in ["proxy-255", "proxy", "proxy-7f9c-x2", "proxy-"] {
            let e = auto_peer_id(bad).unwrap_err();
            assert!(e.contains("peers.peer_id"), "{e}");
        }
    }
}
