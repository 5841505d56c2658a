//! The node-to-node gRPC contracts on a real one-node server: registration with the join
//! token, heartbeats, layout reads, and the cluster credential on Raft, chunk and forwarding
//! calls.

use std::sync::Arc;
use std::time::Duration;

use cairn_cluster::control_client::{get_layout, heartbeat, register_node, RetryPolicy};
use cairn_cluster::{ChunkServer, ClusterSettings, ControlServer};
use cairn_meta::model::{LayoutRecord, NodeHealth, NodeRecord, NodeState};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::Command;
use cairn_raft::{Peers, Registry};
use cairn_rpc::pb::chunk_service_client::ChunkServiceClient;
use cairn_rpc::pb::control_service_client::ControlServiceClient;
use cairn_rpc::pb::raft_service_client::RaftServiceClient;
use cairn_rpc::pb::{ChunkIds, HeartbeatRequest, QueryRequest, RaftBatch};
use cairn_rpc::PeerAuth;
use tonic::Code;

const TOKEN: &str = "join-me";

struct Node {
    addr: String,
    registry: Arc<Registry>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

fn settings(addr: &str, dir: &std::path::Path) -> ClusterSettings {
    ClusterSettings {
        node_id: "n1".into(),
        raft_id: 1,
        rpc_addr: addr.into(),
        api_addr: "127.0.0.1:9000".into(),
        cluster_name: "cairn".into(),
        join_token: Some(TOKEN.into()),
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
    }
}

async fn start() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let registry = Registry::open(cairn_raft::RegistryConfig {
        dir: dir.path().join("meta"),
        node_id: 1,
        rpc_addr: addr.clone(),
        partitions: 2,
        snapshot_every: 1000,
        bootstrap: cairn_raft::Bootstrap::SingleNode,
        join_token: Some(TOKEN.into()),
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
        Some(TOKEN.into()),
        ControlServer::new(registry.clone(), settings(&addr, dir.path())),
        ChunkServer::new(chunks),
        cairn_files::FileServer::new(cairn_files::Credentials::new("AK", "SECRETSECRET").unwrap())
            .into_service(),
        async move {
            let _ = stopped.await;
        },
    ));
    Node {
        addr,
        registry,
        _stop: stop,
        _dir: dir,
    }
}

fn record(id: &str) -> NodeRecord {
    NodeRecord {
        node_id: id.into(),
        raft_id: 7,
        rpc_addr: "10.1.1.7:7000".into(),
        api_addr: "10.1.1.7:9000".into(),
        zone: Some("z2".into()),
        labels: [("disk".to_string(), "ssd".to_string())].into(),
        cpus: 4,
        memory_bytes: 8 << 30,
        disk_capacity_bytes: 100,
        disk_free_bytes: 60,
        state: NodeState::Active,
        registered_ms: 1,
        health: NodeHealth::Up,
        last_heartbeat_ms: 0,
    }
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        timeout: Duration::from_secs(5),
        attempts: 2,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_heartbeats_and_layout_over_grpc() {
    let node = start().await;
    let peers = Peers::new(PeerAuth::new(Some(TOKEN)));
    let addrs = vec![node.addr.clone()];

    // A wrong token or another cluster's name is refused, and nothing is recorded.
    for (name, token) in [("cairn", "nope"), ("cairn", ""), ("other", TOKEN)] {
        let err = register_node(&peers, &addrs, name, token, &record("n7"), quick())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{name}/{token}: {err}");
    }
    assert!(node
        .registry
        .meta()
        .list_nodes(SYSTEM_GROUP)
        .unwrap()
        .is_empty());

    // Heartbeats of a node nobody registered are refused: it must register first.
    let beat = |free: u64| HeartbeatRequest {
        node_id: "n7".into(),
        disk_capacity_bytes: 100,
        disk_free_bytes: free,
    };
    let err = heartbeat(&peers, &addrs, beat(50), quick())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");

    let reply = register_node(&peers, &addrs, "cairn", TOKEN, &record("n7"), quick())
        .await
        .unwrap();
    assert_eq!(reply.cluster_id, "c-1");
    heartbeat(&peers, &addrs, beat(42), quick()).await.unwrap();
    let nodes = node.registry.meta().list_nodes(SYSTEM_GROUP).unwrap();
    assert_eq!(nodes.len(), 1);
    let n7 = &nodes[0];
    assert_eq!(
        (
            n7.zone.as_deref(),
            n7.labels.get("disk").map(String::as_str)
        ),
        (Some("z2"), Some("ssd"))
    );
    assert_eq!((n7.cpus, n7.disk_free_bytes), (4, 42));
    assert!(n7.last_heartbeat_ms > 0);

    // GetLayout: none yet, then the stored version.
    assert_eq!(get_layout(&peers, &addrs, quick()).await.unwrap(), None);
    let layout = LayoutRecord {
        version: 1,
        replication: 1,
        assignments: vec![vec!["n7".into()], vec!["n7".into()]],
        created_ms: 5,
    };
    node.registry
        .propose(
            SYSTEM_GROUP,
            Command::SetLayout {
                layout: layout.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        get_layout(&peers, &addrs, quick()).await.unwrap(),
        Some(layout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_to_node_calls_need_the_cluster_credential() {
    let node = start().await;
    let good = Peers::new(PeerAuth::new(Some(TOKEN)));
    let bad = Peers::new(PeerAuth::new(Some("not-the-token")));
    let none = Peers::default();

    // Raft, chunk and forwarded-read calls without the right credential are refused...
    for peers in [&bad, &none] {
        let ch = peers.channel(&node.addr).unwrap();
        let err = RaftServiceClient::new(ch.clone())
            .batch(RaftBatch { messages: vec![] })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
        let err = ChunkServiceClient::new(ch.clone())
            .has_chunks(ChunkIds { ids: vec![] })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
        let err = ControlServiceClient::new(ch.clone())
            .query(QueryRequest {
                group: 0,
                query: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
        let err = heartbeat(
            peers,
            std::slice::from_ref(&node.addr),
            HeartbeatRequest::default(),
            quick(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    }
    // ...and accepted with it.
    let ch = good.channel(&node.addr).unwrap();
    let reply = RaftServiceClient::new(ch.clone())
        .batch(RaftBatch { messages: vec![] })
        .await
        .unwrap();
    assert!(reply.into_inner().messages.is_empty());
    let present = ChunkServiceClient::new(ch)
        .has_chunks(ChunkIds {
            ids: vec![vec![0u8; 32]],
        })
        .await
        .unwrap();
    assert_eq!(present.into_inner().present, vec![false]);
}
