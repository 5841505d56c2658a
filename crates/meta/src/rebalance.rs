//! The rebalance plan (system group): which partitions a new layout moves, where each move is
//! (planned → moving → done, or cancelled before it started), and the operator's controls
//! (pause, cancel). Kept in the replicated state machine so that the cluster-wide bound on
//! moves in flight (`rebalance.max_moves`) survives leader changes and restarts: a partition
//! leader starts a move only once `Command::RebalanceStart` is applied, and that command is
//! refused while the plan is paused or `max_moves` moves are in flight.
//!
//! Rules, in the order they apply:
//! 1. A new layout (`SetLayout`) plans every partition whose replica set differs from where it
//!    is now: the `from` of an unfinished entry (the voters it has not left yet), else the
//!    previous layout's replicas. A planned entry the new layout sends back home is dropped.
//!    When nothing was left to do, the new layout starts a fresh plan (counters reset).
//! 2. A moving entry keeps its slot when a new layout changes its target; the driving leader
//!    finishes the voter change it started, and its `RebalanceFinish` (naming the replicas it
//!    reached) puts the entry back to planned from there.
//! 3. A move is done only when the new holders hold the partition's Raft replica *and* its
//!    chunks: the driving leader proposes `RebalanceFinish` after copying the chunks.
//! 4. Cancel drops the planned (not started) entries by writing a layout that keeps those
//!    partitions on their current replicas, and records a hold: the layout controller does not
//!    recompute a layout while its inputs (`Hold::expected`, the nodes a layout should place)
//!    are the ones seen at cancel time. Moves in flight finish.
//!
//! The pure plan logic is [`RebalancePlan`]'s methods; `MetaStore::apply_rebalance` applies
//! the commands.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandError, Response};
use crate::keys;
use crate::model::{ClusterConfig, LayoutRecord};
use crate::store::{decode, encode, encode_named, CLUSTER_CONFIG, SM_META};
use crate::{MetaError, MetaStore};

/// Moves in flight cluster-wide when `rebalance.max_moves` is unset.
pub const DEFAULT_MAX_MOVES: usize = 2;

/// `sm_meta` name of the plan (named-field msgpack, see [`RebalancePlan`]).
pub(crate) const PLAN: &str = "rebalance_plan";
/// `sm_meta` name of the layout record (shared with `store.rs`).
pub(crate) const LAYOUT: &str = "layout";

/// Where one partition's move is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MoveState {
    /// Waiting for a slot (or for the plan to be resumed).
    Planned,
    /// A partition leader holds a slot: adding learners, changing voters, copying chunks.
    Moving,
    /// The new holders have the Raft replica and every referenced chunk.
    Done,
    /// Dropped by a cancel before it started (the partition stays where it was).
    Cancelled,
}

impl MoveState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Moving => "moving",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
        }
    }

    /// Planned or moving: still to be done.
    pub fn active(self) -> bool {
        matches!(self, Self::Planned | Self::Moving)
    }
}

/// One partition in the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedMove {
    pub partition: u32,
    /// Replicas (node ids) the partition moves from: its voters when the move was planned.
    pub from: Vec<String>,
    /// Replicas the layout moves it to.
    pub to: Vec<String>,
    pub state: MoveState,
    /// The node (partition leader) that started it, while moving or once done.
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub started_ms: i64,
    #[serde(default)]
    pub done_ms: i64,
    /// Chunk bytes copied to the new holders (recorded when the move finishes).
    #[serde(default)]
    pub bytes: u64,
}

impl PlannedMove {
    /// Nodes in `to` and not in `from`: the ones that need the partition's chunks.
    pub fn new_holders(&self) -> Vec<String> {
        self.to
            .iter()
            .filter(|n| !self.from.contains(n))
            .cloned()
            .collect()
    }
}

/// The cancel's hold on layout recomputation (rule 4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hold {
    /// The layout version the cancel wrote.
    pub layout_version: u64,
    /// The nodes a layout should place, as seen when cancelling.
    pub expected: Vec<String>,
}

/// Move counts by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MoveCounts {
    pub planned: usize,
    pub moving: usize,
    pub done: usize,
    pub cancelled: usize,
}

/// The current plan and the operator's controls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RebalancePlan {
    /// The layout version the plan moves to (0: no plan yet).
    pub layout_version: u64,
    /// When the current plan started (a layout found nothing left to do before it).
    pub started_ms: i64,
    /// Paused by the operator: no move starts; moves in flight finish.
    pub paused: bool,
    pub moves: BTreeMap<u32, PlannedMove>,
    #[serde(default)]
    pub hold: Option<Hold>,
}

/// Why a partition leader may not start a move now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartRefused {
    #[error("rebalance is paused")]
    Paused,
    #[error("{0} moves are in flight (rebalance.max_moves)")]
    Busy(usize),
    /// The partition's voters already are the target and its move has ended (the asker's
    /// copy of the plan was behind).
    #[error("partition {0} has nothing left to move")]
    NothingToMove(u32),
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

impl RebalancePlan {
    pub fn counts(&self) -> MoveCounts {
        let mut c = MoveCounts::default();
        for m in self.moves.values() {
            match m.state {
                MoveState::Planned => c.planned += 1,
                MoveState::Moving => c.moving += 1,
                MoveState::Done => c.done += 1,
                MoveState::Cancelled => c.cancelled += 1,
            }
        }
        c
    }

    /// Whether every move of the plan has ended (done or cancelled).
    pub fn finished(&self) -> bool {
        !self.moves.values().any(|m| m.state.active())
    }

    /// Chunk bytes the finished moves copied.
    pub fn bytes_moved(&self) -> u64 {
        self.moves.values().map(|m| m.bytes).sum()
    }

    /// Rule 1 and 2: plans the moves from `prev` (None: the first layout, nothing moves) to
    /// `next`, adopted at `now_ms`.
    pub fn on_layout(&mut self, prev: Option<&LayoutRecord>, next: &LayoutRecord, now_ms: i64) {
        // A new layout supersedes a cancel's hold (the cancel's own layout sets it after).
        self.hold = None;
        let Some(prev) = prev else {
            return;
        };
        if self.finished() {
            self.moves.clear();
            self.started_ms = now_ms;
        }
        self.layout_version = next.version;
        for (p, to) in next.assignments.iter().enumerate() {
            let p = p as u32;
            let current = self.moves.get(&p).filter(|m| m.state.active()).cloned();
            match current {
                Some(mut m) if m.state == MoveState::Moving => {
                    m.to = to.clone();
                    self.moves.insert(p, m);
                }
                Some(m) if same_set(&m.from, to) => {
                    // Planned, and sent back home: nothing to move any more.
                    self.moves.remove(&p);
                }
                Some(mut m) => {
                    m.to = to.clone();
                    self.moves.insert(p, m);
                }
                None => {
                    let from = prev
                        .assignments
                        .get(p as usize)
                        .cloned()
                        .unwrap_or_default();
                    if from.is_empty() || same_set(&from, to) {
                        continue;
                    }
                    self.moves.insert(
                        p,
                        PlannedMove {
                            partition: p,
                            from,
                            to: to.clone(),
                            state: MoveState::Planned,
                            node: None,
                            started_ms: 0,
                            done_ms: 0,
                            bytes: 0,
                        },
                    );
                }
            }
        }
    }

    /// A partition leader (`node`) asks for a slot to move partition `p` from its voters
    /// `from` to `to`. A move already in flight is taken over (a new leader continues it)
    /// whatever the bound; otherwise refused while paused or at `max_moves`.
    pub fn start(
        &mut self,
        p: u32,
        node: &str,
        from: &[String],
        to: &[String],
        max_moves: usize,
        now_ms: i64,
    ) -> Result<(), StartRefused> {
        if let Some(m) = self.moves.get_mut(&p) {
            if m.state == MoveState::Moving {
                // A takeover: who drives it changes; where it started and its slot do not.
                m.node = Some(node.to_string());
                m.to = to.to_vec();
                return Ok(());
            }
        }
        if same_set(from, to) && self.moves.get(&p).is_none_or(|m| !m.state.active()) {
            return Err(StartRefused::NothingToMove(p));
        }
        if self.paused {
            return Err(StartRefused::Paused);
        }
        let moving = self.counts().moving;
        if moving >= max_moves.max(1) {
            return Err(StartRefused::Busy(moving));
        }
        if self.finished() && self.started_ms == 0 {
            self.started_ms = now_ms;
        }
        let m = self.moves.entry(p).or_insert_with(|| PlannedMove {
            partition: p,
            from: from.to_vec(),
            to: to.to_vec(),
            state: MoveState::Planned,
            node: None,
            started_ms: 0,
            done_ms: 0,
            bytes: 0,
        });
        if !m.state.active() {
            // A move nobody planned (voters off the layout after a failed change): a new entry.
            m.bytes = 0;
            m.done_ms = 0;
        }
        // The voters are the truth of where the partition is now; when they already are the
        // target, the plan's `from` still says who holds the chunks to copy.
        if !same_set(from, to) {
            m.from = from.to_vec();
        }
        m.to = to.to_vec();
        m.state = MoveState::Moving;
        m.node = Some(node.to_string());
        m.started_ms = now_ms;
        Ok(())
    }

    /// The leader moving `p` reached voters `reached` and copied `bytes` of chunks to the new
    /// holders: done when that is still the target, else planned again from there (rule 2).
    pub fn finish(&mut self, p: u32, reached: &[String], bytes: u64, now_ms: i64) {
        let Some(m) = self.moves.get_mut(&p) else {
            return;
        };
        if m.state != MoveState::Moving {
            return;
        }
        m.bytes = m.bytes.saturating_add(bytes);
        if same_set(&m.to, reached) {
            m.state = MoveState::Done;
            m.done_ms = now_ms;
        } else {
            m.from = reached.to_vec();
            m.state = MoveState::Planned;
            m.node = None;
        }
    }

    /// Rule 4: drops the planned moves. Returns the layout keeping them where they are (the
    /// next version of `current`) and the number dropped; None when nothing was planned.
    pub fn cancel(
        &mut self,
        current: &LayoutRecord,
        expected: &[String],
        now_ms: i64,
    ) -> Option<(LayoutRecord, usize)> {
        let planned: Vec<u32> = self
            .moves
            .values()
            .filter(|m| m.state == MoveState::Planned)
            .map(|m| m.partition)
            .collect();
        if planned.is_empty() {
            return None;
        }
        let mut next = current.clone();
        next.version = current.version + 1;
        next.created_ms = now_ms;
        for p in &planned {
            if let (Some(m), Some(slot)) =
                (self.moves.get_mut(p), next.assignments.get_mut(*p as usize))
            {
                slot.clone_from(&m.from);
                m.state = MoveState::Cancelled;
                m.done_ms = now_ms;
            }
        }
        self.layout_version = next.version;
        let mut expected = expected.to_vec();
        expected.sort();
        expected.dedup();
        self.hold = Some(Hold {
            layout_version: next.version,
            expected,
        });
        Some((next, planned.len()))
    }

    /// Whether the layout controller must leave layout `version` alone while the nodes a
    /// layout should place are `expected` (rule 4).
    pub fn holds(&self, version: u64, expected: &BTreeSet<String>) -> bool {
        self.hold.as_ref().is_some_and(|h| {
            h.layout_version == version
                && h.expected.iter().cloned().collect::<BTreeSet<_>>() == *expected
        })
    }
}

/// The bound on moves in flight set by `c` (`rebalance.max_moves`).
pub fn max_moves(c: Option<&ClusterConfig>) -> usize {
    c.and_then(|c| c.rebalance_max_moves)
        .map_or(DEFAULT_MAX_MOVES, |n| n as usize)
        .max(1)
}

impl MetaStore {
    /// The rebalance plan of `group` (the system group); the default (empty) plan before any.
    pub fn rebalance_plan(&self, group: u64) -> Result<RebalancePlan, MetaError> {
        Ok(self.get_sm_meta(group, PLAN)?.unwrap_or_default())
    }

    fn read_in<T: serde::de::DeserializeOwned>(
        txn: &WriteTransaction,
        group: u64,
        name: &str,
    ) -> Result<Option<T>, MetaError> {
        let meta = txn.open_table(SM_META)?;
        let v = meta.get(keys::sm_meta(group, name).as_slice())?;
        match v {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    pub(crate) fn read_plan(
        txn: &WriteTransaction,
        group: u64,
    ) -> Result<RebalancePlan, MetaError> {
        Ok(Self::read_in(txn, group, PLAN)?.unwrap_or_default())
    }

    pub(crate) fn write_plan(
        txn: &WriteTransaction,
        group: u64,
        plan: &RebalancePlan,
    ) -> Result<(), MetaError> {
        let mut meta = txn.open_table(SM_META)?;
        meta.insert(
            keys::sm_meta(group, PLAN).as_slice(),
            encode_named(plan)?.as_slice(),
        )?;
        Ok(())
    }

    /// Applies the rebalance commands (`RebalanceStart`, `RebalanceFinish`,
    /// `SetRebalancePaused`, `CancelRebalance`).
    pub(crate) fn apply_rebalance(
        &self,
        txn: &WriteTransaction,
        group: u64,
        cmd: &Command,
    ) -> Result<Response, MetaError> {
        let mut plan = Self::read_plan(txn, group)?;
        match cmd {
            Command::RebalanceStart {
                partition,
                node,
                from,
                to,
                at_ms,
            } => {
                let config: Option<ClusterConfig> = Self::read_in(txn, group, CLUSTER_CONFIG)?;
                let max = max_moves(config.as_ref());
                if let Err(e) = plan.start(*partition, node, from, to, max, *at_ms) {
                    return Ok(Response::Refused(CommandError::RebalanceRefused(
                        e.to_string(),
                    )));
                }
                Self::write_plan(txn, group, &plan)?;
                Ok(Response::Done)
            }
            Command::RebalanceFinish {
                partition,
                reached,
                bytes,
                at_ms,
            } => {
                plan.finish(*partition, reached, *bytes, *at_ms);
                Self::write_plan(txn, group, &plan)?;
                Ok(Response::Done)
            }
            Command::SetRebalancePaused { paused, at_ms } => {
                let before = std::mem::replace(&mut plan.paused, *paused);
                Self::write_plan(txn, group, &plan)?;
                if before != *paused {
                    let what = if *paused { "paused" } else { "resumed" };
                    self.audit(txn, group, *at_ms, format!("rebalance {what}"))?;
                }
                Ok(Response::Done)
            }
            Command::CancelRebalance { expected, at_ms } => {
                let Some(current) = Self::read_in::<LayoutRecord>(txn, group, LAYOUT)? else {
                    return Ok(Response::Refused(CommandError::RebalanceRefused(
                        "no layout yet: nothing to cancel".into(),
                    )));
                };
                let Some((next, dropped)) = plan.cancel(&current, expected, *at_ms) else {
                    self.audit(
                        txn,
                        group,
                        *at_ms,
                        "rebalance cancel: no planned move to drop".into(),
                    )?;
                    return Ok(Response::Done);
                };
                {
                    let mut meta = txn.open_table(SM_META)?;
                    meta.insert(
                        keys::sm_meta(group, LAYOUT).as_slice(),
                        encode(&next)?.as_slice(),
                    )?;
                }
                Self::write_plan(txn, group, &plan)?;
                self.audit(
                    txn,
                    group,
                    *at_ms,
                    format!(
                        "rebalance cancelled: {dropped} planned move(s) dropped, layout v{} keeps them in place",
                        next.version
                    ),
                )?;
                Ok(Response::Done)
            }
            _ => Ok(Response::Refused(CommandError::Invalid(
                "not a rebalance command".into(),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(version: u64, parts: &[&[&str]]) -> LayoutRecord {
        LayoutRecord {
            version,
            replication: 3,
            assignments: parts
                .iter()
                .map(|p| p.iter().map(|s| s.to_string()).collect())
                .collect(),
            created_ms: 0,
        }
    }

    fn v(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_layout_plans_nothing_and_a_join_plans_the_changed_partitions() {
        let mut plan = RebalancePlan::default();
        let l1 = layout(1, &[&["a", "b", "c"], &["b", "c", "a"], &["c", "a", "b"]]);
        plan.on_layout(None, &l1, 10);
        assert!(plan.moves.is_empty());
        // Reordering replicas is not a move; replacing one is.
        let l2 = layout(2, &[&["a", "b", "d"], &["c", "b", "a"], &["c", "a", "d"]]);
        plan.on_layout(Some(&l1), &l2, 20);
        assert_eq!(plan.moves.keys().copied().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(plan.moves[&0].from, v(&["a", "b", "c"]));
        assert_eq!(plan.moves[&0].new_holders(), v(&["d"]));
        assert_eq!(
            plan.counts(),
            MoveCounts {
                planned: 2,
                ..Default::default()
            }
        );
        assert_eq!((plan.layout_version, plan.started_ms), (2, 20));
    }

    #[test]
    fn starts_are_bounded_and_refused_while_paused_but_a_move_in_flight_is_taken_over() {
        let l1 = layout(1, &[&["a", "b"], &["a", "b"], &["a", "b"]]);
        let l2 = layout(2, &[&["a", "c"], &["c", "b"], &["a", "d"]]);
        let mut plan = RebalancePlan::default();
        plan.on_layout(Some(&l1), &l2, 0);
        let ab = v(&["a", "b"]);
        assert!(plan.start(0, "a", &ab, &v(&["a", "c"]), 1, 5).is_ok());
        assert_eq!(
            plan.start(1, "b", &ab, &v(&["c", "b"]), 1, 5),
            Err(StartRefused::Busy(1))
        );
        // The leader of partition 0 changed: the new one continues without a new slot.
        assert!(plan.start(0, "c", &ab, &v(&["a", "c"]), 1, 6).is_ok());
        assert_eq!(plan.moves[&0].node.as_deref(), Some("c"));
        plan.paused = true;
        plan.finish(0, &v(&["a", "c"]), 100, 7);
        assert_eq!(plan.moves[&0].state, MoveState::Done);
        assert_eq!(
            plan.start(1, "b", &ab, &v(&["c", "b"]), 1, 8),
            Err(StartRefused::Paused)
        );
        plan.paused = false;
        assert!(plan.start(1, "b", &ab, &v(&["c", "b"]), 1, 8).is_ok());
        assert_eq!(plan.counts().moving, 1);
        assert_eq!(plan.bytes_moved(), 100);
    }

    #[test]
    fn a_layout_change_under_a_move_in_flight_requeues_it_from_where_it_got() {
        let l1 = layout(1, &[&["a", "b"]]);
        let l2 = layout(2, &[&["a", "c"]]);
        let l3 = layout(3, &[&["a", "d"]]);
        let mut plan = RebalancePlan::default();
        plan.on_layout(Some(&l1), &l2, 0);
        plan.start(0, "a", &v(&["a", "b"]), &v(&["a", "c"]), 2, 1)
            .unwrap();
        plan.on_layout(Some(&l2), &l3, 2);
        // Still moving (its slot is kept), now towards d.
        assert_eq!(plan.moves[&0].state, MoveState::Moving);
        assert_eq!(plan.moves[&0].to, v(&["a", "d"]));
        // The leader reached {a, c}: planned again from there, with the bytes it copied.
        plan.finish(0, &v(&["a", "c"]), 7, 3);
        let m = &plan.moves[&0];
        assert_eq!(
            (m.state, m.from.clone(), m.bytes),
            (MoveState::Planned, v(&["a", "c"]), 7)
        );
        assert_eq!(m.new_holders(), v(&["d"]));
    }

    #[test]
    fn a_planned_move_sent_back_home_is_dropped_and_a_finished_plan_restarts() {
        let l1 = layout(1, &[&["a", "b"], &["a", "b"]]);
        let l2 = layout(2, &[&["a", "c"], &["a", "c"]]);
        let mut plan = RebalancePlan::default();
        plan.on_layout(Some(&l1), &l2, 0);
        plan.start(0, "a", &v(&["a", "b"]), &v(&["a", "c"]), 2, 1)
            .unwrap();
        let l3 = layout(3, &[&["a", "c"], &["a", "b"]]);
        plan.on_layout(Some(&l2), &l3, 2);
        assert_eq!(plan.moves.len(), 1);
        plan.finish(0, &v(&["a", "c"]), 1, 3);
        assert!(plan.finished());
        let l4 = layout(4, &[&["c", "b"], &["a", "b"]]);
        plan.on_layout(Some(&l3), &l4, 50);
        assert_eq!(plan.started_ms, 50);
        assert_eq!(plan.moves.len(), 1);
        assert_eq!(plan.moves[&0].from, v(&["a", "c"]));
        assert_eq!(plan.bytes_moved(), 0);
    }

    #[test]
    fn a_planned_partition_already_on_its_target_still_gets_its_chunks_copied() {
        let l1 = layout(1, &[&["a", "b"]]);
        let l2 = layout(2, &[&["a", "c"]]);
        let mut plan = RebalancePlan::default();
        plan.on_layout(Some(&l1), &l2, 0);
        // The voters got there without the plan (a leader of an older release): the slot is
        // still granted, for the chunk copies.
        let ac = v(&["a", "c"]);
        assert!(plan.start(0, "a", &ac, &ac, 1, 1).is_ok());
        assert_eq!(plan.moves[&0].new_holders(), v(&["c"]));
        plan.finish(0, &ac, 10, 2);
        // Asked again from a stale copy of the plan: nothing left, and the record is kept.
        assert_eq!(
            plan.start(0, "a", &ac, &ac, 1, 3),
            Err(StartRefused::NothingToMove(0))
        );
        assert_eq!(
            (plan.moves[&0].state, plan.moves[&0].bytes),
            (MoveState::Done, 10)
        );
    }

    #[test]
    fn cancel_keeps_planned_partitions_in_place_and_holds_the_layout() {
        let l1 = layout(1, &[&["a", "b"], &["a", "b"], &["a", "b"]]);
        let l2 = layout(2, &[&["a", "c"], &["c", "b"], &["a", "b"]]);
        let mut plan = RebalancePlan::default();
        plan.on_layout(Some(&l1), &l2, 0);
        plan.start(0, "a", &v(&["a", "b"]), &v(&["a", "c"]), 1, 1)
            .unwrap();
        let (l3, dropped) = plan.cancel(&l2, &v(&["c", "a", "b"]), 9).unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(l3.version, 3);
        // The moving partition keeps its target; the planned one stays home.
        assert_eq!(
            l3.assignments,
            layout(0, &[&["a", "c"], &["a", "b"], &["a", "b"]]).assignments
        );
        let c = plan.counts();
        assert_eq!((c.moving, c.cancelled, c.planned), (1, 1, 0));
        let expected: BTreeSet<String> = v(&["a", "b", "c"]).into_iter().collect();
        assert!(plan.holds(3, &expected));
        assert!(!plan.holds(2, &expected));
        let more: BTreeSet<String> = v(&["a", "b", "c", "d"]).into_iter().collect();
        assert!(!plan.holds(3, &more));
        // Nothing planned any more: a second cancel has nothing to drop.
        assert!(plan.cancel(&l3, &v(&["a"]), 10).is_none());
        // A new layout lifts the hold.
        plan.on_layout(
            Some(&l3),
            &layout(4, &[&["a", "c"], &["a", "b"], &["a", "b"]]),
            11,
        );
        assert!(plan.hold.is_none());
    }

    #[test]
    fn max_moves_defaults_and_is_at_least_one() {
        assert_eq!(max_moves(None), DEFAULT_MAX_MOVES);
        let mut c = ClusterConfig {
            rebalance_max_moves: Some(5),
            ..Default::default()
        };
        assert_eq!(max_moves(Some(&c)), 5);
        c.rebalance_max_moves = Some(0);
        assert_eq!(max_moves(Some(&c)), 1);
    }
}
