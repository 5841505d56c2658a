//! Prometheus metrics of the Raft groups hosted on this node, by group kind (`system` for group
//! 0, `partition` for the others). Registered in the node's `cairn`-prefixed registry as:
//!
//! - `cairn_raft_proposals_total{kind,outcome}` — proposals made on this node as leader, by
//!   outcome (`ok`, `not_leader`, `no_quorum`, `timeout`, `error`);
//! - `cairn_raft_commit_duration_seconds{kind}` — histogram of the time from proposal to
//!   committed and applied on this leader;
//! - `cairn_raft_leader_changes_total{kind}` — leader changes seen by this node's replicas;
//! - `cairn_raft_snapshots_total{kind}` — snapshots taken or installed by this node's replicas;
//! - gauges read at scrape time from openraft's metrics: `cairn_raft_groups{kind}` (groups
//!   this node holds a replica of), `cairn_raft_leaders{kind}` (groups it leads),
//!   `cairn_raft_groups_leaderless{kind}` (replicas that know no leader),
//!   `cairn_raft_log_entries{kind}` (entries kept in the logs, since the last compaction),
//!   `cairn_raft_apply_lag_entries{kind}` (largest gap between a replica's last log entry and
//!   its last applied one), `cairn_raft_replication_lag_entries{kind}` (largest gap between a
//!   led group's last entry and a follower's matched one), `cairn_raft_quorum_ack_age_seconds
//!   {kind}` (oldest quorum acknowledgement among the groups led here);
//! - `cairn_raft_batch_calls_total`, `cairn_raft_batch_messages_total` — peer batching.
//!
//! Every `kind` label value is created up front so queries find the series before the first
//! event.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::network::BatchStats;
use crate::GroupId;

/// The kind of a Raft group, the `kind` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// Group 0: the cluster catalog.
    System,
    /// Groups 1..=P: object metadata.
    Partition,
}

impl GroupKind {
    pub const ALL: [GroupKind; 2] = [GroupKind::System, GroupKind::Partition];

    /// The kind of `group`.
    pub fn of(group: GroupId) -> Self {
        if group == cairn_meta::placement::SYSTEM_GROUP {
            GroupKind::System
        } else {
            GroupKind::Partition
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::System => "system",
            GroupKind::Partition => "partition",
        }
    }
}

/// How a proposal ended, the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    NotLeader,
    NoQuorum,
    Timeout,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::NotLeader,
        Outcome::NoQuorum,
        Outcome::Timeout,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotLeader => "not_leader",
            Outcome::NoQuorum => "no_quorum",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProposalLabels {
    kind: &'static str,
    outcome: &'static str,
}

fn kind(k: GroupKind) -> KindLabels {
    KindLabels { kind: k.as_str() }
}

fn commit_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

type Metrics = openraft::RaftMetrics<u64, openraft::BasicNode>;

/// The event counters of the Raft groups; cheap to clone. The gauges are read from openraft's
/// metrics at scrape time (see [`RaftMetrics::register`]).
#[derive(Clone)]
pub struct RaftMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    proposals: Family<ProposalLabels, Counter>,
    commit: Family<KindLabels, Histogram, fn() -> Histogram>,
    leader_changes: Family<KindLabels, Counter>,
    snapshots: Family<KindLabels, Counter>,
}

impl Default for RaftMetrics {
    fn default() -> Self {
        let inner = Inner {
            proposals: Family::default(),
            commit: Family::new_with_constructor(commit_histogram as fn() -> Histogram),
            leader_changes: Family::default(),
            snapshots: Family::default(),
        };
        for k in GroupKind::ALL {
            for o in Outcome::ALL {
                let _ = inner.proposals.get_or_create(&ProposalLabels {
                    kind: k.as_str(),
                    outcome: o.as_str(),
                });
            }
            let _ = inner.commit.get_or_create(&kind(k));
            let _ = inner.leader_changes.get_or_create(&kind(k));
            let _ = inner.snapshots.get_or_create(&kind(k));
        }
        Self {
            inner: Arc::new(inner),
        }
    }
}

impl RaftMetrics {
    /// Counts a proposal to `group` that ended with `outcome` after `elapsed`; the commit
    /// histogram only takes successful ones.
    pub fn proposal(&self, group: GroupId, outcome: Outcome, elapsed: Duration) {
        let k = GroupKind::of(group);
        self.inner
            .proposals
            .get_or_create(&ProposalLabels {
                kind: k.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
        if outcome == Outcome::Ok {
            self.inner
                .commit
                .get_or_create(&kind(k))
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Registers the counters, the scrape-time gauges over `groups` (openraft's metrics
    /// channels of this node's groups) and the peer batching counters.
    pub fn register(
        &self,
        registry: &mut Registry,
        node_id: u64,
        groups: Vec<(GroupId, watch::Receiver<Metrics>)>,
        batches: &BatchStats,
    ) {
        let r = registry.sub_registry_with_prefix("raft");
        r.register(
            "proposals",
            "Raft proposals made on this node as leader, by group kind and outcome",
            self.inner.proposals.clone(),
        );
        r.register(
            "commit_duration_seconds",
            "Time from a proposal to its entry being committed and applied on this leader",
            self.inner.commit.clone(),
        );
        r.register(
            "leader_changes",
            "Leader changes seen by this node's replicas",
            self.inner.leader_changes.clone(),
        );
        r.register(
            "snapshots",
            "Snapshots taken or installed by this node's replicas",
            self.inner.snapshots.clone(),
        );
        r.register(
            "batch_calls",
            "Raft batch calls sent to peers (each carries many groups' messages)",
            batches.calls.clone(),
        );
        r.register(
            "batch_messages",
            "Raft appends and votes sent to peers inside batch calls",
            batches.messages.clone(),
        );
        r.register_collector(Box::new(GroupGauges { node_id, groups }));
    }

    /// Follows `group`'s openraft metrics until the group shuts down, counting leader changes
    /// and snapshots.
    pub fn spawn_watcher(&self, group: GroupId, mut rx: watch::Receiver<Metrics>) {
        let me = self.clone();
        let k = GroupKind::of(group);
        tokio::spawn(async move {
            let mut seen = Seen::from(&rx.borrow());
            while rx.changed().await.is_ok() {
                let events = seen.update(&rx.borrow());
                if events.leader_changed {
                    me.inner.leader_changes.get_or_create(&kind(k)).inc();
                }
                if events.snapshot {
                    me.inner.snapshots.get_or_create(&kind(k)).inc();
                }
            }
        });
    }
}

/// What a watcher remembers of a group between two metrics updates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Seen {
    /// The last leader known (a leaderless moment during an election does not reset it).
    leader: Option<u64>,
    snapshot: Option<u64>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Events {
    leader_changed: bool,
    snapshot: bool,
}

impl Seen {
    fn from(m: &Metrics) -> Self {
        Self {
            leader: m.current_leader,
            snapshot: m.snapshot.map(|s| s.index),
        }
    }

    /// Takes the new metrics `m`; returns what happened since the last ones.
    fn update(&mut self, m: &Metrics) -> Events {
        self.observe(m.current_leader, m.snapshot.map(|s| s.index))
    }

    fn observe(&mut self, leader: Option<u64>, snapshot: Option<u64>) -> Events {
        let mut ev = Events::default();
        if let Some(l) = leader {
            // The first leader ever seen counts too: the group changed from none to one.
            if self.leader != Some(l) {
                ev.leader_changed = true;
                self.leader = Some(l);
            }
        }
        if snapshot.is_some() && snapshot != self.snapshot {
            ev.snapshot = true;
            self.snapshot = snapshot;
        }
        ev
    }
}

/// Per-kind summary of the groups at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
struct KindSummary {
    groups: i64,
    leaders: i64,
    leaderless: i64,
    log_entries: i64,
    apply_lag: i64,
    replication_lag: i64,
    quorum_ack_age_secs: f64,
}

/// Adds one group's openraft metrics to its kind's summary (groups this node holds no replica
/// of are skipped).
fn summarize(node_id: u64, m: &Metrics, s: &mut KindSummary) {
    if m.membership_config
        .membership()
        .get_node(&node_id)
        .is_none()
    {
        return;
    }
    s.groups += 1;
    let last = m.last_log_index.unwrap_or(0);
    let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
    // Indexes start at 0; `purged` is the last entry removed by compaction.
    s.log_entries += match (m.last_log_index, m.purged) {
        (None, _) => 0,
        (Some(l), None) => l as i64 + 1,
        (Some(l), Some(p)) => l.saturating_sub(p.index) as i64,
    };
    s.apply_lag = s.apply_lag.max(last.saturating_sub(applied) as i64);
    match m.current_leader {
        None => s.leaderless += 1,
        Some(l) if l == node_id => {
            s.leaders += 1;
            if let Some(repl) = &m.replication {
                for matched in repl.values() {
                    let matched = matched.map(|l| l.index).unwrap_or(0);
                    s.replication_lag = s.replication_lag.max(last.saturating_sub(matched) as i64);
                }
            }
            if let Some(ms) = m.millis_since_quorum_ack {
                s.quorum_ack_age_secs = s.quorum_ack_age_secs.max(ms as f64 / 1000.0);
            }
        }
        Some(_) => {}
    }
}

/// An integer gauge of the summary: name, help, how to read it.
type IntGauge = (&'static str, &'static str, fn(&KindSummary) -> i64);

/// The scrape-time gauges over the groups' openraft metrics.
struct GroupGauges {
    node_id: u64,
    groups: Vec<(GroupId, watch::Receiver<Metrics>)>,
}

impl std::fmt::Debug for GroupGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupGauges")
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl GroupGauges {
    fn summaries(&self) -> [(GroupKind, KindSummary); 2] {
        let mut sys = KindSummary::default();
        let mut part = KindSummary::default();
        for (group, rx) in &self.groups {
            let s = match GroupKind::of(*group) {
                GroupKind::System => &mut sys,
                GroupKind::Partition => &mut part,
            };
            summarize(self.node_id, &rx.borrow(), s);
        }
        [(GroupKind::System, sys), (GroupKind::Partition, part)]
    }
}

impl Collector for GroupGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let summaries = self.summaries();
        let int_gauges: [IntGauge; 6] = [
            ("groups", "Raft groups this node holds a replica of", |s| {
                s.groups
            }),
            ("leaders", "Raft groups this node leads", |s| s.leaders),
            (
                "groups_leaderless",
                "Replicas on this node that know no leader",
                |s| s.leaderless,
            ),
            (
                "log_entries",
                "Raft log entries kept on this node (since the last compaction)",
                |s| s.log_entries,
            ),
            (
                "apply_lag_entries",
                "Largest gap between a replica's last log entry and its last applied entry",
                |s| s.apply_lag,
            ),
            (
                "replication_lag_entries",
                "Largest gap between a group led here and its slowest follower",
                |s| s.replication_lag,
            ),
        ];
        for (name, help, get) in int_gauges {
            let family = Family::<KindLabels, Gauge>::default();
            for (k, s) in &summaries {
                family.get_or_create(&kind(*k)).set(get(s));
            }
            let e = encoder.encode_descriptor(name, help, None, family.metric_type())?;
            family.encode(e)?;
        }
        let family = Family::<KindLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for (k, s) in &summaries {
            family.get_or_create(&kind(*k)).set(s.quorum_ack_age_secs);
        }
        let e = encoder.encode_descriptor(
            "quorum_ack_age_seconds",
            "Oldest quorum acknowledgement among the groups this node leads",
            None,
            family.metric_type(),
        )?;
        family.encode(e)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(GroupKind::of(0), GroupKind::System);
        assert_eq!(GroupKind::of(1), GroupKind::Partition);
        assert_eq!(GroupKind::of(64), GroupKind::Partition);
    }

    #[test]
    fn leader_changes_ignore_elections_in_between() {
        let mut s = Seen::default();
        assert!(
            s.observe(Some(1), None).leader_changed,
            "first leader counts"
        );
        assert!(!s.observe(Some(1), None).leader_changed);
        assert!(
            !s.observe(None, None).leader_changed,
            "an election is not a change yet"
        );
        assert!(
            !s.observe(Some(1), None).leader_changed,
            "same leader re-elected"
        );
        assert!(s.observe(Some(2), None).leader_changed);
    }

    #[test]
    fn snapshots_count_once_each() {
        let mut s = Seen::default();
        assert!(!s.observe(None, None).snapshot);
        assert!(s.observe(None, Some(100)).snapshot);
        assert!(!s.observe(None, Some(100)).snapshot);
        assert!(s.observe(None, Some(200)).snapshot);
    }

    fn log_id(index: u64) -> openraft::LogId<u64> {
        openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index)
    }

    fn group(voters: &[u64], leader: Option<u64>) -> Metrics {
        let nodes: std::collections::BTreeMap<u64, openraft::BasicNode> = voters
            .iter()
            .map(|&v| (v, openraft::BasicNode::new(format!("n{v}"))))
            .collect();
        let ids = voters.iter().copied().collect();
        let mut m = Metrics::new_initial(1);
        m.membership_config = Arc::new(openraft::StoredMembership::new(
            None,
            openraft::Membership::new(vec![ids], nodes),
        ));
        m.current_leader = leader;
        m
    }

    #[test]
    fn summaries_by_kind() {
        // Node 1 leads a partition 10 entries ahead of its slowest follower, follows another
        // that is 5 entries behind in applying, and is no member of a third.
        let mut led = group(&[1, 2, 3], Some(1));
        led.last_log_index = Some(110);
        led.last_applied = Some(log_id(110));
        led.purged = Some(log_id(49));
        led.replication = Some(
            [
                (1, Some(log_id(110))),
                (2, Some(log_id(105))),
                (3, Some(log_id(100))),
            ]
            .into_iter()
            .collect(),
        );
        led.millis_since_quorum_ack = Some(1500);
        let mut followed = group(&[1, 2, 3], Some(2));
        followed.last_log_index = Some(20);
        followed.last_applied = Some(log_id(15));
        let elsewhere = group(&[2, 3, 4], Some(2));
        let system = group(&[1, 2, 3], None);
        let (_, rx1) = watch::channel(led);
        let (_, rx2) = watch::channel(followed);
        let (_, rx3) = watch::channel(elsewhere);
        let (_, rx0) = watch::channel(system);
        let g = GroupGauges {
            node_id: 1,
            groups: vec![(0, rx0), (1, rx1), (2, rx2), (3, rx3)],
        };
        let [(_, sys), (_, part)] = g.summaries();
        assert_eq!(sys.groups, 1);
        assert_eq!(sys.leaderless, 1);
        assert_eq!(sys.leaders, 0);
        assert_eq!(part.groups, 2);
        assert_eq!(part.leaders, 1);
        assert_eq!(part.leaderless, 0);
        assert_eq!(part.log_entries, 61 + 21);
        assert_eq!(part.apply_lag, 5);
        assert_eq!(part.replication_lag, 10);
        assert_eq!(part.quorum_ack_age_secs, 1.5);
    }

    fn registry_text(m: &RaftMetrics) -> String {
        let mut registry = Registry::with_prefix("cairn");
        m.register(&mut registry, 1, Vec::new(), &BatchStats::default());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn every_series_exists_before_any_event() {
        let out = registry_text(&RaftMetrics::default());
        for line in [
            "cairn_raft_proposals_total{kind=\"system\",outcome=\"ok\"} 0",
            "cairn_raft_proposals_total{kind=\"partition\",outcome=\"no_quorum\"} 0",
            "cairn_raft_commit_duration_seconds_count{kind=\"partition\"} 0",
            "cairn_raft_leader_changes_total{kind=\"system\"} 0",
            "cairn_raft_snapshots_total{kind=\"partition\"} 0",
            "cairn_raft_batch_calls_total 0",
            "cairn_raft_groups{kind=\"system\"} 0",
            "cairn_raft_leaders{kind=\"partition\"} 0",
            "cairn_raft_groups_leaderless{kind=\"system\"} 0",
            "cairn_raft_log_entries{kind=\"partition\"} 0",
            "cairn_raft_apply_lag_entries{kind=\"system\"} 0",
            "cairn_raft_replication_lag_entries{kind=\"partition\"} 0",
            "cairn_raft_quorum_ack_age_seconds{kind=\"system\"} 0.0",
        ] {
            assert!(out.contains(line), "missing {line}:\n{out}");
        }
    }

    #[test]
    fn proposals_and_commit_latency() {
        let m = RaftMetrics::default();
        m.proposal(0, Outcome::Ok, Duration::from_millis(2));
        m.proposal(3, Outcome::Ok, Duration::from_millis(4));
        m.proposal(3, Outcome::Timeout, Duration::from_secs(10));
        let out = registry_text(&m);
        assert!(out.contains("cairn_raft_proposals_total{kind=\"system\",outcome=\"ok\"} 1"));
        assert!(
            out.contains("cairn_raft_proposals_total{kind=\"partition\",outcome=\"timeout\"} 1")
        );
        assert!(
            out.contains("cairn_raft_commit_duration_seconds_count{kind=\"partition\"} 1"),
            "timeouts are not commit latencies:\n{out}"
        );
    }
}
