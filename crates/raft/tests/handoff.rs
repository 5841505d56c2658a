//! Leadership hand-off between three in-process registries over plain-text gRPC: the leader
//! of every group it leads passes it to a caught-up voter, proposals keep working through the
//! others, and `TimeoutNow` is refused from a node that does not lead the group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_meta::model::BucketRecord;
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, Response};
use cairn_raft::{HandoffOutcome, RaftServer, Registry, RegistryConfig};
use cairn_rpc::pb::raft_service_server::RaftServiceServer;
use openraft::BasicNode;

struct Node {
    reg: Arc<Registry>,
    _dir: tempfile::TempDir,
}

async fn start(id: u64, listener: tokio::net::TcpListener) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let reg = Registry::open(RegistryConfig {
        dir: dir.path().to_path_buf(),
        node_id: id,
        rpc_addr: addr,
        partitions: 2,
        snapshot_every: 1000,
        bootstrap: cairn_raft::Bootstrap::Cluster,
        trust: None,
    })
    .await
    .unwrap();
    let server = RaftServiceServer::new(RaftServer::new(reg.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Node { reg, _dir: dir }
}

fn bucket(name: &str) -> Command {
    Command::CreateBucket {
        record: BucketRecord {
            versioning: None,
            object_lock: None,
            name: name.into(),
            created_ms: 1,
            write_consistency: None,
            owner: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_hands_every_group_to_a_caught_up_voter() {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let members: BTreeMap<u64, BasicNode> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                i as u64 + 1,
                BasicNode::new(l.local_addr().unwrap().to_string()),
            )
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        nodes.push(start(i as u64 + 1, l).await);
    }
    for group in nodes[0].reg.groups() {
        nodes[0]
            .reg
            .initialize_group(group, members.clone())
            .await
            .unwrap();
    }
    for n in &nodes {
        for group in n.reg.groups() {
            n.reg
                .wait_for_leader(group, Duration::from_secs(20))
                .await
                .unwrap();
        }
    }
    let leader_id = nodes[0].reg.leader_of(SYSTEM_GROUP).unwrap();
    let leader = &nodes[leader_id as usize - 1];
    // (This test serves only RaftService: proposals go to the leader itself.)
    for i in 0..5 {
        let r = leader
            .reg
            .propose_local(SYSTEM_GROUP, bucket(&format!("b{i}")))
            .await
            .unwrap();
        assert_eq!(r, Response::Done);
    }
    let led: Vec<u64> = leader
        .reg
        .groups()
        .into_iter()
        .filter(|g| leader.reg.is_leader(*g))
        .collect();
    assert!(led.contains(&SYSTEM_GROUP));

    // A follower may not make another follower campaign.
    let follower = nodes.iter().find(|n| n.reg.node_id() != leader_id).unwrap();
    let other = nodes
        .iter()
        .find(|n| n.reg.node_id() != leader_id && n.reg.node_id() != follower.reg.node_id())
        .unwrap();
    let refused = other
        .reg
        .serve_timeout_now(Some(follower.reg.node_id()), SYSTEM_GROUP)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    let t0 = std::time::Instant::now();
    let report = leader
        .reg
        .hand_off_leadership(Duration::from_secs(15))
        .await;
    let took = t0.elapsed();
    assert_eq!(report.len(), led.len());
    for h in &report {
        match h.outcome {
            HandoffOutcome::Moved { to } => {
                assert_ne!(to, leader_id);
                let successor = &nodes[to as usize - 1];
                assert_eq!(successor.reg.leader_of(h.group), Some(to));
            }
            ref other => panic!("group {} not handed off: {other:?}", h.group),
        }
    }
    assert!(took < Duration::from_secs(8), "hand-off took {took:?}");
    assert!(leader.reg.is_draining());

    // The new leader commits, and the old leader does not win a group back.
    let successor = &nodes[leader.reg.leader_of(SYSTEM_GROUP).unwrap() as usize - 1];
    let r = successor
        .reg
        .propose_local(SYSTEM_GROUP, bucket("after"))
        .await
        .unwrap();
    assert_eq!(r, Response::Done);
    let refused = leader
        .reg
        .propose_local(SYSTEM_GROUP, bucket("old"))
        .await
        .unwrap_err();
    assert!(matches!(refused, cairn_raft::RaftError::NotLeader { .. }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    for g in leader.reg.groups() {
        assert!(
            !leader.reg.is_leader(g),
            "group {g} led again by the old leader"
        );
    }
    for n in &nodes {
        n.reg.shutdown().await;
    }
}
