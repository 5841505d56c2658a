//! Label-selector fan-out (seed 000 §1.2): pick the catalog's nodes a [`SelectorSet`] matches
//! and run one management action on each of them in parallel over the mTLS RPC port
//! (`ControlService.NodeExec`), each under its own deadline. Every targeted node gets a result,
//! failures included: one slow or dead node never hides the others' answers. The same
//! transport fetches each node's status (`/cluster/nodes`) and metrics (`/cluster/metrics`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_layout::SelectorSet;
use cairn_meta::model::{NodeRecord, NodeState};
use cairn_raft::Peers;
use cairn_rpc::pb::control_service_client::ControlServiceClient;
use cairn_rpc::pb::{NodeExecRequest, NodeMetricsRequest};
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

use crate::node_admin::NodeAction;
use crate::plane::NodePlane;

/// Longest per-node deadline a caller may ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(60);

/// The labels a selector sees for `n`: its own labels, plus `zone` (the selector grammar
/// already falls back to the zone) and `node` = its id, unless it has labels of those names.
pub fn selector_labels(n: &NodeRecord) -> BTreeMap<String, String> {
    let mut labels = n.labels.clone();
    labels
        .entry("node".to_string())
        .or_insert_with(|| n.node_id.clone());
    labels
}

/// The nodes of `nodes` that `selector` matches, removed nodes excepted, by node id.
pub fn select<'a>(
    nodes: impl IntoIterator<Item = &'a NodeRecord>,
    selector: &SelectorSet,
) -> Vec<NodeRecord> {
    let mut out: Vec<NodeRecord> = nodes
        .into_iter()
        .filter(|n| n.state != NodeState::Removed)
        .filter(|n| selector.matches(&selector_labels(n), n.zone.as_deref()))
        .cloned()
        .collect();
    out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    out
}

/// Why a node gave no answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct NodeFailure {
    /// `unreachable` (no connection), `timeout` (no answer within the deadline), `invalid`
    /// (the node refused the action's arguments), `unsupported` (the node has no management
    /// plane for it), `failed` (the node tried and failed) or `denied`.
    pub code: String,
    pub message: String,
}

impl NodeFailure {
    pub fn from_status(s: &Status) -> Self {
        let code = match s.code() {
            Code::Unavailable => "unreachable",
            Code::DeadlineExceeded => "timeout",
            Code::InvalidArgument => "invalid",
            Code::Unimplemented => "unsupported",
            Code::PermissionDenied | Code::Unauthenticated => "denied",
            _ => "failed",
        };
        Self {
            code: code.to_string(),
            message: s.message().to_string(),
        }
    }
}

/// One node's outcome of a fanned-out call.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeOutcome<T> {
    pub node_id: String,
    pub rpc_addr: String,
    pub elapsed_ms: u64,
    pub result: Result<T, NodeFailure>,
}

/// Runs `call` for every node in parallel, each under `deadline`; results in `nodes` order.
async fn each<T, F, Fut>(nodes: &[NodeRecord], deadline: Duration, call: F) -> Vec<NodeOutcome<T>>
where
    F: Fn(NodeRecord) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let calls = nodes.iter().map(|n| {
        let started = Instant::now();
        let fut = cairn_rpc::deadline(deadline, call(n.clone()));
        async move {
            let r = fut.await;
            NodeOutcome {
                node_id: n.node_id.clone(),
                rpc_addr: n.rpc_addr.clone(),
                elapsed_ms: started.elapsed().as_millis() as u64,
                result: r.map_err(|s| NodeFailure::from_status(&s)),
            }
        }
    });
    futures::future::join_all(calls).await
}

/// Where fanned-out calls go: this node's own plane directly, the others over RPC.
#[derive(Clone)]
pub struct FanOut {
    pub peers: Peers,
    pub plane: NodePlane,
    /// This node's id (called directly, not over the network).
    pub self_id: String,
}

impl FanOut {
    fn client(
        &self,
        n: &NodeRecord,
    ) -> Result<ControlServiceClient<cairn_rpc::PeerChannel>, Status> {
        let ch = self
            .peers
            .channel(&n.rpc_addr)
            .map_err(|e| Status::unavailable(format!("bad address {}: {e}", n.rpc_addr)))?;
        Ok(ControlServiceClient::new(ch))
    }

    /// Runs `action` on every node of `nodes` for `actor`, each within `deadline` (capped at
    /// [`MAX_DEADLINE`]); one outcome per node, in `nodes` order.
    pub async fn exec(
        &self,
        nodes: &[NodeRecord],
        action: &NodeAction,
        actor: &str,
        deadline: Duration,
    ) -> Vec<NodeOutcome<serde_json::Value>> {
        let deadline = deadline.min(MAX_DEADLINE);
        let body = match serde_json::to_string(action) {
            Ok(b) => b,
            Err(e) => {
                let s = Status::internal(e.to_string());
                return each(nodes, deadline, |_| {
                    let s = s.clone();
                    async move { Err(s) }
                })
                .await;
            }
        };
        each(nodes, deadline, |n| {
            let body = body.clone();
            let action = action.clone();
            async move {
                if n.node_id == self.self_id {
                    return self.plane.exec(action, actor).await;
                }
                let mut req = tonic::Request::new(NodeExecRequest {
                    action: body,
                    actor: actor.to_string(),
                });
                req.set_timeout(deadline);
                let reply = self.client(&n)?.node_exec(req).await?.into_inner();
                serde_json::from_str(&reply.result)
                    .map_err(|e| Status::internal(format!("undecodable answer: {e}")))
            }
        })
        .await
    }

    /// Every node's metrics text, each within `deadline`.
    pub async fn metrics(
        &self,
        nodes: &[NodeRecord],
        deadline: Duration,
    ) -> Vec<NodeOutcome<String>> {
        let deadline = deadline.min(MAX_DEADLINE);
        each(nodes, deadline, |n| async move {
            if n.node_id == self.self_id {
                return self.plane.metrics_text();
            }
            let mut req = tonic::Request::new(NodeMetricsRequest {});
            req.set_timeout(deadline);
            Ok(self.client(&n)?.node_metrics(req).await?.into_inner().text)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_meta::model::NodeHealth;

    fn node(id: &str, zone: Option<&str>, labels: &[(&str, &str)], state: NodeState) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            raft_id: 1,
            rpc_addr: format!("{id}:7000"),
            api_addr: String::new(),
            zone: zone.map(str::to_string),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cpus: 1,
            memory_bytes: 0,
            disk_capacity_bytes: 0,
            disk_free_bytes: 0,
            state,
            registered_ms: 0,
            health: NodeHealth::Up,
            last_heartbeat_ms: 0,
            health_changed_ms: 0,
            maintenance: false,
        }
    }

    #[test]
    fn selection_by_labels_zone_and_node_id() {
        let nodes = [
            node("n3", Some("b"), &[("disk", "ssd")], NodeState::Active),
            node("n1", Some("a"), &[("disk", "ssd")], NodeState::Active),
            node("n2", Some("a"), &[("disk", "hdd")], NodeState::Draining),
            node("n4", Some("a"), &[("disk", "ssd")], NodeState::Removed),
        ];
        let ids = |sel: &str| -> Vec<String> {
            select(&nodes, &SelectorSet::parse(sel).unwrap())
                .into_iter()
                .map(|n| n.node_id)
                .collect()
        };
        assert_eq!(ids("zone=a,disk!=hdd"), vec!["n1"]);
        assert_eq!(ids("zone in (a,b)"), vec!["n1", "n2", "n3"]);
        assert_eq!(ids("*"), vec!["n1", "n2", "n3"]);
        assert_eq!(ids("node=n2"), vec!["n2"]);
        assert_eq!(ids("node in (n3,n4)"), vec!["n3"]);
        assert!(ids("gpu").is_empty());
        // A real label named `node` wins over the id.
        let tagged = [node("n9", None, &[("node", "edge")], NodeState::Active)];
        assert_eq!(
            select(&tagged, &SelectorSet::parse("node=edge").unwrap()).len(),
            1
        );
    }

    #[test]
    fn failures_are_classified_by_status_code() {
        let c = |s: Status| NodeFailure::from_status(&s).code;
        assert_eq!(c(Status::unavailable("x")), "unreachable");
        assert_eq!(c(Status::deadline_exceeded("x")), "timeout");
        assert_eq!(c(Status::invalid_argument("x")), "invalid");
        assert_eq!(c(Status::unimplemented("x")), "unsupported");
        assert_eq!(c(Status::internal("x")), "failed");
        assert_eq!(c(Status::permission_denied("x")), "denied");
    }
}
