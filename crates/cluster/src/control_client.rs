//! The client side of `ControlService`: every call has a deadline and is retried with
//! exponential backoff (and jitter) across the addresses it may go to (seed 000 phase 3).
//! Only failures that may be transient are retried: a refusal (wrong token, bad request) is
//! returned at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use cairn_meta::model::{LayoutRecord, NodeRecord};
use cairn_raft::Peers;
use cairn_rpc::pb::control_service_client::ControlServiceClient;
use cairn_rpc::pb::{
    GetLayoutReply, GetLayoutRequest, HeartbeatReply, HeartbeatRequest, NodeInfo,
    PartitionReplicas, RegisterNodeReply, RegisterNodeRequest,
};
use cairn_rpc::PeerChannel;
use rand::Rng;
use tonic::{Code, Request, Status};

/// How a control call is retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Deadline of one attempt.
    pub timeout: Duration,
    /// Attempts in all (each goes to the next address in turn).
    pub attempts: u32,
    /// First backoff; doubles after each failed round, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 6,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Whether a failed call may succeed if tried again (elsewhere or later).
pub fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted
    )
}

/// Runs `call` against `addrs` (in turn) until it succeeds, fails for good, or the attempts are
/// used up. `what` names the call in logs.
pub async fn with_retry<T, F, Fut>(
    peers: &Peers,
    addrs: &[String],
    policy: RetryPolicy,
    what: &str,
    mut call: F,
) -> Result<T, Status>
where
    F: FnMut(ControlServiceClient<PeerChannel>, Duration) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    if addrs.is_empty() {
        return Err(Status::unavailable(format!("{what}: no address to call")));
    }
    let mut backoff = policy.backoff;
    let mut last = Status::unavailable(format!("{what}: not attempted"));
    for attempt in 0..policy.attempts.max(1) {
        let addr = &addrs[attempt as usize % addrs.len()];
        let result = match peers.channel(addr) {
            Ok(ch) => {
                let call = call(ControlServiceClient::new(ch), policy.timeout);
                cairn_rpc::deadline(policy.timeout, call).await
            }
            Err(e) => Err(Status::invalid_argument(format!("bad address {addr}: {e}"))),
        };
        match result {
            Ok(v) => return Ok(v),
            Err(s) if retryable(&s) => {
                tracing::debug!(%addr, attempt, error = %s.message(), "{what} failed; retrying");
                last = s;
            }
            Err(s) => return Err(s),
        }
        // Back off once every address has been tried in this round.
        if (attempt as usize + 1).is_multiple_of(addrs.len()) && attempt + 1 < policy.attempts {
            let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
            tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }
    Err(last)
}

fn timed<T>(msg: T, timeout: Duration) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(timeout);
    r
}

/// `NodeRecord` → wire form.
pub fn node_info(n: &NodeRecord) -> NodeInfo {
    NodeInfo {
        node_id: n.node_id.clone(),
        raft_id: n.raft_id,
        rpc_addr: n.rpc_addr.clone(),
        api_addr: n.api_addr.clone(),
        zone: n.zone.clone().unwrap_or_default(),
        labels: n.labels.clone().into_iter().collect(),
        cpus: n.cpus,
        memory_bytes: n.memory_bytes,
        disk_capacity_bytes: n.disk_capacity_bytes,
        disk_free_bytes: n.disk_free_bytes,
    }
}

/// `LayoutRecord` → wire form.
pub fn layout_reply(l: Option<&LayoutRecord>) -> GetLayoutReply {
    match l {
        None => GetLayoutReply::default(),
        Some(l) => GetLayoutReply {
            version: l.version,
            replication: l.replication as u32,
            partitions: l
                .assignments
                .iter()
                .map(|nodes| PartitionReplicas {
                    nodes: nodes.clone(),
                })
                .collect(),
            created_ms: l.created_ms,
        },
    }
}

/// Wire form → `LayoutRecord` (None when the cluster has no layout yet).
pub fn layout_record(r: GetLayoutReply) -> Option<LayoutRecord> {
    (r.version > 0).then(|| LayoutRecord {
        version: r.version,
        replication: r.replication as usize,
        assignments: r.partitions.into_iter().map(|p| p.nodes).collect(),
        created_ms: r.created_ms,
    })
}

/// Registers `record` through any of `addrs`; returns the cluster id.
pub async fn register_node(
    peers: &Peers,
    addrs: &[String],
    cluster_name: &str,
    record: &NodeRecord,
    policy: RetryPolicy,
) -> Result<RegisterNodeReply, Status> {
    let req = RegisterNodeRequest {
        cluster_name: cluster_name.to_string(),
        node: Some(node_info(record)),
    };
    with_retry(peers, addrs, policy, "RegisterNode", |mut c, t| {
        let req = req.clone();
        async move { c.register_node(timed(req, t)).await.map(|r| r.into_inner()) }
    })
    .await
}

/// Sends this node's heartbeat through any of `addrs`.
pub async fn heartbeat(
    peers: &Peers,
    addrs: &[String],
    req: HeartbeatRequest,
    policy: RetryPolicy,
) -> Result<HeartbeatReply, Status> {
    with_retry(peers, addrs, policy, "Heartbeat", |mut c, t| {
        let req = req.clone();
        async move { c.heartbeat(timed(req, t)).await.map(|r| r.into_inner()) }
    })
    .await
}

/// Fetches the current layout from any of `addrs`.
pub async fn get_layout(
    peers: &Peers,
    addrs: &[String],
    policy: RetryPolicy,
) -> Result<Option<LayoutRecord>, Status> {
    with_retry(peers, addrs, policy, "GetLayout", |mut c, t| async move {
        c.get_layout(timed(GetLayoutRequest {}, t))
            .await
            .map(|r| layout_record(r.into_inner()))
    })
    .await
}

/// Wire form → labels map.
pub fn labels(info: &NodeInfo) -> BTreeMap<String, String> {
    info.labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            timeout: Duration::from_millis(100),
            attempts: 4,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_then_succeeds() {
        let peers = Peers::default();
        let calls = Arc::new(AtomicU32::new(0));
        let addrs = vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        let seen = calls.clone();
        let r = with_retry(&peers, &addrs, fast(), "t", move |_c, _t| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(Status::unavailable("down"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn refusals_are_not_retried_and_attempts_are_bounded() {
        let peers = Peers::default();
        let addrs = vec!["127.0.0.1:1".to_string()];
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let r: Result<(), _> = with_retry(&peers, &addrs, fast(), "t", move |_c, _t| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Err(Status::permission_denied("wrong token")) }
        })
        .await;
        assert_eq!(r.unwrap_err().code(), Code::PermissionDenied);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let seen = calls.clone();
        let r: Result<(), _> = with_retry(&peers, &addrs, fast(), "t", move |_c, _t| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Err(Status::unavailable("down")) }
        })
        .await;
        assert_eq!(r.unwrap_err().code(), Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 1 + 4);
        assert!(
            with_retry(&peers, &[], fast(), "t", |_c, _t| async { Ok(()) })
                .await
                .is_err()
        );
    }

    #[test]
    fn layout_round_trips_through_the_wire_form() {
        let l = LayoutRecord {
            version: 3,
            replication: 2,
            assignments: vec![vec!["a".into(), "b".into()], vec!["b".into(), "c".into()]],
            created_ms: 42,
        };
        assert_eq!(layout_record(layout_reply(Some(&l))), Some(l));
        assert_eq!(layout_record(layout_reply(None)), None);
    }
}
