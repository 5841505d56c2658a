//! The node-to-node gRPC contracts on a real one-node server over TLS: joining with the token
//! proof (wrong token and replays refused), registration and heartbeats over mutual TLS with
//! the identity taken from the certificate, layout reads, and the refusal of plain-text calls,
//! calls without a cluster certificate and messages sent in another node's name. Token
//! rotation: proofs made with an accepted token (`CLUSTER_JOIN_TOKEN_ACCEPT`) are admitted and
//! answered so the other side can check them; once the old token is dropped it is refused.

use std::sync::Arc;
use std::time::Duration;

use cairn_cluster::control_client::{get_layout, heartbeat, register_node, RetryPolicy};
use cairn_cluster::{ChunkServer, ClusterError, ClusterSettings, ControlServer};
use cairn_meta::model::{LayoutRecord, NodeHealth, NodeRecord, NodeState};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::Command;
use cairn_raft::{Peers, Registry};
use cairn_rpc::pb::chunk_service_client::ChunkServiceClient;
use cairn_rpc::pb::control_service_client::ControlServiceClient;
use cairn_rpc::pb::raft_service_client::RaftServiceClient;
use cairn_rpc::pb::{
    ChunkIds, HeartbeatRequest, HelloRequest, JoinChallengeRequest, JoinRequest, QueryRequest,
    RaftBatch, RaftKind, RaftMessage,
};
use cairn_trust::join::JoinKey;
use cairn_trust::Trust;
use tonic::Code;

const TOKEN: &str = "join-me";

struct Node {
    addr: String,
    registry: Arc<Registry>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

fn settings(id: &str, addr: &str, dir: &std::path::Path, token: &str) -> ClusterSettings {
    ClusterSettings {
        node_id: id.into(),
        raft_id: cairn_trust::raft_id(id),
        rpc_addr: addr.into(),
        api_addr: "127.0.0.1:9000".into(),
        cluster_name: "cairn".into(),
        join_token: Some(token.into()),
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

async fn start() -> Node {
    start_with(TOKEN, &[]).await
}

/// A one-node cluster proving with `token` and also accepting proofs made with `accept`.
async fn start_with(token: &str, accept: &[&str]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut s = settings("n1", &addr, dir.path(), token);
    s.join_token_accept = accept.iter().map(|t| t.to_string()).collect();
    s.trust.create_ca("cairn").unwrap();
    // The master key is handed to joiners verbatim.
    std::fs::write(dir.path().join("master.key"), "ab".repeat(32) + "\n").unwrap();
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
        ControlServer::new(registry.clone(), s),
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

/// A second node that joined `node` with `token`: its settings, pool and data directory.
async fn joined(node: &Node, id: &str) -> (ClusterSettings, Peers, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(id, "127.0.0.1:1", dir.path(), TOKEN);
    let peers = Peers::new(&s.trust).unwrap();
    cairn_cluster::formation::join(&peers, &s, &node.addr)
        .await
        .unwrap();
    assert!(s.trust.is_member());
    (s, peers, dir)
}

fn record(id: &str) -> NodeRecord {
    NodeRecord {
        node_id: id.into(),
        raft_id: cairn_trust::raft_id(id),
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
        health_changed_ms: 0,
        maintenance: false,
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

fn beat(id: &str, free: u64) -> HeartbeatRequest {
    HeartbeatRequest {
        node_id: id.into(),
        disk_capacity_bytes: 100,
        disk_free_bytes: free,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_then_register_heartbeat_and_read_the_layout_over_mutual_tls() {
    let node = start().await;
    let (s7, peers, dir7) = joined(&node, "n7").await;
    // The joiner received the cluster secrets: CA (and its key) and the master key.
    assert!(s7.trust.can_admit());
    assert_eq!(
        std::fs::read_to_string(dir7.path().join("master.key")).unwrap(),
        "ab".repeat(32) + "\n"
    );
    let addrs = vec![node.addr.clone()];

    // Heartbeats of a node nobody registered are refused: it must register first.
    let err = heartbeat(&peers, &addrs, beat("n7", 50), quick())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");

    // Another cluster's name is refused, and nothing is recorded.
    let err = register_node(&peers, &addrs, "other", &record("n7"), quick())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(node
        .registry
        .meta()
        .list_nodes(SYSTEM_GROUP)
        .unwrap()
        .is_empty());

    let reply = register_node(&peers, &addrs, "cairn", &record("n7"), quick())
        .await
        .unwrap();
    assert_eq!(reply.cluster_id, "c-1");
    heartbeat(&peers, &addrs, beat("n7", 42), quick())
        .await
        .unwrap();
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
async fn a_node_speaks_only_for_itself() {
    let node = start().await;
    let (_s7, peers, _d7) = joined(&node, "n7").await;
    let addrs = vec![node.addr.clone()];
    // Registering or heartbeating in another node's name is refused.
    let err = register_node(&peers, &addrs, "cairn", &record("n8"), quick())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let mut forged = record("n7");
    forged.raft_id = 1;
    let err = register_node(&peers, &addrs, "cairn", &forged, quick())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    register_node(&peers, &addrs, "cairn", &record("n7"), quick())
        .await
        .unwrap();
    let err = heartbeat(&peers, &addrs, beat("n1", 1), quick())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // A Raft append whose vote names n1 (the leader) sent with n7's certificate is refused.
    let append = openraft::raft::AppendEntriesRequest::<cairn_raft::TypeConfig> {
        vote: openraft::Vote::new_committed(99, cairn_trust::raft_id("n1")),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let msg = RaftMessage {
        group: SYSTEM_GROUP,
        payload: rmp_serde::to_vec(&append).unwrap(),
        kind: RaftKind::Append as i32,
        error: String::new(),
    };
    let reply = RaftServiceClient::new(peers.channel(&node.addr).unwrap())
        .batch(RaftBatch {
            messages: vec![msg.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.messages[0].error.contains("another node"),
        "{:?}",
        reply.messages[0].error
    );
    let err = RaftServiceClient::new(peers.channel(&node.addr).unwrap())
        .append_entries(msg)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    // Nothing reached the group: n1 still leads its own term.
    assert!(node.registry.is_initialized(SYSTEM_GROUP).await.unwrap());
    let nodes = node.registry.meta().list_nodes(SYSTEM_GROUP).unwrap();
    assert_eq!(nodes.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_only_calls_refuse_callers_without_a_cluster_certificate() {
    let node = start().await;
    let (_s7, good, _d7) = joined(&node, "n7").await;

    // No client certificate (the channel joiners and CLI clients use).
    let nocert =
        Peers::new(&Trust::open(tempfile::tempdir().unwrap().path(), "x", None).unwrap()).unwrap();
    let ch = nocert.join_channel(&node.addr).unwrap();
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
    let err = ControlServiceClient::new(ch.clone())
        .heartbeat(beat("n1", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    // Plain text: no TLS handshake, no call.
    let plain = Peers::plaintext().channel(&node.addr).unwrap();
    let err = cairn_rpc::deadline(
        Duration::from_secs(5),
        RaftServiceClient::new(plain).batch(RaftBatch { messages: vec![] }),
    )
    .await
    .unwrap_err();
    assert_ne!(err.code(), Code::Ok);

    // A node of another cluster (its own CA): the handshake fails both ways.
    let dir = tempfile::tempdir().unwrap();
    let stranger = Trust::open(dir.path(), "n1", None).unwrap();
    stranger.create_ca("cairn").unwrap();
    let ch = Peers::new(&stranger).unwrap().channel(&node.addr).unwrap();
    let err = cairn_rpc::deadline(
        Duration::from_secs(5),
        RaftServiceClient::new(ch).batch(RaftBatch { messages: vec![] }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");

    // A member is served.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_needs_the_token_and_a_fresh_challenge() {
    let node = start().await;

    // A wrong token: refused, no certificate.
    let dir = tempfile::tempdir().unwrap();
    let s = settings("n9", "127.0.0.1:1", dir.path(), "not-the-token");
    let peers = Peers::new(&s.trust).unwrap();
    let err = cairn_cluster::formation::join(&peers, &s, &node.addr)
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Refused { .. }), "{err}");
    assert!(!s.trust.is_member());
    assert!(!dir.path().join("tls/node.pem").exists());

    // One proof, one join: replaying a captured Join request is refused.
    let mut c = ControlServiceClient::new(peers.join_channel(&node.addr).unwrap());
    let key = JoinKey::new(TOKEN);
    let challenge = c
        .join_challenge(JoinChallengeRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut req = JoinRequest {
        cluster_name: "cairn".into(),
        node_id: "n9".into(),
        client_nonce: cairn_trust::join::nonce(),
        server_nonce: challenge.server_nonce,
        csr_der: s.trust.csr().unwrap(),
        mac: Vec::new(),
    };
    req.mac = key.mac(
        "join",
        &[
            req.cluster_name.as_bytes(),
            req.node_id.as_bytes(),
            &req.client_nonce,
            &req.server_nonce,
            &req.csr_der,
        ],
    );
    c.join(req.clone()).await.unwrap();
    let err = c.join(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    // The same proof with a new challenge does not check either (the MAC covers the nonce).
    req.server_nonce = c
        .join_challenge(JoinChallengeRequest {})
        .await
        .unwrap()
        .into_inner()
        .server_nonce;
    let err = c.join(req).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // Greetings: a wrong token and a replay are refused.
    let mut hello = HelloRequest {
        cluster_name: "cairn".into(),
        node_id: "n9".into(),
        nonce: cairn_trust::join::nonce(),
        unix_secs: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        mac: Vec::new(),
    };
    let fields = |h: &HelloRequest| {
        vec![
            h.cluster_name.clone().into_bytes(),
            h.node_id.clone().into_bytes(),
            h.nonce.clone(),
            h.unix_secs.to_be_bytes().to_vec(),
        ]
    };
    let f = fields(&hello);
    let refs: Vec<&[u8]> = f.iter().map(Vec::as_slice).collect();
    hello.mac = JoinKey::new("wrong").mac("hello", &refs);
    let err = c.hello(hello.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    hello.mac = key.mac("hello", &refs);
    let reply = c.hello(hello.clone()).await.unwrap().into_inner();
    assert!(reply.can_admit);
    let err = c.hello(hello).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // An oversized open call is cut off before it is read whole; the node keeps serving.
    let huge = HelloRequest {
        cluster_name: "x".repeat(1 << 20),
        ..Default::default()
    };
    assert!(c.hello(huge).await.is_err());
    c.join_challenge(JoinChallengeRequest {}).await.unwrap();
}

/// A greeting proved with `token`, and the fields its MAC covers.
fn greeting(token: &str) -> HelloRequest {
    let mut hello = HelloRequest {
        cluster_name: "cairn".into(),
        node_id: "n9".into(),
        nonce: cairn_trust::join::nonce(),
        unix_secs: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        mac: Vec::new(),
    };
    let f = [
        hello.cluster_name.clone().into_bytes(),
        hello.node_id.clone().into_bytes(),
        hello.nonce.clone(),
        hello.unix_secs.to_be_bytes().to_vec(),
    ];
    let refs: Vec<&[u8]> = f.iter().map(Vec::as_slice).collect();
    hello.mac = JoinKey::new(token).mac("hello", &refs);
    hello
}

/// Joins `node` as `id` proving with `token` (and accepting answers proved with `accept`).
async fn join_with(
    node: &Node,
    id: &str,
    token: &str,
    accept: &[&str],
) -> Result<tempfile::TempDir, ClusterError> {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(id, "127.0.0.1:1", dir.path(), token);
    s.join_token_accept = accept.iter().map(|t| t.to_string()).collect();
    let peers = Peers::new(&s.trust).unwrap();
    cairn_cluster::formation::join(&peers, &s, &node.addr).await?;
    assert!(s.trust.is_member());
    // The cluster secrets sealed for the joiner opened: the master key arrived verbatim.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("master.key")).unwrap(),
        "ab".repeat(32) + "\n"
    );
    Ok(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_made_with_an_accepted_token_are_admitted_during_a_rotation() {
    const NEW: &str = "the-new-token";
    // The middle step: this node proves with the new token and still accepts the old one.
    let node = start_with(NEW, &[TOKEN]).await;
    // A node still on the old token joins (the answer is proved and sealed with the token the
    // join was proved with, so it checks on the joiner without any accepted token) ...
    join_with(&node, "n-old", TOKEN, &[]).await.unwrap();
    // ... a node already on the new one too, and one that has both.
    join_with(&node, "n-new", NEW, &[]).await.unwrap();
    join_with(&node, "n-both", TOKEN, &[NEW]).await.unwrap();
    // A stranger's token is still refused.
    let err = join_with(&node, "n-x", "a-stranger", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Refused { .. }), "{err}");

    // Greetings with either token are admitted and answered with a proof of the same token.
    let dir = tempfile::tempdir().unwrap();
    let trust = Trust::open(dir.path(), "n9", None).unwrap();
    let peers = Peers::new(&trust).unwrap();
    let mut c = ControlServiceClient::new(peers.join_channel(&node.addr).unwrap());
    for token in [TOKEN, NEW] {
        let hello = greeting(token);
        let reply = c.hello(hello.clone()).await.unwrap().into_inner();
        let f = [
            hello.nonce.clone(),
            reply.node_id.clone().into_bytes(),
            reply.raft_id.to_be_bytes().to_vec(),
            reply.cluster_name.clone().into_bytes(),
            reply.cluster_id.clone().into_bytes(),
            reply.rpc_addr.clone().into_bytes(),
            reply.partitions.to_be_bytes().to_vec(),
            vec![u8::from(reply.can_admit)],
        ];
        let refs: Vec<&[u8]> = f.iter().map(Vec::as_slice).collect();
        assert!(
            JoinKey::new(token).verify("hello-reply", &refs, &reply.mac),
            "the answer to a greeting proved with {token} is not proved with it"
        );
    }
    let err = c.hello(greeting("a-stranger")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // The last step: the old token is dropped, and a stranger holding it cannot join.
    let rotated = start_with(NEW, &[]).await;
    let err = join_with(&rotated, "n-late", TOKEN, &[NEW])
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Refused { .. }), "{err}");
    let mut c = ControlServiceClient::new(peers.join_channel(&rotated.addr).unwrap());
    let err = c.hello(greeting(TOKEN)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    join_with(&rotated, "n-new2", NEW, &[]).await.unwrap();
}
