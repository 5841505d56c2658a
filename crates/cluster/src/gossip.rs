//! Gossip membership and failure detection over UDP, built on Quickwit's `chitchat`
//! (scuttlebutt anti-entropy gossip plus a phi-accrual failure detector).
//!
//! Raft tells us who is *in* the cluster; gossip tells us who is *reachable right now* and
//! spreads small per-node facts (addresses, free disk, ...) without going through a Raft log.
//! Chitchat does the protocol work; this module only adds what Cairn needs on top:
//!
//! * plain node ids: chitchat identifies a node by `(node_id, generation, address)` so that a
//!   restarted process is a *new* member; we fold generations back onto the plain node id and
//!   always report the newest one;
//! * the Up / Suspect / Down / Unknown health model driven by `dead_after`
//!   (`NODE_TIMEOUT_SECS`), which chitchat does not have: it only knows live / dead;
//! * memory of every node ever seen, because chitchat forgets (garbage-collects) dead nodes,
//!   while operators still want to see a node that went away as Down;
//! * sealed packets: every datagram is encrypted and authenticated under a key derived from
//!   the cluster secret ([`seal`]); anything else is dropped and counted
//!   (`cairn_gossip_packets_dropped_total{reason}`), so nobody without the join token can
//!   read gossip, join it, or fake a node's heartbeats.

mod metrics;
pub mod seal;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::ClusterError;

/// Settings for this node's gossip agent.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// This node's id (the same plain id Raft and the layout use; no generation suffix).
    pub node_id: String,
    /// Chitchat's cluster id: messages from nodes of another cluster are rejected, so two
    /// clusters sharing a network (or a mistyped seed) never merge their membership.
    pub cluster_name: String,
    /// UDP address to listen on. Cairn uses the node's bind IP + `NODE_RPC_PORT`: UDP and TCP
    /// ports are separate namespaces, so gossip can share the gRPC port number.
    pub bind: SocketAddr,
    /// UDP address peers should gossip to (the bind address as seen by other nodes).
    pub advertise: SocketAddr,
    /// `"host:port"` of peers to contact first. These are the peers' gRPC addresses, which
    /// are also their gossip addresses because gossip reuses the RPC port number. Hostnames
    /// are re-resolved periodically by chitchat; this node's own address may be included.
    pub seeds: Vec<String>,
    /// Gossip period. Cairn passes `HEARTBEAT_INTERVAL_SECS / 5`, at least 200 ms.
    pub interval: Duration,
    /// Silence after which a node is Down (`NODE_TIMEOUT_SECS`, 15 s by default). Silence of
    /// more than a third of it already makes a node Suspect.
    pub dead_after: Duration,
    /// Keys published at start, e.g. `rpc_addr`, `api_addr`, `raft_id`.
    pub metadata: BTreeMap<String, String>,
    /// The cluster secret (`CLUSTER_JOIN_TOKEN`): the gossip key is derived from it. Gossip
    /// refuses to start without one, because unsealed gossip lets anyone vote nodes out.
    pub secret: Option<String>,
    /// More tokens whose packets are accepted (`CLUSTER_JOIN_TOKEN_ACCEPT`); packets are only
    /// ever sealed with `secret`. Used while the token is rotated.
    pub accept: Vec<String>,
    /// Where the last generation is kept (in the data directory), so the next start gossips a
    /// higher one even if the clock went back meanwhile; `None`: the clock alone (tests).
    pub generation_file: Option<std::path::PathBuf>,
}

/// The generation of a new start: the wall clock in microseconds, but always above the last
/// one. Peers ignore a generation lower than one they know (a stale copy of an earlier life),
/// so a node whose clock stepped back since its last start must still count up.
pub fn next_generation(now_micros: u64, last: Option<u64>) -> u64 {
    match last {
        Some(l) => now_micros.max(l.saturating_add(1)),
        None => now_micros,
    }
}

/// Reads the last generation from `path`, picks the next one and stores it durably (write,
/// fsync, rename) before it is ever gossiped.
fn persist_generation(path: &std::path::Path, now_micros: u64) -> Result<u64, ClusterError> {
    use std::io::Write;
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| ClusterError::Io { what, source }
    };
    let last = match std::fs::read_to_string(path) {
        Ok(s) => Some(s.trim().parse::<u64>().map_err(|e| {
            ClusterError::Other(format!("gossip generation file {}: {e}", path.display()))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("reading the gossip generation")(e)),
    };
    let next = next_generation(now_micros, last);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io("writing the gossip generation"))?;
    f.write_all(next.to_string().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io("writing the gossip generation"))?;
    std::fs::rename(&tmp, path).map_err(io("storing the gossip generation"))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the directory of the gossip generation"))?;
    }
    Ok(next)
}

/// What gossip currently believes about a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Health {
    /// Live per the failure detector and heard from within `dead_after / 3`.
    Up,
    /// Not heard from for more than `dead_after / 3`, or judged dead by the failure detector,
    /// but silent for less than `dead_after`: worth avoiding, not yet worth replacing.
    Suspect,
    /// Silent for at least `dead_after`.
    Down,
    /// Never seen by gossip.
    Unknown,
}

/// A running gossip agent. Dropping it stops gossip too (without waiting); prefer
/// [`Gossip::shutdown`], which waits until the UDP socket is closed.
pub struct Gossip {
    shared: Arc<Shared>,
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    /// `None` only once `shutdown` has taken it.
    handle: Option<ChitchatHandle>,
    observer: JoinHandle<()>,
    dropped: seal::DropCounter,
}

/// State shared between the `Gossip` handle and its observer task.
struct Shared {
    node_id: String,
    dead_after: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Every other node ever seen, by plain node id (newest generation only).
    peers: BTreeMap<String, Peer>,
    /// Our own published keys, so `members()` shows `set` values immediately.
    self_meta: BTreeMap<String, String>,
    /// Keys set while chitchat's lock was busy; applied under that lock, in order, by
    /// whoever gets it next (`set` or the observer).
    pending: BTreeMap<String, String>,
}

/// Our record of one peer.
struct Peer {
    generation: u64,
    /// Last heartbeat counter seen for `generation`; it grows every gossip round the peer
    /// runs, so a change means the peer was alive (directly or via a third node) since.
    heartbeat: u64,
    /// When we last saw `heartbeat` grow (or first saw this generation). Chitchat keeps its
    /// own timestamps private, so we sample heartbeats ourselves every half gossip period.
    last_heard: Instant,
    /// Live per chitchat's phi-accrual detector at the last observation.
    live: bool,
    meta: BTreeMap<String, String>,
}

impl Gossip {
    /// Binds the UDP socket, starts gossiping with `cfg.seeds` and starts watching peers.
    pub async fn start(cfg: GossipConfig) -> Result<Self, ClusterError> {
        if cfg.interval.is_zero() || cfg.dead_after <= cfg.interval {
            return Err(ClusterError::Other(format!(
                "gossip: dead_after ({:?}) must be longer than the gossip interval ({:?}), which must not be zero",
                cfg.dead_after, cfg.interval
            )));
        }
        let secret =
            match cfg.secret.as_deref() {
                Some(s) if !s.is_empty() => s,
                _ => return Err(ClusterError::Other(
                    "gossip needs the cluster secret to seal its packets: set CLUSTER_JOIN_TOKEN"
                        .to_string(),
                )),
            };
        let dropped = seal::drop_counter();
        let transport = seal::SealedTransport {
            key: seal::GossipKeyring::derive(secret, &cfg.accept),
            dropped: dropped.clone(),
        };
        // A fresh, higher generation per start is how chitchat tells a restarted node from a
        // stale copy of its previous life: the wall clock, kept above the last one stored.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let generation = match &cfg.generation_file {
            Some(path) => persist_generation(path, now)?,
            None => now,
        };
        let chitchat_id = ChitchatId::new(cfg.node_id.clone(), generation, cfg.advertise);
        let config = ChitchatConfig {
            chitchat_id,
            cluster_id: cfg.cluster_name.clone(),
            gossip_interval: cfg.interval,
            listen_addr: cfg.bind,
            seed_nodes: cfg.seeds.clone(),
            failure_detector_config: detector_config(cfg.interval, cfg.dead_after),
            // We never delete keys (only overwrite them), so tombstones are rare; an hour is
            // plenty for every peer to see a deletion before it is forgotten.
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            // V0 is understood by every chitchat release; the compressed V1 digest only pays
            // off with hundreds of nodes, and mixed versions during an upgrade must still talk.
            protocol_version: ProtocolVersion::V0,
        };
        let initial: Vec<(String, String)> = cfg
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let handle = chitchat::spawn_chitchat(config, initial, &transport)
            .await
            .map_err(|e| ClusterError::Other(format!("gossip on {}: {e:#}", cfg.bind)))?;
        let chitchat = handle.chitchat();
        let shared = Arc::new(Shared {
            node_id: cfg.node_id.clone(),
            dead_after: cfg.dead_after,
            inner: Mutex::new(Inner {
                peers: BTreeMap::new(),
                self_meta: cfg.metadata.clone(),
                pending: BTreeMap::new(),
            }),
        });
        // Half the gossip period keeps our "last heard" timestamps within one round of
        // chitchat's, which is far finer than `dead_after / 3`.
        let period = (cfg.interval / 2).max(Duration::from_millis(20));
        let observer = tokio::spawn(observe_loop(shared.clone(), chitchat.clone(), period));
        tracing::info!(node = %cfg.node_id, bind = %cfg.bind, advertise = %cfg.advertise,
            seeds = ?cfg.seeds, "gossip started");
        Ok(Gossip {
            shared,
            chitchat,
            handle: Some(handle),
            observer,
            dropped,
        })
    }

    /// Registers `gossip_packets_dropped` (by `reason`: malformed, unauthenticated, stale,
    /// local) and `gossip_members` (by `state`: up, suspect, down) in the node's metrics
    /// registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "gossip_packets_dropped",
            "Gossip datagrams dropped because they were not sealed with this cluster's key, were tampered with, or were replayed too late",
            self.dropped.clone(),
        );
        registry.register_collector(Box::new(metrics::MembersCollector(self.shared.clone())));
    }

    /// Datagrams dropped so far, all reasons together.
    pub fn packets_dropped(&self) -> u64 {
        seal::total(&self.dropped)
    }

    /// Current health of `node_id`; this node itself is always Up.
    pub fn health(&self, node_id: &str) -> Health {
        if node_id == self.shared.node_id {
            return Health::Up;
        }
        let inner = self.shared.inner.lock();
        match inner.peers.get(node_id) {
            Some(peer) => classify(peer, Instant::now(), self.shared.dead_after),
            None => Health::Unknown,
        }
    }

    /// Every node ever seen (this one included), sorted by node id, with its health and its
    /// published keys (the last ones heard, for nodes that are no longer reachable).
    pub fn members(&self) -> Vec<(String, Health, BTreeMap<String, String>)> {
        let now = Instant::now();
        let inner = self.shared.inner.lock();
        let mut out: Vec<_> = inner
            .peers
            .iter()
            .map(|(id, p)| {
                (
                    id.clone(),
                    classify(p, now, self.shared.dead_after),
                    p.meta.clone(),
                )
            })
            .collect();
        out.push((
            self.shared.node_id.clone(),
            Health::Up,
            inner.self_meta.clone(),
        ));
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Publishes `key = value` for this node; peers see it within a few gossip rounds.
    ///
    /// Synchronous so callers need not be async; if chitchat's (async) lock is busy the value
    /// is queued and applied by the observer within half a gossip period.
    pub fn set(&self, key: &str, value: &str) {
        {
            let mut inner = self.shared.inner.lock();
            inner.self_meta.insert(key.to_string(), value.to_string());
            inner.pending.insert(key.to_string(), value.to_string());
        }
        if let Ok(mut chitchat) = self.chitchat.try_lock() {
            // Draining only while holding chitchat's lock keeps the order of values per key.
            apply_pending(&self.shared, &mut chitchat);
        }
    }

    /// Stops gossiping and waits until the UDP socket is closed, so the same address can be
    /// bound again right away (e.g. by a restarted node). Peers notice the silence.
    pub async fn shutdown(mut self) {
        self.observer.abort();
        if let Some(handle) = self.handle.take() {
            if let Err(e) = handle.shutdown().await {
                tracing::warn!(node = %self.shared.node_id, "gossip shutdown: {e:#}");
            }
        }
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        self.observer.abort();
        if let Some(handle) = &self.handle {
            // Ask the chitchat task to stop rather than leaving it gossiping forever.
            let _ = handle.initiate_shutdown();
        }
    }
}

/// Tunes chitchat's detector for `dead_after`.
///
/// Chitchat's phi is `silence / mean heartbeat interval` (heartbeats advance once per gossip
/// round, so the mean is about `interval`), and a node is dead once phi exceeds the threshold.
/// Aiming at half of `dead_after` lets the detector confirm a failure between the Suspect
/// (`dead_after / 3`) and Down (`dead_after`) marks while tolerating a few lost datagrams.
fn detector_config(interval: Duration, dead_after: Duration) -> FailureDetectorConfig {
    let phi_threshold = (dead_after.as_secs_f64() / 2.0 / interval.as_secs_f64()).max(3.0);
    FailureDetectorConfig {
        phi_threshold,
        // Plenty of samples to learn the interval, few enough to follow load changes.
        sampling_window_size: 1000,
        // A gap longer than dead_after is an outage, not a sample of the normal interval.
        max_interval: dead_after,
        // Prior for the first samples: the configured gossip period.
        initial_interval: interval,
        // Chitchat drops dead generations after this; we keep our own record of every node, so
        // this only bounds how long old generations (after restarts) are gossiped about.
        dead_node_grace_period: Duration::from_secs(3600).max(dead_after * 10),
    }
}

/// The health model: silence decides Down on its own (a detector that has not caught up
/// must not keep a silent node Up), the detector and a third of `dead_after` decide Up.
fn classify(peer: &Peer, now: Instant, dead_after: Duration) -> Health {
    let silent = now.saturating_duration_since(peer.last_heard);
    if silent >= dead_after {
        Health::Down
    } else if peer.live && silent <= dead_after / 3 {
        Health::Up
    } else {
        Health::Suspect
    }
}

/// Samples chitchat's view every `period` until aborted.
async fn observe_loop(
    shared: Arc<Shared>,
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    period: Duration,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut guard = chitchat.lock().await;
        apply_pending(&shared, &mut guard);
        observe(&shared, &guard, Instant::now());
    }
}

/// Publishes queued `set` values. Must be called with chitchat's lock held.
fn apply_pending(shared: &Shared, chitchat: &mut Chitchat) {
    let pending = std::mem::take(&mut shared.inner.lock().pending);
    if pending.is_empty() {
        return;
    }
    let state = chitchat.self_node_state();
    for (k, v) in pending {
        state.set(k, v);
    }
}

/// Folds chitchat's node states into our per-node-id records.
fn observe(shared: &Shared, chitchat: &Chitchat, now: Instant) {
    let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
    let mut inner = shared.inner.lock();
    let mut seen: HashSet<&str> = HashSet::new();
    for (id, state) in chitchat.node_states() {
        // Our own id, including stale generations of ourselves that peers still gossip about.
        if *id.node_id == *shared.node_id {
            continue;
        }
        let heartbeat = u64::from(state.heartbeat());
        let is_live = live.contains(id);
        let meta = || -> BTreeMap<String, String> {
            state
                .key_values()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        match inner.peers.get_mut(&*id.node_id) {
            // A stale generation of a node that has restarted since: ignore it.
            Some(peer) if id.generation_id < peer.generation => continue,
            Some(peer) if id.generation_id == peer.generation => {
                if heartbeat > peer.heartbeat {
                    peer.heartbeat = heartbeat;
                    peer.last_heard = now;
                }
                peer.live = is_live;
                peer.meta = meta();
            }
            // First sight of this node, or of a newer generation of it (a restart). Learning
            // about it at all means it was alive recently, so the silence clock starts now.
            _ => {
                if inner.peers.contains_key(&*id.node_id) {
                    tracing::info!(node = %id.node_id, generation = id.generation_id,
                        "gossip: node restarted");
                } else {
                    tracing::info!(node = %id.node_id, addr = %id.gossip_advertise_addr,
                        "gossip: discovered node");
                }
                inner.peers.insert(
                    id.node_id.to_string(),
                    Peer {
                        generation: id.generation_id,
                        heartbeat,
                        last_heard: now,
                        live: is_live,
                        meta: meta(),
                    },
                );
            }
        }
        seen.insert(&id.node_id);
    }
    // Nodes chitchat has garbage-collected are, by construction, long dead.
    for (id, peer) in inner.peers.iter_mut() {
        if !seen.contains(id.as_str()) {
            peer.live = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(live: bool, silent: Duration, now: Instant) -> Peer {
        Peer {
            generation: 1,
            heartbeat: 1,
            last_heard: now - silent,
            live,
            meta: BTreeMap::new(),
        }
    }

    #[test]
    fn generations_grow_even_when_the_clock_went_back() {
        assert_eq!(next_generation(500, None), 500);
        assert_eq!(next_generation(500, Some(100)), 500);
        // The last start ran with a clock ahead: count up from it.
        assert_eq!(next_generation(500, Some(900)), 901);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gossip-generation");
        assert_eq!(persist_generation(&path, 1_000).unwrap(), 1_000);
        assert_eq!(persist_generation(&path, 10).unwrap(), 1_001);
        assert_eq!(persist_generation(&path, 5_000).unwrap(), 5_000);
        std::fs::write(&path, "garbage").unwrap();
        assert!(persist_generation(&path, 1).is_err());
    }

    #[test]
    fn classify_follows_the_silence_thresholds() {
        let now = Instant::now();
        let d = Duration::from_secs(15);
        assert_eq!(
            classify(&peer(true, Duration::ZERO, now), now, d),
            Health::Up
        );
        assert_eq!(
            classify(&peer(true, Duration::from_secs(5), now), now, d),
            Health::Up
        );
        assert_eq!(
            classify(&peer(true, Duration::from_secs(6), now), now, d),
            Health::Suspect
        );
        // Judged dead by the detector: Suspect however recent the last heartbeat.
        assert_eq!(
            classify(&peer(false, Duration::ZERO, now), now, d),
            Health::Suspect
        );
        assert_eq!(
            classify(&peer(false, Duration::from_secs(14), now), now, d),
            Health::Suspect
        );
        assert_eq!(
            classify(&peer(false, Duration::from_secs(15), now), now, d),
            Health::Down
        );
        // Silence alone is decisive at dead_after, even if the detector lags.
        assert_eq!(
            classify(&peer(true, Duration::from_secs(16), now), now, d),
            Health::Down
        );
    }

    #[test]
    fn detector_fires_between_suspect_and_down() {
        let interval = Duration::from_millis(200);
        let dead_after = Duration::from_secs(15);
        let fd = detector_config(interval, dead_after);
        // phi = silence / mean interval, so the timeout is threshold * interval.
        let timeout = interval.mul_f64(fd.phi_threshold);
        assert!(
            timeout > dead_after / 3 && timeout < dead_after,
            "{timeout:?}"
        );
        // Tiny dead_after never yields a hair-trigger detector.
        assert!(detector_config(interval, Duration::from_millis(400)).phi_threshold >= 3.0);
    }
}
