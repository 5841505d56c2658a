//! Leadership hand-off before a node stops. openraft 0.9 has no leader transfer, so this is
//! Raft's `TimeoutNow` built from what it does have:
//!
//! 1. The stopping node enters draining mode ([`Registry::set_draining`]): it stops sending
//!    heartbeats and refuses proposals and leader reads for the groups it leads (callers retry
//!    until a successor is known), and it will not campaign again itself.
//! 2. It waits out the followers' leader lease (`election_timeout_max`): a follower refuses to
//!    vote while it has heard from a leader within its lease.
//! 3. For every group it leads, it asks the most caught-up voter (highest matched log index)
//!    to start an election at once (`RaftService.TimeoutNow`), and waits until that group has
//!    a new leader; if the candidate cannot win in time, the next one is asked.
//!
//! A group this node leads alone (one voter) cannot be handed off and is reported as such.
//! The peer serving `TimeoutNow` accepts it only from the group's current leader, as named by
//! the caller's node certificate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_rpc::pb::raft_service_client::RaftServiceClient;
use cairn_rpc::pb::RaftMessage;
use openraft::LogId;
use serde::Serialize;
use tokio::time::Instant;
use tonic::Status;

use crate::{GroupId, Registry};

/// Time for followers' leases to run out past `election_timeout_max` (clock slack and the last
/// heartbeat round in flight when draining began).
const LEASE_MARGIN: Duration = Duration::from_millis(300);

/// How long one candidate gets to win its election before the next voter is asked.
const PER_CANDIDATE: Duration = Duration::from_secs(3);

/// What happened to one group's leadership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Handoff {
    pub group: GroupId,
    #[serde(flatten)]
    pub outcome: HandoffOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum HandoffOutcome {
    /// The group is now led by node `to` (a Raft id).
    Moved { to: u64 },
    /// This node is the group's only voter: nobody can take over.
    SoleVoter,
    /// No voter took over in time; the others elect a leader once this node is gone.
    Failed { tried: Vec<u64>, reason: String },
}

/// Voters other than `me`, most caught up first (by the log index the leader knows they hold;
/// ties by id, so the choice is deterministic).
pub fn candidates(
    me: u64,
    voters: impl IntoIterator<Item = u64>,
    matched: &BTreeMap<u64, Option<LogId<u64>>>,
) -> Vec<u64> {
    let mut c: Vec<(Option<u64>, u64)> = voters
        .into_iter()
        .filter(|v| *v != me)
        .map(|v| (matched.get(&v).copied().flatten().map(|l| l.index), v))
        .collect();
    c.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    c.into_iter().map(|(_, v)| v).collect()
}

impl Registry {
    /// Hands the leadership of every group this node leads to a caught-up voter, within
    /// `timeout`; returns what happened per group (only groups it led). Leaves the node
    /// draining: call this only when the node is about to stop.
    pub async fn hand_off_leadership(self: &Arc<Self>, timeout: Duration) -> Vec<Handoff> {
        let deadline = Instant::now() + timeout;
        let me = self.node_id();
        self.set_draining(true);
        let mut led = Vec::new();
        let mut lease = Duration::ZERO;
        for group in self.groups() {
            let Some(raft) = self.raft_handle(group) else {
                continue;
            };
            // Do not win a group back while stopping.
            raft.runtime_config().elect(false);
            if self.is_leader(group) {
                led.push(group);
                let alone = raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .all(|v| v == me);
                if !alone {
                    lease = lease.max(Duration::from_millis(raft.config().election_timeout_max));
                }
            }
        }
        if lease.is_zero() {
            // Nothing to hand off to (a one-node cluster): no lease to wait out.
            return led
                .into_iter()
                .map(|group| Handoff {
                    group,
                    outcome: HandoffOutcome::SoleVoter,
                })
                .collect();
        }
        tracing::info!(
            groups = led.len(),
            "handing off Raft leadership: waiting for the followers' leases"
        );
        tokio::time::sleep_until((Instant::now() + lease + LEASE_MARGIN).min(deadline)).await;
        let moves = led.into_iter().map(|group| {
            let reg = self.clone();
            async move {
                let outcome = reg.hand_off_group(group, me, deadline).await;
                match &outcome {
                    HandoffOutcome::Moved { to } => {
                        tracing::info!(group, to, "handed off Raft leadership")
                    }
                    HandoffOutcome::SoleVoter => {
                        tracing::info!(group, "sole voter: leadership not handed off")
                    }
                    HandoffOutcome::Failed { tried, reason } => {
                        tracing::warn!(group, ?tried, %reason, "leadership hand-off failed")
                    }
                }
                Handoff { group, outcome }
            }
        });
        futures::future::join_all(moves).await
    }

    async fn hand_off_group(&self, group: GroupId, me: u64, deadline: Instant) -> HandoffOutcome {
        let Some(raft) = self.raft_handle(group) else {
            return HandoffOutcome::Failed {
                tried: Vec::new(),
                reason: "group not hosted".into(),
            };
        };
        let (order, addrs) = {
            let m = raft.metrics();
            let m = m.borrow();
            if m.current_leader != Some(me) {
                // Lost it meanwhile (e.g. a higher term appeared): someone else leads or will.
                return match m.current_leader {
                    Some(to) => HandoffOutcome::Moved { to },
                    None => HandoffOutcome::Failed {
                        tried: Vec::new(),
                        reason: "lost leadership with no successor known yet".into(),
                    },
                };
            }
            let membership = m.membership_config.membership();
            let matched = m.replication.clone().unwrap_or_default();
            let order = candidates(me, membership.voter_ids(), &matched);
            let addrs: BTreeMap<u64, String> = order
                .iter()
                .filter_map(|id| membership.get_node(id).map(|n| (*id, n.addr.clone())))
                .collect();
            (order, addrs)
        };
        if order.is_empty() {
            return HandoffOutcome::SoleVoter;
        }
        let mut tried = Vec::new();
        let mut reason = String::from("no candidate won an election in time");
        for cand in order {
            if Instant::now() >= deadline {
                reason = "hand-off deadline passed".into();
                break;
            }
            tried.push(cand);
            let Some(addr) = addrs.get(&cand) else {
                reason = format!("no address for node {cand}");
                continue;
            };
            if let Err(e) = self.send_timeout_now(addr, group, deadline).await {
                reason = format!("TimeoutNow to {addr}: {}", e.message());
                continue;
            }
            let until = (Instant::now() + PER_CANDIDATE).min(deadline);
            if let Some(to) = self.wait_for_other_leader(group, me, until).await {
                return HandoffOutcome::Moved { to };
            }
        }
        HandoffOutcome::Failed { tried, reason }
    }

    async fn send_timeout_now(
        &self,
        addr: &str,
        group: GroupId,
        deadline: Instant,
    ) -> Result<(), Status> {
        let channel = self
            .peers()
            .channel(addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut client = RaftServiceClient::new(channel);
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(2));
        let mut req = tonic::Request::new(RaftMessage {
            group,
            payload: Vec::new(),
            kind: 0,
            error: String::new(),
        });
        req.set_timeout(budget);
        cairn_rpc::deadline(budget, client.timeout_now(req))
            .await
            .map(|_| ())
    }

    /// Waits until `group` is led by a node other than `me`; `None` at `until`.
    async fn wait_for_other_leader(&self, group: GroupId, me: u64, until: Instant) -> Option<u64> {
        let raft = self.raft_handle(group)?;
        let mut rx = raft.metrics();
        loop {
            if let Some(l) = rx.borrow().current_leader.filter(|l| *l != me) {
                return Some(l);
            }
            match tokio::time::timeout_at(until, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// Serves `RaftService.TimeoutNow`: starts an election for `group` at once, if `caller`
    /// (the Raft id of the caller's certificate; `None` in plain-text tests) is the group's
    /// current leader as this node sees it.
    pub async fn serve_timeout_now(
        &self,
        caller: Option<u64>,
        group: GroupId,
    ) -> Result<(), Status> {
        let raft = self
            .raft_handle(group)
            .ok_or_else(|| Status::not_found(format!("group {group} is not hosted here")))?;
        if self.is_draining() {
            return Err(Status::failed_precondition("this node is stopping"));
        }
        let leader = self.leader_of(group);
        if let Some(c) = caller {
            if leader != Some(c) {
                tracing::warn!(
                    caller = c,
                    ?leader,
                    group,
                    "refused TimeoutNow from a node that does not lead the group"
                );
                return Err(Status::permission_denied(
                    "only the group's current leader may hand its leadership off",
                ));
            }
        }
        let is_voter = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.node_id());
        if !is_voter {
            return Err(Status::failed_precondition(format!(
                "this node is not a voter of group {group}"
            )));
        }
        tracing::info!(group, ?caller, "leader hands off: starting an election");
        raft.trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log(index: u64) -> Option<LogId<u64>> {
        Some(LogId::new(CommittedLeaderId::new(1, 1), index))
    }

    #[test]
    fn most_caught_up_voter_first() {
        let matched = BTreeMap::from([(2, log(10)), (3, log(12)), (4, None)]);
        assert_eq!(candidates(1, [1, 2, 3, 4], &matched), vec![3, 2, 4]);
    }

    #[test]
    fn ties_by_id_and_unknown_last() {
        let matched = BTreeMap::from([(5, log(7)), (3, log(7))]);
        assert_eq!(candidates(1, [5, 1, 3, 9], &matched), vec![3, 5, 9]);
    }

    #[test]
    fn sole_voter_has_no_candidate() {
        assert!(candidates(1, [1], &BTreeMap::new()).is_empty());
    }
}
