//! The fan-out transport on real nodes over mutual TLS: `ControlService.NodeExec` runs an
//! action through the installed `NodeAdmin` (a test implementation here; the binary installs
//! its `LocalNode`) with the operator's name and the calling node in the actor; per-node
//! outcomes keep answers and failures apart (invalid arguments, no plane installed, an
//! unreachable node, a node slower than the deadline) without one hiding another;
//! `NodeMetrics` returns the node's metrics text; callers without a cluster certificate are
//! refused.

use std::sync::Arc;
use std::time::Duration;

use cairn_cluster::fanout::FanOut;
use cairn_cluster::node_admin::{NodeAction, NodeActionError, NodeAdmin};
use cairn_cluster::{ChunkServer, ClusterSettings, ControlServer, NodePlane};
use cairn_meta::model::{NodeHealth, NodeRecord, NodeState};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::Command;
use cairn_raft::{Peers, Registry};
use cairn_rpc::pb::control_service_client::ControlServiceClient;
use cairn_rpc::pb::NodeExecRequest;
use cairn_trust::Trust;
use futures::future::BoxFuture;
use tonic::Code;

const TOKEN: &str = "join-me";

/// Answers every action with what it was asked and by whom; `log-level` refuses `bogus`,
/// `shutdown` fails, and `status` sleeps for `delay` first.
struct TestAdmin {
    id: String,
    delay: Duration,
}

impl NodeAdmin for TestAdmin {
    fn exec<'a>(
        &'a self,
        action: NodeAction,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, NodeActionError>> {
        Box::pin(async move {
            match &action {
                NodeAction::LogLevel { level } if level == "bogus" => {
                    return Err(NodeActionError::Invalid(format!("bad filter {level}")))
                }
                NodeAction::Shutdown => return Err(NodeActionError::Failed("busy".into())),
                NodeAction::Status => tokio::time::sleep(self.delay).await,
                _ => {}
            }
            Ok(serde_json::json!({"node": self.id, "action": action, "actor": actor}))
        })
    }
}

fn settings(id: &str, addr: &str, dir: &std::path::Path) -> ClusterSettings {
    ClusterSettings {
        node_id: id.into(),
        raft_id: cairn_trust::raft_id(id),
        rpc_addr: addr.into(),
        api_addr: "127.0.0.1:9000".into(),
        cluster_name: "cairn".into(),
        join_token: Some(TOKEN.into()),
        join_token_accept: vec![],
        encryption_key: None,
        trust: Trust::open(dir, id, None).unwrap(),
        seeds: vec![],
        replication: 1,
        desired_voters: 1,
        zone: None,
        labels: Default::default(),
        partitions: 2,
        heartbeat_secs: 5,
        data_dir: dir.to_path_buf(),
        placement_require: vec![],
        placement_prefer: vec![],
        placement_avoid: vec![],
        repair_grace_secs: 600,
    }
}

struct Node {
    addr: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

/// A one-node cluster `n1` serving RPC with `plane`.
async fn start(plane: NodePlane) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let s = settings("n1", &addr, dir.path());
    s.trust.create_ca("cairn").unwrap();
    let registry = Registry::open(cairn_raft::RegistryConfig {
        dir: dir.path().join("meta"),
        node_id: s.raft_id,
        rpc_addr: addr.clone(),
        partitions: 2,
        snapshot_every: 1000,
        bootstrap: cairn_raft::Bootstrap::SingleNode,
        trust: Some(s.trust.clone()),
    })
    .await
    .unwrap();
    registry
        .propose(
            SYSTEM_GROUP,
            Command::FormCluster {
                cluster_id: "c-1".into(),
                name: "cairn".into(),
            },
        )
        .await
        .unwrap();
    let chunks = cairn_chunk::ChunkStore::open(dir.path().join("chunks")).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(cairn_cluster::serve_rpc(
        listener,
        registry.clone(),
        s.trust.clone(),
        cairn_trust::ListenerLimits::default(),
        ControlServer::new(registry, s).with_node_plane(plane),
        ChunkServer::new(chunks),
        cairn_files::FileServer::new(cairn_files::Credentials::new("AK", "SECRETSECRET").unwrap())
            .into_service(),
        async move {
            let _ = stopped.await;
        },
    ));
    Node {
        addr,
        _stop: stop,
        _dir: dir,
    }
}

/// Peers of a node `id` that joined through `node` (so it holds a cluster certificate).
async fn member(node: &Node, id: &str) -> (Peers, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(id, "127.0.0.1:1", dir.path());
    let peers = Peers::new(&s.trust).unwrap();
    cairn_cluster::formation::join(&peers, &s, &node.addr)
        .await
        .unwrap();
    (peers, dir)
}

fn record(id: &str, addr: &str) -> NodeRecord {
    NodeRecord {
        node_id: id.into(),
        raft_id: cairn_trust::raft_id(id),
        rpc_addr: addr.into(),
        api_addr: String::new(),
        zone: None,
        labels: Default::default(),
        cpus: 1,
        memory_bytes: 0,
        disk_capacity_bytes: 0,
        disk_free_bytes: 0,
        state: NodeState::Active,
        registered_ms: 0,
        health: NodeHealth::Up,
        last_heartbeat_ms: 0,
        health_changed_ms: 0,
        maintenance: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_fan_out_with_per_node_outcomes() {
    let plane = NodePlane::default();
    assert!(plane.install_admin(Arc::new(TestAdmin {
        id: "n1".into(),
        delay: Duration::ZERO,
    })));
    assert!(plane.install_metrics(Arc::new(|| Ok("cairn_up 1\n".to_string()))));
    let served = start(plane).await;
    let (peers, _d) = member(&served, "n7").await;

    // The calling node's own plane answers directly, not over the network.
    let own = NodePlane::default();
    own.install_admin(Arc::new(TestAdmin {
        id: "n7".into(),
        delay: Duration::from_secs(3),
    }));
    let fan = FanOut {
        peers,
        plane: own,
        self_id: "n7".into(),
    };
    let nodes = vec![
        record("n1", &served.addr),
        record("n3", "127.0.0.1:1"),
        record("n7", "127.0.0.1:1"),
    ];
    let action = NodeAction::LogLevel {
        level: "debug".into(),
    };
    let out = fan
        .exec(&nodes, &action, "token ops", Duration::from_secs(5))
        .await;
    let ids: Vec<&str> = out.iter().map(|o| o.node_id.as_str()).collect();
    assert_eq!(ids, vec!["n1", "n3", "n7"]);
    let answer = out[0].result.as_ref().unwrap();
    assert_eq!(answer["node"], "n1");
    assert_eq!(answer["action"]["action"], "log-level");
    assert_eq!(answer["actor"], "token ops via node n7");
    assert_eq!(out[1].result.as_ref().unwrap_err().code, "unreachable");
    assert_eq!(out[2].result.as_ref().unwrap()["actor"], "token ops");

    // Refusals keep their kind.
    let out = fan
        .exec(
            &nodes[..1],
            &NodeAction::LogLevel {
                level: "bogus".into(),
            },
            "t",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(out[0].result.as_ref().unwrap_err().code, "invalid");
    let out = fan
        .exec(
            &nodes[..1],
            &NodeAction::Shutdown,
            "t",
            Duration::from_secs(5),
        )
        .await;
    let failure = out[0].result.as_ref().unwrap_err();
    assert_eq!(
        (failure.code.as_str(), failure.message.as_str()),
        ("failed", "busy")
    );

    // A node slower than the deadline times out; the others still answer in time.
    let started = std::time::Instant::now();
    let out = fan
        .exec(
            &[nodes[0].clone(), nodes[2].clone()],
            &NodeAction::Status,
            "t",
            Duration::from_millis(300),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(out[0].result.is_ok());
    assert_eq!(out[1].result.as_ref().unwrap_err().code, "timeout");

    // Metrics: the installed source's text, or "unsupported" without one.
    let m = fan.metrics(&nodes[..1], Duration::from_secs(5)).await;
    assert_eq!(m[0].result.as_ref().unwrap(), "cairn_up 1\n");
    let m = fan.metrics(&nodes[2..], Duration::from_secs(5)).await;
    assert_eq!(m[0].result.as_ref().unwrap_err().code, "unsupported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_a_plane_answers_unsupported_and_strangers_are_refused() {
    let served = start(NodePlane::default()).await;
    let (peers, _d) = member(&served, "n7").await;
    let fan = FanOut {
        peers,
        plane: NodePlane::default(),
        self_id: "n7".into(),
    };
    let nodes = [record("n1", &served.addr)];
    let out = fan
        .exec(&nodes, &NodeAction::Status, "t", Duration::from_secs(5))
        .await;
    assert_eq!(out[0].result.as_ref().unwrap_err().code, "unsupported");
    let m = fan.metrics(&nodes, Duration::from_secs(5)).await;
    assert_eq!(m[0].result.as_ref().unwrap_err().code, "unsupported");

    // A malformed action is refused before any plane is consulted.
    let ch = fan.peers.channel(&served.addr).unwrap();
    let err = ControlServiceClient::new(ch)
        .node_exec(NodeExecRequest {
            action: "{\"action\":\"format-disk\"}".into(),
            actor: "t".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // No cluster certificate: refused by the gate.
    let nocert =
        Peers::new(&Trust::open(tempfile::tempdir().unwrap().path(), "x", None).unwrap()).unwrap();
    let ch = nocert.join_channel(&served.addr).unwrap();
    let err = ControlServiceClient::new(ch)
        .node_exec(NodeExecRequest {
            action: "{\"action\":\"status\"}".into(),
            actor: "t".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
}
