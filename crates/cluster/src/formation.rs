//! Forming a cluster from seeds, or joining an existing one.
//!
//! Every initial node is given the same `CLUSTER_SEEDS`. A node whose system group already has
//! state (a restart) does nothing here. Otherwise it greets every seed: if any seed already
//! belongs to a formed cluster, the node registers through it and waits to be added by the
//! system leader. If no cluster exists yet and a majority of the seeds answer, the answering
//! node with the lowest node id bootstraps exactly once: it initialises the system group with
//! the answering nodes as voters, records the cluster id, registers them and writes layout
//! version 1. The others wait until the bootstrapper's Raft traffic reaches them.
//!
//! Trust: greetings go over TLS without certificate checks (a node may not know the CA yet),
//! so both directions carry a MAC keyed by the join token over fresh nonces, and an answer
//! without a good MAC is ignored. The bootstrapper creates the cluster CA just before it
//! initialises the system group; every other node joins (`JoinChallenge` + `Join`) through a
//! node that holds the CA key as soon as one answers, and only then registers or is reached
//! by Raft, all over mutual TLS.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_meta::model::{LayoutRecord, NodeHealth, NodeRecord, NodeState};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, CommandError, Response};
use cairn_raft::Registry;
use cairn_rpc::pb::control_service_client::ControlServiceClient;
use cairn_rpc::pb::{HelloReply, HelloRequest, JoinChallengeRequest, JoinRequest, JoinSecrets};
use cairn_trust::join::JoinKeyring;
use openraft::BasicNode;

use crate::control::{
    hello_fields, hello_reply_fields, join_fields, join_reply_fields, refs, unix_secs, FORMING,
};
use crate::control_client::{register_node, RetryPolicy};
use crate::controller::{compute_layout, inventory_record, now_ms};
use crate::{ClusterError, ClusterSettings};

const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// After this long, a majority of seeds is enough to bootstrap.
const BOOTSTRAP_GRACE: Duration = Duration::from_secs(20);

/// Proofs are made with the primary token; answers may be proved with any accepted one.
fn join_key(s: &ClusterSettings) -> Result<JoinKeyring, ClusterError> {
    s.join_keys().ok_or_else(|| {
        ClusterError::Other(
            "CLUSTER_JOIN_TOKEN is needed to form or join a cluster: set it to the same secret on every node".into(),
        )
    })
}

async fn hello(
    reg: &Registry,
    s: &ClusterSettings,
    seed: &str,
) -> Result<Option<HelloReply>, ClusterError> {
    let key = join_key(s)?;
    let channel = match reg.peers().join_channel(seed) {
        Ok(c) => c,
        Err(e) => return Err(ClusterError::Other(format!("bad seed address {seed}: {e}"))),
    };
    let mut client = ControlServiceClient::new(channel);
    let mut greeting = HelloRequest {
        cluster_name: s.cluster_name.clone(),
        node_id: s.node_id.clone(),
        nonce: cairn_trust::join::nonce(),
        unix_secs: unix_secs(),
        mac: Vec::new(),
    };
    greeting.mac = key.primary().mac("hello", &refs(&hello_fields(&greeting)));
    let nonce = greeting.nonce.clone();
    let mut req = tonic::Request::new(greeting);
    req.set_timeout(HELLO_TIMEOUT);
    match cairn_rpc::deadline(HELLO_TIMEOUT, client.hello(req)).await {
        Ok(r) => {
            let reply = r.into_inner();
            if key
                .verify(
                    "hello-reply",
                    &refs(&hello_reply_fields(&nonce, &reply)),
                    &reply.mac,
                )
                .is_none()
            {
                tracing::warn!(%seed, "a seed answered without proof of the join token: ignored");
                return Ok(None);
            }
            Ok(Some(reply))
        }
        Err(st) if st.code() == tonic::Code::PermissionDenied => Err(ClusterError::Refused {
            seed: seed.to_string(),
            msg: st.message().to_string(),
        }),
        Err(_) => Ok(None), // not up yet
    }
}

/// Obtains this node's certificate and the cluster secrets from `via` (a node holding the CA
/// key), proving the join token without sending it, and checking the answer's proof.
pub async fn join(
    peers: &cairn_raft::Peers,
    s: &ClusterSettings,
    via: &str,
) -> Result<(), ClusterError> {
    let key = join_key(s)?;
    let other = |m: String| ClusterError::Other(format!("joining through {via}: {m}"));
    let channel = peers.join_channel(via).map_err(|e| other(e.to_string()))?;
    let mut client = ControlServiceClient::new(channel);
    let challenge = cairn_rpc::deadline(
        HELLO_TIMEOUT,
        client.join_challenge(JoinChallengeRequest {}),
    )
    .await
    .map_err(|e| other(e.message().to_string()))?
    .into_inner();
    let csr = s.trust.csr().map_err(|e| other(e.to_string()))?;
    let mut req = JoinRequest {
        cluster_name: s.cluster_name.clone(),
        node_id: s.node_id.clone(),
        client_nonce: cairn_trust::join::nonce(),
        server_nonce: challenge.server_nonce,
        csr_der: csr,
        mac: Vec::new(),
    };
    req.mac = key.primary().mac("join", &refs(&join_fields(&req)));
    let reply = match cairn_rpc::deadline(HELLO_TIMEOUT, client.join(req.clone())).await {
        Ok(r) => r.into_inner(),
        Err(st) if st.code() == tonic::Code::PermissionDenied => {
            return Err(ClusterError::Refused {
                seed: via.to_string(),
                msg: st.message().to_string(),
            })
        }
        Err(st) => return Err(other(st.message().to_string())),
    };
    if key
        .verify(
            "join-reply",
            &refs(&join_reply_fields(&req, &reply)),
            &reply.mac,
        )
        .is_none()
    {
        return Err(other(
            "the answer does not prove the join token: not trusting its CA".into(),
        ));
    }
    let plain = key
        .open(
            &req.client_nonce,
            &req.server_nonce,
            &s.node_id,
            &reply.sealed,
        )
        .map_err(|e| other(e.to_string()))?;
    let secrets: JoinSecrets =
        prost::Message::decode(plain.as_slice()).map_err(|e| other(e.to_string()))?;
    if !secrets.master_key.is_empty() {
        let path = s.data_dir.join("master.key");
        if !path.exists() {
            cairn_trust::pki::write_private(&path, &secrets.master_key)
                .map_err(|e| other(e.to_string()))?;
        }
    }
    let ca = rustls_pki_types::CertificateDer::from(secrets.ca_cert_der);
    let cert = rustls_pki_types::CertificateDer::from(reply.node_cert_der);
    let ca_key = (!secrets.ca_key_pem.is_empty()).then_some(secrets.ca_key_pem.as_str());
    s.trust
        .install(&ca, ca_key, &cert)
        .map_err(|e| other(e.to_string()))?;
    tracing::info!(%via, "joined: node certificate issued by the cluster CA");
    Ok(())
}

/// Returns once this node is part of a cluster (formed, joined, or restarted).
pub async fn form_or_join(s: &ClusterSettings, reg: &Arc<Registry>) -> Result<(), ClusterError> {
    if reg.is_initialized(SYSTEM_GROUP).await? {
        tracing::info!("system group state found: rejoining the existing cluster");
        return Ok(());
    }
    let mut all: BTreeSet<String> = s.seeds.iter().cloned().collect();
    all.insert(s.rpc_addr.clone());
    let majority = all.len() / 2 + 1;
    let mut logged = false;
    let started = std::time::Instant::now();
    loop {
        let mut answers: BTreeMap<String, HelloReply> = BTreeMap::new();
        for seed in &s.seeds {
            if *seed == s.rpc_addr {
                continue;
            }
            if let Some(reply) = hello(reg, s, seed).await? {
                answers.insert(reply.node_id.clone(), reply);
            }
        }
        if !s.trust.is_member() {
            // Join (certificate + CA) through any node that can admit, before anything else:
            // registration and Raft need mutual TLS.
            for a in answers.values().filter(|a| a.can_admit) {
                match join(reg.peers(), s, &a.rpc_addr).await {
                    Ok(()) => break,
                    Err(e @ ClusterError::Refused { .. }) => return Err(e),
                    Err(e) => tracing::warn!(error = %e, "join attempt failed"),
                }
            }
        }
        let member = s.trust.is_member();
        if answers.values().any(|a| a.cluster_id == FORMING) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if reg.is_initialized(SYSTEM_GROUP).await? {
                return Ok(());
            }
            continue;
        }
        if let Some(a) = answers
            .values()
            .find(|a| a.partitions != 0 && a.partitions != s.partitions)
        {
            return Err(ClusterError::Refused {
                seed: a.rpc_addr.clone(),
                msg: format!(
                    "PARTITIONS is {} here but {} on {} ({}): every node of a cluster needs the same PARTITIONS",
                    s.partitions, a.partitions, a.node_id, a.rpc_addr
                ),
            });
        }
        if let Some(formed) = answers
            .values()
            .find(|a| !a.cluster_id.is_empty() && member)
        {
            tracing::info!(via = %formed.rpc_addr, cluster_id = %formed.cluster_id, "joining an existing cluster");
            let addr = formed.rpc_addr.clone();
            reg.set_route_hint(Arc::new(move |_| vec![addr.clone()]));
            let record = inventory_record(s, NodeState::Active);
            // The member that answered first, then any other that knows the cluster.
            let mut via = vec![formed.rpc_addr.clone()];
            via.extend(
                answers
                    .values()
                    .filter(|a| !a.cluster_id.is_empty() && a.rpc_addr != formed.rpc_addr)
                    .map(|a| a.rpc_addr.clone()),
            );
            register_node(
                reg.peers(),
                &via,
                &s.cluster_name,
                &record,
                RetryPolicy::default(),
            )
            .await
            .map_err(|st| match st.code() {
                tonic::Code::PermissionDenied => ClusterError::Refused {
                    seed: formed.rpc_addr.clone(),
                    msg: st.message().to_string(),
                },
                _ => ClusterError::Other(format!(
                    "registering with {}: {}",
                    formed.rpc_addr,
                    st.message()
                )),
            })?;
            wait_initialized(reg).await;
            return Ok(());
        }
        if answers.values().any(|a| !a.cluster_id.is_empty()) {
            // A cluster exists but this node could not join it yet (no admitting node answered).
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let answered = answers.len() + 1;
        let lowest = answers.keys().next().is_none_or(|id| s.node_id < *id);
        // Wait for every seed, so a slow-starting lower id cannot be overlooked; a majority
        // suffices only after a grace period (a seed may be gone for good).
        let quorum =
            answered == all.len() || (answered >= majority && started.elapsed() > BOOTSTRAP_GRACE);
        if quorum && lowest {
            // The master key must exist before anyone joins: the join hands it over. So it is
            // written before the CA, whose existence is what lets this node admit joiners (a
            // joiner admitted in between would get no key and could not start).
            cairn_meta::secrets::MasterKey::load_or_create(
                &s.data_dir,
                s.encryption_key.as_deref(),
            )
            .map_err(|e| ClusterError::Other(format!("creating the cluster master key: {e}")))?;
            s.trust
                .create_ca(&s.cluster_name)
                .map_err(|e| ClusterError::Other(format!("creating the cluster CA: {e}")))?;
            wait_joined(reg, s, &answers).await?;
            bootstrap(s, reg, answers).await?;
            return Ok(());
        }
        if reg.is_initialized(SYSTEM_GROUP).await? {
            tracing::info!("added to the cluster by its bootstrap node");
            return Ok(());
        }
        if !logged {
            tracing::info!(
                answered,
                needed = majority,
                "waiting for seeds to form the cluster"
            );
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// After creating the CA, gives the other seeds a moment to join (they poll every 500 ms), so
/// the first Raft election does not start while they cannot yet be reached over mutual TLS.
/// A node that has joined holds the CA key, so its greeting answers `can_admit`.
async fn wait_joined(
    reg: &Registry,
    s: &ClusterSettings,
    answers: &BTreeMap<String, HelloReply>,
) -> Result<(), ClusterError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let mut all = true;
        for a in answers.values() {
            match hello(reg, s, &a.rpc_addr).await? {
                Some(r) if r.can_admit => {}
                _ => all = false,
            }
        }
        if all {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!("not every seed has joined after 10 s: bootstrapping anyway");
    Ok(())
}

async fn wait_initialized(reg: &Registry) {
    while !reg.is_initialized(SYSTEM_GROUP).await.unwrap_or(false) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn bootstrap(
    s: &ClusterSettings,
    reg: &Arc<Registry>,
    answers: BTreeMap<String, HelloReply>,
) -> Result<(), ClusterError> {
    let cluster_id = uuid::Uuid::new_v4().to_string();
    tracing::info!(%cluster_id, members = answers.len() + 1, "bootstrapping a new cluster");
    let mut members: BTreeMap<String, (u64, String)> = answers
        .values()
        .map(|a| (a.node_id.clone(), (a.raft_id, a.rpc_addr.clone())))
        .collect();
    members.insert(s.node_id.clone(), (s.raft_id, s.rpc_addr.clone()));
    let voters: BTreeMap<u64, BasicNode> = members
        .values()
        .take(s.desired_voters.max(1))
        .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
        .collect();
    reg.initialize_group(SYSTEM_GROUP, voters).await?;
    reg.wait_for_leader(SYSTEM_GROUP, Duration::from_secs(30))
        .await?;
    let resp = reg
        .propose(
            SYSTEM_GROUP,
            Command::FormCluster {
                cluster_id,
                name: s.cluster_name.clone(),
            },
        )
        .await?;
    if let Response::Refused(CommandError::ClusterExists(id)) = resp {
        tracing::info!(cluster_id = %id, "cluster was already formed");
        return Ok(());
    }
    crate::record_config(s, reg).await?;
    let mut records = Vec::new();
    for (node_id, (raft_id, rpc_addr)) in &members {
        let record = if *node_id == s.node_id {
            inventory_record(s, NodeState::Active)
        } else {
            // Peers refresh their own record (inventory, API address) with their first heartbeat.
            NodeRecord {
                node_id: node_id.clone(),
                raft_id: *raft_id,
                rpc_addr: rpc_addr.clone(),
                api_addr: String::new(),
                zone: None,
                labels: BTreeMap::new(),
                cpus: 0,
                memory_bytes: 0,
                disk_capacity_bytes: 1,
                disk_free_bytes: 0,
                state: NodeState::Active,
                registered_ms: now_ms(),
                health: NodeHealth::Up,
                last_heartbeat_ms: 0,
                health_changed_ms: 0,
                maintenance: false,
            }
        };
        reg.propose(
            SYSTEM_GROUP,
            Command::RegisterNode {
                record: record.clone(),
            },
        )
        .await?;
        records.push(record);
    }
    let policy = crate::controller::placement_policy(&s.initial_config());
    let layout = compute_layout(
        &records,
        &BTreeMap::new(),
        s.partitions,
        s.replication,
        &policy,
        None,
    )
    .ok_or_else(|| ClusterError::Other("no layout for the initial nodes".into()))?;
    let layout = LayoutRecord {
        version: 1,
        ..layout
    };
    reg.propose(SYSTEM_GROUP, Command::SetLayout { layout })
        .await?;
    Ok(())
}
