//! Replica moves in progress (what the layout controller is moving now): a partition leader
//! records each move it drives here, from the moment it claims a slot in the rebalance plan
//! (`cairn_meta::rebalance`) until the new holders have the Raft replica and the partition's
//! chunks, and publishes its list in gossip (`moves`), so any node can answer
//! `/admin/rebalances` for the whole cluster without asking every leader.
//!
//! Metrics (registered by [`Moves::register_metrics`]): `cairn_rebalance_moves{state}` (the
//! plan's moves by state — planned, moving, done, cancelled — as this node's copy of the
//! system group sees them) and `cairn_rebalance_bytes_moved_total` (chunk bytes this node
//! copied to new holders).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_meta::rebalance::MoveCounts;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};

/// Gossip key under which a node publishes the moves it drives (JSON [`Published`]).
pub const GOSSIP_KEY: &str = "moves";

/// At most this many moves are published per node (the count is always exact).
const MAX_PUBLISHED: usize = 32;

/// Where a move is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovePhase {
    /// New replicas are being added as learners and catch up with the log.
    CatchingUp,
    /// The caught-up replicas are being made voters (and removed ones dropped).
    ChangingVoters,
    /// The new holders are sent the partition's referenced chunks they lack.
    CopyingChunks,
    /// In the plan, waiting for a slot (or for resume); no leader works on it yet.
    Planned,
    /// Holds a slot in the plan, but no leader reports progress on it now (between two
    /// attempts, or its leader changed).
    Pending,
}

/// One partition's replica move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Move {
    pub partition: u32,
    /// The node driving it (the partition's leader).
    pub node: String,
    /// Voters when the move started, and the layout's replicas it moves to (node ids).
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub phase: MovePhase,
    pub started_ms: i64,
    /// Chunk copies to make (referenced chunks × new holders; known once copying starts)
    /// and made so far, and the bytes sent.
    #[serde(default)]
    pub chunks_total: u64,
    #[serde(default)]
    pub chunks_done: u64,
    #[serde(default)]
    pub bytes_moved: u64,
}

impl Move {
    /// Bytes this move will have sent: what it sent, scaled to every chunk copy it has to
    /// check (an estimate until it is done; 0 before copying starts).
    pub fn bytes_estimate(&self) -> u64 {
        if self.chunks_done == 0 {
            return self.bytes_moved;
        }
        let per = self.bytes_moved as f64 / self.chunks_done as f64;
        (per * self.chunks_total.max(self.chunks_done) as f64) as u64
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// `cairn_rebalance_*` (see the module comment).
#[derive(Clone, Debug, Default)]
struct Metrics {
    moves: Family<StateLabels, Gauge>,
    bytes_moved: Counter,
}

/// What a node publishes in gossip.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub count: usize,
    pub moves: Vec<Move>,
}

/// The moves this node drives.
#[derive(Default)]
pub struct Moves {
    inner: Mutex<BTreeMap<u32, Move>>,
    /// Bumped on every change (so publishing happens only when something changed).
    version: AtomicU64,
    metrics: Metrics,
}

impl Moves {
    /// Records that a move of `m.partition` started (replacing any earlier record of it).
    pub fn start(&self, m: Move) {
        self.inner.lock().insert(m.partition, m);
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves `partition`'s record to `phase`.
    pub fn set_phase(&self, partition: u32, phase: MovePhase) {
        if let Some(m) = self.inner.lock().get_mut(&partition) {
            m.phase = phase;
        }
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// The move of `partition` ended (done or failed; a failed one is retried by the next
    /// controller pass and recorded again).
    pub fn finish(&self, partition: u32) {
        self.inner.lock().remove(&partition);
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// Records progress of `partition`'s chunk copies: `total` copies to check, `done`
    /// checked so far, `bytes` more sent (counted in `cairn_rebalance_bytes_moved_total`).
    pub fn progress(&self, partition: u32, total: u64, done: u64, bytes: u64) {
        if let Some(m) = self.inner.lock().get_mut(&partition) {
            m.chunks_total = total;
            m.chunks_done = done;
            m.bytes_moved = m.bytes_moved.saturating_add(bytes);
        }
        self.metrics.bytes_moved.inc_by(bytes);
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes `partition`'s move sent so far (0 when this node does not drive it).
    pub fn bytes_moved(&self, partition: u32) -> u64 {
        self.inner
            .lock()
            .get(&partition)
            .map_or(0, |m| m.bytes_moved)
    }

    /// Sets `cairn_rebalance_moves{state}` from the plan's counts.
    pub fn set_plan_counts(&self, c: MoveCounts) {
        for (state, n) in [
            ("planned", c.planned),
            ("moving", c.moving),
            ("done", c.done),
            ("cancelled", c.cancelled),
        ] {
            self.metrics
                .moves
                .get_or_create(&StateLabels { state })
                .set(n as i64);
        }
    }

    /// Registers `rebalance_moves{state}` and `rebalance_bytes_moved` (a counter: exposed
    /// as `cairn_rebalance_bytes_moved_total`) in the node's registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        // Every state is present from the start, so a query finds a 0 rather than nothing.
        self.set_plan_counts(MoveCounts::default());
        registry.register(
            "rebalance_moves",
            "Partition replica moves of the rebalance plan, by state (planned, moving, done, cancelled)",
            self.metrics.moves.clone(),
        );
        registry.register(
            "rebalance_bytes_moved",
            "Chunk bytes this node copied to the new holders of partitions it moved",
            self.metrics.bytes_moved.clone(),
        );
    }

    /// Moves in progress, by partition.
    pub fn list(&self) -> Vec<Move> {
        self.inner.lock().values().cloned().collect()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// The gossip value for the current moves.
    pub fn published(&self) -> String {
        let all = self.list();
        let p = Published {
            count: all.len(),
            moves: all.into_iter().take(MAX_PUBLISHED).collect(),
        };
        serde_json::to_string(&p).unwrap_or_default()
    }

    /// Publishes the current moves in gossip when they changed since `*seen`.
    pub fn publish(&self, gossip: &crate::gossip::Gossip, seen: &mut Option<u64>) {
        let v = self.version();
        if *seen != Some(v) {
            gossip.set(GOSSIP_KEY, &self.published());
            *seen = Some(v);
        }
    }
}

/// The rebalance plan's status as the management API and the CLI show it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanStatus {
    /// The layout version the plan moves to (0: no plan yet).
    pub layout_version: u64,
    /// `paused` (whatever is left), else `idle` (no plan yet), `running` or `done` (every
    /// move done or cancelled).
    pub state: String,
    pub paused: bool,
    /// The cluster-wide bound on moves in flight (`rebalance.max_moves`).
    pub max_moves: usize,
    pub planned: usize,
    pub moving: usize,
    pub done: usize,
    pub cancelled: usize,
    /// Chunk bytes copied to new holders: by finished moves, plus what moves in flight sent.
    pub bytes_moved: u64,
    /// Estimated bytes the whole plan copies (moves in flight scaled from their progress,
    /// planned ones at the average of the others).
    pub bytes_total: u64,
    /// Bytes per second since the plan started.
    pub rate_bytes_per_sec: u64,
    /// Seconds left at that rate (None: done, or no rate yet).
    pub eta_secs: Option<u64>,
    pub started_ms: i64,
    /// Every partition of the plan, by partition.
    pub partitions: Vec<cairn_meta::rebalance::PlannedMove>,
}

/// The status of `plan` with the moves in flight `live` (the leaders' published progress),
/// at `now_ms`.
pub fn plan_status(
    plan: &cairn_meta::rebalance::RebalancePlan,
    live: &[Move],
    max_moves: usize,
    now_ms: i64,
) -> PlanStatus {
    use cairn_meta::rebalance::MoveState;
    let c = plan.counts();
    let live_of = |p: u32| live.iter().find(|m| m.partition == p);
    let mut moved = 0u64;
    let mut total = 0u64;
    let mut measured = 0u64;
    for m in plan.moves.values() {
        match m.state {
            MoveState::Done => {
                moved += m.bytes;
                total += m.bytes;
                measured += 1;
            }
            MoveState::Moving => {
                let (sent, estimate) =
                    live_of(m.partition).map_or((0, 0), |l| (l.bytes_moved, l.bytes_estimate()));
                moved += m.bytes + sent;
                total += m.bytes + estimate.max(sent);
                if estimate > 0 {
                    measured += 1;
                }
            }
            MoveState::Planned => moved += m.bytes,
            MoveState::Cancelled => {}
        }
    }
    // Planned moves at the average of the measured ones (nothing to go by: 0).
    if let Some(avg) = total.checked_div(measured) {
        total += avg * c.planned as u64;
    }
    let total = total.max(moved);
    let finished = plan.finished();
    // A finished plan's rate is over its run, up to its last move.
    let end = if finished {
        plan.moves
            .values()
            .map(|m| m.done_ms)
            .max()
            .unwrap_or(now_ms)
    } else {
        now_ms
    };
    let secs = (end.saturating_sub(plan.started_ms).max(1000) as u64) / 1000;
    let rate = if plan.started_ms > 0 { moved / secs } else { 0 };
    let eta_secs = match (finished, rate) {
        (true, _) => Some(0),
        (false, 0) => None,
        (false, r) => Some(total.saturating_sub(moved) / r),
    };
    // Paused first: the operator's switch is what matters most while it is on.
    let state = if plan.paused {
        "paused"
    } else if plan.layout_version == 0 && plan.moves.is_empty() {
        "idle"
    } else if finished {
        "done"
    } else {
        "running"
    };
    PlanStatus {
        layout_version: plan.layout_version,
        state: state.into(),
        paused: plan.paused,
        max_moves,
        planned: c.planned,
        moving: c.moving,
        done: c.done,
        cancelled: c.cancelled,
        bytes_moved: moved,
        bytes_total: total,
        rate_bytes_per_sec: rate,
        eta_secs,
        started_ms: plan.started_ms,
        partitions: plan.moves.values().cloned().collect(),
    }
}

/// `live` (the moves leaders report) reconciled with the plan, by partition: reports the plan
/// shows ended after they started are dropped (gossip lags behind the plan), and the plan's
/// unfinished moves no leader reports are added (`Planned` or `Pending`). The result is every
/// move not done yet, so a check such as "is data still moving off node X" sees the planned
/// ones too. Also returns how many reports were dropped.
pub fn with_planned(
    mut live: Vec<Move>,
    plan: &cairn_meta::rebalance::RebalancePlan,
) -> (Vec<Move>, usize) {
    use cairn_meta::rebalance::MoveState;
    let before = live.len();
    live.retain(|l| {
        !plan
            .moves
            .get(&l.partition)
            .is_some_and(|m| !m.state.active() && m.done_ms >= l.started_ms)
    });
    let dropped = before - live.len();
    for m in plan.moves.values() {
        if !m.state.active() || live.iter().any(|l| l.partition == m.partition) {
            continue;
        }
        live.push(Move {
            partition: m.partition,
            node: m.node.clone().unwrap_or_default(),
            from: m.from.clone(),
            to: m.to.clone(),
            phase: match m.state {
                MoveState::Moving => MovePhase::Pending,
                _ => MovePhase::Planned,
            },
            started_ms: m.started_ms,
            chunks_total: 0,
            chunks_done: 0,
            bytes_moved: 0,
        });
    }
    live.sort_by_key(|m| m.partition);
    (live, dropped)
}

/// A gossiped value back into moves (None when absent or unreadable).
pub fn parse_published(value: &str) -> Option<Published> {
    serde_json::from_str(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(p: u32) -> Move {
        Move {
            partition: p,
            node: "n1".into(),
            from: vec!["n1".into()],
            to: vec!["n1".into(), "n2".into()],
            phase: MovePhase::CatchingUp,
            started_ms: 5,
            chunks_total: 0,
            chunks_done: 0,
            bytes_moved: 0,
        }
    }

    #[test]
    fn moves_are_tracked_and_published_round_trip() {
        let m = Moves::default();
        let v0 = m.version();
        m.start(mv(3));
        m.start(mv(1));
        m.set_phase(3, MovePhase::ChangingVoters);
        assert!(m.version() > v0);
        let list = m.list();
        assert_eq!(
            list.iter().map(|x| x.partition).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(list[1].phase, MovePhase::ChangingVoters);
        let p = parse_published(&m.published()).unwrap();
        assert_eq!((p.count, p.moves), (2, list));
        m.finish(1);
        m.finish(3);
        assert!(m.list().is_empty());
        assert_eq!(parse_published(&m.published()).unwrap().count, 0);
        assert!(parse_published("garbage").is_none());
    }

    #[test]
    fn progress_accumulates_bytes_and_estimates_the_rest() {
        let m = Moves::default();
        m.start(mv(2));
        m.progress(2, 10, 2, 200);
        m.progress(2, 10, 5, 300);
        assert_eq!(m.bytes_moved(2), 500);
        let l = m.list();
        assert_eq!((l[0].chunks_total, l[0].chunks_done), (10, 5));
        // 500 bytes for 5 of 10 copies: about 1000 in all.
        assert_eq!(l[0].bytes_estimate(), 1000);
        assert_eq!(m.bytes_moved(9), 0);
    }

    #[test]
    fn plan_status_counts_bytes_and_estimates_what_is_left() {
        use cairn_meta::model::LayoutRecord;
        use cairn_meta::rebalance::RebalancePlan;
        let l = |v: u64, parts: &[&[&str]]| LayoutRecord {
            version: v,
            replication: 2,
            assignments: parts
                .iter()
                .map(|p| p.iter().map(|s| s.to_string()).collect())
                .collect(),
            created_ms: 0,
        };
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut plan = RebalancePlan::default();
        assert_eq!(plan_status(&plan, &[], 2, 0).state, "idle");
        let l1 = l(1, &[&["a", "b"], &["a", "b"], &["a", "b"]]);
        let l2 = l(2, &[&["a", "c"], &["a", "c"], &["a", "c"]]);
        plan.on_layout(Some(&l1), &l2, 1_000);
        plan.start(0, "a", &ids(&["a", "b"]), &ids(&["a", "c"]), 2, 1_000)
            .unwrap();
        plan.finish(0, &ids(&["a", "c"]), 1_000, 2_000);
        plan.start(1, "a", &ids(&["a", "b"]), &ids(&["a", "c"]), 2, 2_000)
            .unwrap();
        let mut live = mv(1);
        live.chunks_total = 4;
        live.chunks_done = 2;
        live.bytes_moved = 500;
        let st = plan_status(&plan, &[live], 2, 11_000);
        assert_eq!(
            (st.state.as_str(), st.planned, st.moving, st.done),
            ("running", 1, 1, 1)
        );
        assert_eq!(st.bytes_moved, 1_500);
        // Done 1000 + in flight ~1000 + one planned at their average 1000.
        assert_eq!(st.bytes_total, 3_000);
        assert_eq!(st.rate_bytes_per_sec, 150);
        assert_eq!(st.eta_secs, Some(10));
        plan.paused = true;
        assert_eq!(plan_status(&plan, &[], 2, 11_000).state, "paused");
        plan.finish(1, &ids(&["a", "c"]), 1_000, 12_000);
        plan.start(2, "a", &ids(&["a", "b"]), &ids(&["a", "c"]), 2, 12_000)
            .unwrap_err();
        plan.paused = false;
        plan.start(2, "a", &ids(&["a", "b"]), &ids(&["a", "c"]), 2, 12_000)
            .unwrap();
        plan.finish(2, &ids(&["a", "c"]), 1_000, 13_000);
        let st = plan_status(&plan, &[], 2, 99_000);
        assert_eq!(
            (st.state.as_str(), st.done, st.eta_secs),
            ("done", 3, Some(0))
        );
        assert_eq!((st.bytes_moved, st.bytes_total), (3_000, 3_000));
        assert_eq!(st.rate_bytes_per_sec, 250);
    }

    #[test]
    fn planned_moves_join_the_reported_ones() {
        use cairn_meta::model::LayoutRecord;
        use cairn_meta::rebalance::RebalancePlan;
        let l = |v: u64, parts: &[&[&str]]| LayoutRecord {
            version: v,
            replication: 2,
            assignments: parts
                .iter()
                .map(|p| p.iter().map(|s| s.to_string()).collect())
                .collect(),
            created_ms: 0,
        };
        let mut plan = RebalancePlan::default();
        plan.on_layout(
            Some(&l(
                1,
                &[&["n1", "n2"], &["n1", "n2"], &["n1", "n2"], &["n1", "n2"]],
            )),
            &l(
                2,
                &[&["n1", "n3"], &["n1", "n3"], &["n1", "n3"], &["n1", "n2"]],
            ),
            0,
        );
        let from = vec!["n1".to_string(), "n2".to_string()];
        let to = vec!["n1".to_string(), "n3".to_string()];
        plan.start(0, "n1", &from, &to, 2, 1).unwrap();
        plan.start(1, "n1", &from, &to, 2, 1).unwrap();
        // Partition 3 never moved in this plan; a stale report of an ended move is dropped.
        plan.moves.insert(
            3,
            cairn_meta::rebalance::PlannedMove {
                partition: 3,
                from: from.clone(),
                to: to.clone(),
                state: cairn_meta::rebalance::MoveState::Done,
                node: Some("n1".into()),
                started_ms: 1,
                done_ms: 9,
                bytes: 0,
            },
        );
        let stale = mv(3);
        let (all, dropped) = with_planned(vec![mv(1), stale], &plan);
        assert_eq!(dropped, 1);
        let phases: Vec<(u32, MovePhase)> = all.iter().map(|m| (m.partition, m.phase)).collect();
        assert_eq!(
            phases,
            vec![
                (0, MovePhase::Pending),
                (1, MovePhase::CatchingUp),
                (2, MovePhase::Planned)
            ]
        );
        assert!(all[2].from.contains(&"n2".to_string()));
    }

    #[test]
    fn publishing_is_capped_but_counts_everything() {
        let m = Moves::default();
        for p in 0..(MAX_PUBLISHED as u32 + 5) {
            m.start(mv(p));
        }
        let p = parse_published(&m.published()).unwrap();
        assert_eq!(p.count, MAX_PUBLISHED + 5);
        assert_eq!(p.moves.len(), MAX_PUBLISHED);
    }
}
