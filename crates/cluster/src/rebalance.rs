//! Replica moves in progress (what the layout controller is moving now): a partition leader
//! records each move it drives here, from the moment it starts adding learners until the
//! voter set matches the layout, and publishes its list in gossip (`moves`), so any node can
//! answer `/admin/rebalances` for the whole cluster without asking every leader.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
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
