//! Applying the replicated cluster configuration on this node. At start, [`Effective`] picks
//! each start-time setting from the cluster configuration when it sets one, else from the
//! node's own configuration. While running, [`ConfigRuntime`] watches the system group's
//! configuration version (its local replica), applies what can change live (the default write
//! consistency, the S3 connection and in-flight caps, the repair and scrub rates), works out which changed settings wait for a restart, and publishes both in
//! gossip (`config_version`, `config_restart`) so any node can report every node's state.

use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_cluster::gossip::{Gossip, Health};
use cairn_cluster::ReplicatedChunks;
use cairn_meta::config_doc::{self, ApplyMode};
use cairn_meta::model::{ClusterConfig, WriteConsistency};
use cairn_meta::placement::SYSTEM_GROUP;
use parking_lot::Mutex;
use tokio::sync::watch;

/// Gossip key: the configuration version this node applied.
pub const GOSSIP_VERSION: &str = "config_version";
/// Gossip key: comma-separated settings that changed but wait for this node's restart.
pub const GOSSIP_RESTART: &str = "config_restart";

/// Settings a node reads once, at start: the cluster's value when set, else the node's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub write_consistency: WriteConsistency,
    pub gc_grace_secs: u64,
    pub gc_interval_secs: u64,
    pub upload_expiry_secs: u64,
    pub s3_max_connections: u32,
    pub s3_max_inflight: u32,
    /// Chunk-sync and scrub rates in MB/s (0: unlimited); live.
    pub repair_rate_mbps: u64,
    pub scrub_rate_mbps: u64,
    /// Lifecycle worker rate in object versions per second (0: unlimited); live.
    pub lifecycle_rate: u64,
}

impl Effective {
    /// This node's own settings (`cfg`), overridden by what `doc` sets.
    pub fn resolve(
        cfg: &cairn_config::Config,
        node_consistency: WriteConsistency,
        doc: Option<&ClusterConfig>,
    ) -> Self {
        let node = Self {
            write_consistency: node_consistency,
            gc_grace_secs: cfg.gc_grace_secs,
            gc_interval_secs: cfg.gc_interval_secs,
            upload_expiry_secs: cfg.multipart_expiry_secs,
            s3_max_connections: cfg.s3_max_connections,
            s3_max_inflight: cfg.s3_max_inflight,
            repair_rate_mbps: cfg.repair_rate_mbps,
            scrub_rate_mbps: cfg.scrub_rate_mbps,
            lifecycle_rate: cfg.lifecycle_rate,
        };
        match doc {
            Some(d) => node.overridden_by(d),
            None => node,
        }
    }

    fn overridden_by(&self, d: &ClusterConfig) -> Self {
        Self {
            write_consistency: d.write_consistency.unwrap_or(self.write_consistency),
            gc_grace_secs: d.gc_grace_secs.unwrap_or(self.gc_grace_secs),
            gc_interval_secs: d.gc_interval_secs.unwrap_or(self.gc_interval_secs),
            upload_expiry_secs: d.upload_expiry_secs.unwrap_or(self.upload_expiry_secs),
            s3_max_connections: d.s3_max_connections.unwrap_or(self.s3_max_connections),
            s3_max_inflight: d.s3_max_inflight.unwrap_or(self.s3_max_inflight),
            repair_rate_mbps: d.repair_rate_mbps.unwrap_or(self.repair_rate_mbps),
            scrub_rate_mbps: d.scrub_rate_mbps.unwrap_or(self.scrub_rate_mbps),
            lifecycle_rate: d.lifecycle_rate.unwrap_or(self.lifecycle_rate),
        }
    }

    /// Names of the start-time settings whose value differs between `self` and `other`.
    fn restart_settings_differing(&self, other: &Self) -> Vec<String> {
        let pairs = [
            ("gc.grace_secs", self.gc_grace_secs != other.gc_grace_secs),
            (
                "gc.interval_secs",
                self.gc_interval_secs != other.gc_interval_secs,
            ),
            (
                "uploads.expiry_secs",
                self.upload_expiry_secs != other.upload_expiry_secs,
            ),
        ];
        debug_assert!(pairs
            .iter()
            .all(|(n, _)| config_doc::setting(n).is_ok_and(|s| s.apply == ApplyMode::Restart)));
        pairs
            .into_iter()
            .filter(|(_, differ)| *differ)
            .map(|(n, _)| n.to_string())
            .collect()
    }
}

/// The throttles of the workers whose rate is a live setting (shared with the workers).
#[derive(Clone, Debug, Default)]
pub struct WorkerRates {
    /// The chunk-sync worker's (`repair.rate_mbps`).
    pub repair: cairn_worker::RateLimit,
    /// The scrubber's (`scrub.rate_mbps`).
    pub scrub: cairn_worker::RateLimit,
    /// The lifecycle worker's (`lifecycle.rate`, object versions per second).
    pub lifecycle: cairn_worker::RateLimit,
}

impl WorkerRates {
    /// Throttles at the rates `e` names.
    pub fn new(e: &Effective) -> Self {
        let r = Self::default();
        r.apply(e);
        r
    }

    fn apply(&self, e: &Effective) {
        self.repair.set(mbps(e.repair_rate_mbps));
        self.scrub.set(mbps(e.scrub_rate_mbps));
        self.lifecycle.set(e.lifecycle_rate);
    }
}

/// What applying the configuration turns live on this node, shared with what it governs.
#[derive(Clone)]
pub struct LiveKnobs {
    /// The S3 listener's caps.
    pub s3_limits: cairn_s3::S3Limits,
    /// The repair and scrub throttles.
    pub rates: WorkerRates,
}

/// Bytes per second of a rate in megabytes (10^6 bytes) per second.
fn mbps(n: u64) -> u64 {
    n.saturating_mul(1_000_000)
}

/// What this node has applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    /// The configuration version applied (0: none seen yet).
    pub version: u64,
    /// Settings changed since this node started that it applies only at its next start.
    pub restart_required: Vec<String>,
}

/// One node's configuration state as gossip (or, for this node, the runtime) reports it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NodeConfigState {
    pub node_id: String,
    /// up, suspect, down or unknown (gossip's view).
    pub health: String,
    /// The configuration version the node applied (None: not reported yet).
    pub applied_version: Option<u64>,
    /// Settings the node applies only after a restart.
    pub restart_required: Vec<String>,
}

/// The node's configuration watcher and its applied state.
pub struct ConfigRuntime {
    node_id: String,
    registry: Arc<cairn_raft::Registry>,
    chunks: Arc<ReplicatedChunks>,
    /// The S3 listener's caps (resized live).
    s3_limits: cairn_s3::S3Limits,
    /// The repair and scrub throttles (set live).
    rates: WorkerRates,
    /// Weak: the server shuts gossip down by unwrapping its only `Arc`.
    gossip: Option<Weak<Gossip>>,
    /// The node's own default write consistency (used when the cluster sets none).
    node_consistency: WriteConsistency,
    /// What the node's own settings say (start-time settings compare to `started`).
    node: Effective,
    /// The start-time settings this process runs with.
    started: Effective,
    applied: Mutex<Applied>,
}

impl ConfigRuntime {
    pub fn new(
        node_id: String,
        registry: Arc<cairn_raft::Registry>,
        chunks: Arc<ReplicatedChunks>,
        knobs: LiveKnobs,
        gossip: Option<Arc<Gossip>>,
        node: Effective,
        started: Effective,
    ) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            registry,
            chunks,
            s3_limits: knobs.s3_limits,
            rates: knobs.rates,
            gossip: gossip.as_ref().map(Arc::downgrade),
            node_consistency: node.write_consistency,
            node,
            started,
            applied: Mutex::new(Applied::default()),
        })
    }

    /// What this node has applied.
    pub fn applied(&self) -> Applied {
        self.applied.lock().clone()
    }

    /// Applies the system group's configuration as this node's replica has it, if its version
    /// is newer than the one applied; returns the applied state.
    pub fn refresh(&self) -> Applied {
        let doc = match self.registry.meta().cluster_config(SYSTEM_GROUP) {
            Ok(Some(d)) => d,
            Ok(None) => return self.applied(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the cluster configuration");
                return self.applied();
            }
        };
        if doc.version <= self.applied.lock().version {
            return self.applied();
        }
        let wanted = self.node.overridden_by(&doc);
        // Live: the default write consistency of chunk writes.
        let consistency = doc.write_consistency.unwrap_or(self.node_consistency);
        self.chunks.set_write_consistency(consistency);
        self.s3_limits
            .connections
            .resize(wanted.s3_max_connections as usize);
        self.s3_limits
            .in_flight
            .resize(wanted.s3_max_inflight as usize);
        self.rates.apply(&wanted);
        let restart_required = self.started.restart_settings_differing(&wanted);
        let applied = Applied {
            version: doc.version,
            restart_required,
        };
        tracing::info!(
            version = doc.version,
            write_consistency = consistency.as_str(),
            s3_max_connections = wanted.s3_max_connections,
            s3_max_inflight = wanted.s3_max_inflight,
            repair_rate_mbps = wanted.repair_rate_mbps,
            scrub_rate_mbps = wanted.scrub_rate_mbps,
            lifecycle_rate = wanted.lifecycle_rate,
            restart_required = ?applied.restart_required,
            "applied cluster configuration"
        );
        if let Some(g) = self.gossip.as_ref().and_then(Weak::upgrade) {
            g.set(GOSSIP_VERSION, &applied.version.to_string());
            g.set(GOSSIP_RESTART, &applied.restart_required.join(","));
        }
        *self.applied.lock() = applied.clone();
        applied
    }

    /// Every node's configuration state: from gossip when the node gossips, else this node's.
    pub fn nodes(&self) -> Vec<NodeConfigState> {
        let me = self.applied();
        let Some(g) = self.gossip.as_ref().and_then(Weak::upgrade) else {
            return vec![NodeConfigState {
                node_id: self.node_id.clone(),
                health: "up".into(),
                applied_version: Some(me.version),
                restart_required: me.restart_required,
            }];
        };
        g.members()
            .into_iter()
            .map(|(id, health, meta)| {
                let mine = id == self.node_id;
                NodeConfigState {
                    health: match health {
                        Health::Up => "up",
                        Health::Suspect => "suspect",
                        Health::Down => "down",
                        Health::Unknown => "unknown",
                    }
                    .into(),
                    applied_version: if mine {
                        Some(me.version)
                    } else {
                        meta.get(GOSSIP_VERSION).and_then(|v| v.parse().ok())
                    },
                    restart_required: if mine {
                        me.restart_required.clone()
                    } else {
                        meta.get(GOSSIP_RESTART)
                            .map(|v| {
                                v.split(',')
                                    .filter(|s| !s.is_empty())
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default()
                    },
                    node_id: id,
                }
            })
            .collect()
    }

    /// Re-applies whenever the configuration version changes (checked every `period`) until
    /// `shutdown` flips to true.
    pub fn spawn(self: &Arc<Self>, period: Duration, mut shutdown: watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                this.refresh();
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Effective {
        Effective {
            write_consistency: WriteConsistency::Quorum,
            gc_grace_secs: 600,
            gc_interval_secs: 60,
            upload_expiry_secs: 86_400,
            s3_max_connections: 1024,
            s3_max_inflight: 256,
            repair_rate_mbps: 0,
            scrub_rate_mbps: 8,
            lifecycle_rate: 1000,
        }
    }

    #[test]
    fn the_cluster_overrides_what_it_sets() {
        let doc = ClusterConfig {
            gc_grace_secs: Some(30),
            write_consistency: Some(WriteConsistency::All),
            ..Default::default()
        };
        let e = node().overridden_by(&doc);
        assert_eq!(e.gc_grace_secs, 30);
        assert_eq!(e.write_consistency, WriteConsistency::All);
        assert_eq!(e.gc_interval_secs, 60);
        assert_eq!(
            node().restart_settings_differing(&e),
            vec!["gc.grace_secs".to_string()]
        );
        assert!(node().restart_settings_differing(&node()).is_empty());
    }

    #[test]
    fn the_repair_and_scrub_rates_apply_live() {
        let rates = WorkerRates::new(&node());
        assert_eq!((rates.repair.get(), rates.scrub.get()), (0, 8_000_000));
        let doc = ClusterConfig {
            repair_rate_mbps: Some(1),
            scrub_rate_mbps: Some(2),
            lifecycle_rate: Some(5),
            ..Default::default()
        };
        let wanted = node().overridden_by(&doc);
        // Live settings never wait for a restart.
        assert!(node().restart_settings_differing(&wanted).is_empty());
        let shared = rates.clone();
        rates.apply(&wanted);
        assert_eq!(
            (shared.repair.get(), shared.scrub.get()),
            (1_000_000, 2_000_000)
        );
        assert_eq!(shared.lifecycle.get(), 5);
    }
}
