//! Gossip membership over real UDP on loopback: discovery from one seed each, failure
//! detection (Up -> Suspect -> Down), rejoin after a restart, and cluster isolation.
//!
//! Sealing: nodes with another cluster secret, and plain (unsealed) chitchat speakers
//! claiming to be a member, are never heard and are counted as dropped.
//!
//! Token rotation: a node accepting the other's token as well as its own hears it, while two
//! nodes on different tokens with nothing accepted never hear each other.
//!
//! Timings: 200 ms gossip interval and 3 s `dead_after`, so Suspect is expected after ~1 s of
//! silence and Down after 3 s; every test finishes in well under 20 s.

use cairn_cluster::gossip;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use gossip::{Gossip, GossipConfig, Health};

const INTERVAL: Duration = Duration::from_millis(200);
const DEAD_AFTER: Duration = Duration::from_secs(3);
const SECRET: &str = "test-cluster-secret";

/// A free UDP port on `ip`: each test uses its own 127.0.0.x so parallel tests cannot collide.
fn free_addr(ip: [u8; 4]) -> SocketAddr {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::from(ip), 0)).expect("bind loopback");
    socket.local_addr().unwrap()
}

fn config(id: &str, cluster: &str, addr: SocketAddr, seeds: &[SocketAddr]) -> GossipConfig {
    let mut metadata = BTreeMap::new();
    metadata.insert("rpc_addr".to_string(), addr.to_string());
    metadata.insert("api_addr".to_string(), format!("{}:9000", addr.ip()));
    GossipConfig {
        node_id: id.to_string(),
        cluster_name: cluster.to_string(),
        bind: addr,
        advertise: addr,
        seeds: seeds.iter().map(|s| s.to_string()).collect(),
        interval: INTERVAL,
        dead_after: DEAD_AFTER,
        metadata,
        secret: Some(SECRET.to_string()),
        accept: Vec::new(),
        generation_file: None,
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn meta_of(g: &Gossip, id: &str) -> Option<BTreeMap<String, String>> {
    g.members().into_iter().find(|m| m.0 == id).map(|m| m.2)
}

/// True when every node reports every other one Up with its published rpc_addr.
fn all_up(nodes: &[(&str, SocketAddr, &Gossip)]) -> bool {
    nodes.iter().all(|(_, _, g)| {
        nodes.iter().all(|(id, addr, _)| {
            g.health(id) == Health::Up
                && meta_of(g, id).and_then(|m| m.get("rpc_addr").cloned()) == Some(addr.to_string())
        })
    })
}

/// Starts three nodes on `127.0.0.{base..base+2}`, seeded in a ring (a->b, b->c, c->a), and
/// waits until they all see each other Up.
async fn three_nodes(base: u8) -> [(String, SocketAddr, Gossip); 3] {
    let addrs = [0, 1, 2].map(|i| free_addr([127, 0, 0, base + i]));
    let ids = ["a", "b", "c"];
    let mut nodes = Vec::new();
    for i in 0..3 {
        let seed = addrs[(i + 1) % 3];
        let g = Gossip::start(config(ids[i], "cairn", addrs[i], &[seed]))
            .await
            .expect("start gossip");
        nodes.push((ids[i].to_string(), addrs[i], g));
    }
    let view: Vec<_> = nodes
        .iter()
        .map(|(id, a, g)| (id.as_str(), *a, g))
        .collect();
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || all_up(&view)).await,
        "nodes did not discover each other: {:?}",
        nodes.iter().map(|n| n.2.members()).collect::<Vec<_>>()
    );
    eprintln!("three nodes Up after {:?}", started.elapsed());
    let mut it = nodes.into_iter();
    [it.next().unwrap(), it.next().unwrap(), it.next().unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_discover_each_other_with_metadata() {
    let [(_, _, a), (_, b_addr, b), (_, _, c)] = three_nodes(11).await;

    // Published metadata travels with membership.
    let meta = meta_of(&a, "b").unwrap();
    assert_eq!(meta.get("api_addr"), Some(&format!("{}:9000", b_addr.ip())));
    assert_eq!(a.members().len(), 3);
    assert_eq!(a.health("nobody"), Health::Unknown);

    // A key updated later reaches the peers too.
    b.set("disk_free", "12345");
    assert_eq!(meta_of(&b, "b").unwrap().get("disk_free").unwrap(), "12345");
    assert!(
        eventually(Duration::from_secs(5), || {
            [&a, &c].iter().all(|g| {
                meta_of(g, "b").and_then(|m| m.get("disk_free").cloned()) == Some("12345".into())
            })
        })
        .await,
        "disk_free did not propagate"
    );

    for g in [a, b, c] {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_node_becomes_suspect_then_down() {
    let [(_, _, a), (_, _, b), (_, _, c)] = three_nodes(21).await;

    c.shutdown().await;
    let stopped = Instant::now();
    let mut suspect_at = None;
    let mut down_at = None;
    while down_at.is_none() && stopped.elapsed() < DEAD_AFTER + Duration::from_secs(3) {
        match (a.health("c"), b.health("c")) {
            (Health::Down, Health::Down) => down_at = Some(stopped.elapsed()),
            (ha, hb) => {
                for h in [ha, hb] {
                    assert_ne!(h, Health::Unknown, "a known node must stay known");
                    if h == Health::Suspect && suspect_at.is_none() {
                        suspect_at = Some(stopped.elapsed());
                    }
                    if h == Health::Down {
                        // Down means silent for dead_after; c was heard at most one round
                        // (plus one observation) before it stopped.
                        assert!(
                            stopped.elapsed() + 2 * INTERVAL >= DEAD_AFTER,
                            "Down too early: {:?}",
                            stopped.elapsed()
                        );
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("c: Suspect after {suspect_at:?}, Down on both after {down_at:?}");
    let suspect_at = suspect_at.expect("c was never reported Suspect");
    let down_at = down_at.expect("c was not reported Down within dead_after + 3 s");
    assert!(suspect_at < down_at);
    assert!(
        down_at + 2 * INTERVAL >= DEAD_AFTER,
        "Down too early: {down_at:?}"
    );
    assert!(
        down_at <= DEAD_AFTER + Duration::from_millis(1500),
        "Down too late: {down_at:?}"
    );

    // The dead node stays listed, with what it last published; the survivors stay Up.
    let members = a.members();
    let (_, health, meta) = members.iter().find(|m| m.0 == "c").expect("c still listed");
    assert_eq!(*health, Health::Down);
    assert!(meta.contains_key("rpc_addr"));
    assert_eq!(a.health("b"), Health::Up);
    assert_eq!(b.health("a"), Health::Up);

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_is_up_again() {
    let [(_, a_addr, a), (_, _, b), (_, c_addr, c)] = three_nodes(31).await;

    c.shutdown().await;
    assert!(
        eventually(DEAD_AFTER + Duration::from_secs(3), || a.health("c")
            == Health::Down)
        .await,
        "c never went Down"
    );

    // Same node id and address; a fresh generation and a changed key.
    let mut cfg = config("c", "cairn", c_addr, &[a_addr]);
    cfg.metadata.insert("boot".to_string(), "2".to_string());
    let restarted = Instant::now();
    let c = Gossip::start(cfg).await.expect("restart c");
    assert!(
        eventually(Duration::from_secs(8), || {
            [&a, &b].iter().all(|g| {
                g.health("c") == Health::Up
                    && meta_of(g, "c").and_then(|m| m.get("boot").cloned()) == Some("2".into())
            }) && c.health("a") == Health::Up
                && c.health("b") == Health::Up
        })
        .await,
        "restarted c not Up everywhere: a={:?} b={:?} c={:?}",
        a.members(),
        b.members(),
        c.members()
    );
    eprintln!("restarted c Up everywhere after {:?}", restarted.elapsed());
    // One entry per node id, whatever the number of generations seen.
    assert_eq!(a.members().len(), 3);

    for g in [a, b, c] {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_cluster_is_never_listed() {
    let a_addr = free_addr([127, 0, 0, 41]);
    let b_addr = free_addr([127, 0, 0, 42]);
    let x_addr = free_addr([127, 0, 0, 43]);
    // Seeds cross the cluster boundary both ways: only the cluster name keeps them apart.
    let a = Gossip::start(config("a", "cairn", a_addr, &[b_addr, x_addr]))
        .await
        .unwrap();
    let b = Gossip::start(config("b", "cairn", b_addr, &[a_addr]))
        .await
        .unwrap();
    let x = Gossip::start(config("x", "elsewhere", x_addr, &[a_addr, b_addr]))
        .await
        .unwrap();

    let view = [("a", a_addr, &a), ("b", b_addr, &b)];
    assert!(eventually(Duration::from_secs(10), || all_up(&view)).await);
    // Give x plenty of rounds (10+) to leak in, checking all along.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        for g in [&a, &b] {
            assert_eq!(g.health("x"), Health::Unknown);
            assert!(g.members().iter().all(|m| m.0 != "x"), "{:?}", g.members());
        }
        let xs: Vec<String> = x.members().into_iter().map(|m| m.0).collect();
        assert_eq!(xs, vec!["x".to_string()]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for g in [a, b, x] {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_secret_is_never_heard_and_its_packets_are_counted() {
    let a_addr = free_addr([127, 0, 0, 51]);
    let b_addr = free_addr([127, 0, 0, 52]);
    let x_addr = free_addr([127, 0, 0, 53]);
    let a = Gossip::start(config("a", "cairn", a_addr, &[b_addr, x_addr]))
        .await
        .unwrap();
    let b = Gossip::start(config("b", "cairn", b_addr, &[a_addr]))
        .await
        .unwrap();
    // Same cluster name, wrong secret: only the seal keeps it out.
    let mut xcfg = config("x", "cairn", x_addr, &[a_addr, b_addr]);
    xcfg.secret = Some("a guessed secret".to_string());
    let x = Gossip::start(xcfg).await.unwrap();

    let view = [("a", a_addr, &a), ("b", b_addr, &b)];
    assert!(eventually(Duration::from_secs(10), || all_up(&view)).await);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        for g in [&a, &b] {
            assert_eq!(g.health("x"), Health::Unknown);
        }
        let xs: Vec<String> = x.members().into_iter().map(|m| m.0).collect();
        assert_eq!(xs, vec!["x".to_string()]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // x seeds both and a seeds x: all three see the other side's packets and drop them.
    assert!(a.packets_dropped() > 0, "a dropped nothing");
    assert!(b.packets_dropped() > 0, "b dropped nothing");
    assert!(x.packets_dropped() > 0, "x dropped nothing");

    let mut registry = prometheus_client::registry::Registry::with_prefix("cairn");
    a.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("cairn_gossip_packets_dropped_total{reason=\"unauthenticated\"}"),
        "{text}"
    );

    for g in [a, b, x] {
        g.shutdown().await;
    }
}

/// Token rotation, middle step: A still seals with the old token but accepts the new one, B
/// already seals with the new one and accepts the old one, so they keep seeing each other. A
/// pair on the same two tokens without accepted ones (D old, C new) never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_tokens_keep_nodes_on_old_and_new_tokens_together() {
    const OLD: &str = "old-cluster-secret";
    const NEW: &str = "new-cluster-secret";
    let node = |id: &str, addr, seeds: &[SocketAddr], primary: &str, accept: &[&str]| {
        let mut cfg = config(id, "cairn", addr, seeds);
        cfg.secret = Some(primary.to_string());
        cfg.accept = accept.iter().map(|t| t.to_string()).collect();
        cfg
    };
    let a_addr = free_addr([127, 0, 0, 81]);
    let b_addr = free_addr([127, 0, 0, 82]);
    let a = Gossip::start(node("a", a_addr, &[b_addr], OLD, &[NEW]))
        .await
        .unwrap();
    let b = Gossip::start(node("b", b_addr, &[a_addr], NEW, &[OLD]))
        .await
        .unwrap();
    let view = [("a", a_addr, &a), ("b", b_addr, &b)];
    assert!(
        eventually(Duration::from_secs(10), || all_up(&view)).await,
        "a (old, accepting new) and b (new, accepting old) did not see each other: {:?} {:?}",
        a.members(),
        b.members()
    );
    assert_eq!(a.packets_dropped(), 0, "a dropped packets of b");
    assert_eq!(b.packets_dropped(), 0, "b dropped packets of a");

    let d_addr = free_addr([127, 0, 0, 83]);
    let c_addr = free_addr([127, 0, 0, 84]);
    let d = Gossip::start(node("d", d_addr, &[c_addr], OLD, &[]))
        .await
        .unwrap();
    let c = Gossip::start(node("c", c_addr, &[d_addr], NEW, &[]))
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(d.health("c"), Health::Unknown);
        assert_eq!(c.health("d"), Health::Unknown);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.packets_dropped() > 0, "d dropped nothing");
    assert!(c.packets_dropped() > 0, "c dropped nothing");

    for g in [a, b, c, d] {
        g.shutdown().await;
    }
}

/// The attack from issue 10: an unsealed chitchat speaker claims to be member `b` with a far
/// newer generation. Before sealing, that hid b's real heartbeats (and its metadata).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_chitchat_impersonating_a_member_is_dropped() {
    use chitchat::transport::UdpTransport;
    use chitchat::{ChitchatConfig, ChitchatId, FailureDetectorConfig, ProtocolVersion};

    let a_addr = free_addr([127, 0, 0, 61]);
    let b_addr = free_addr([127, 0, 0, 62]);
    let evil_addr = free_addr([127, 0, 0, 63]);
    let a = Gossip::start(config("a", "cairn", a_addr, &[b_addr]))
        .await
        .unwrap();
    let b = Gossip::start(config("b", "cairn", b_addr, &[a_addr]))
        .await
        .unwrap();
    let view = [("a", a_addr, &a), ("b", b_addr, &b)];
    assert!(eventually(Duration::from_secs(10), || all_up(&view)).await);
    let before = a.packets_dropped();

    let evil = chitchat::spawn_chitchat(
        ChitchatConfig {
            chitchat_id: ChitchatId::new("b".to_string(), u64::MAX / 2, evil_addr),
            cluster_id: "cairn".to_string(),
            gossip_interval: Duration::from_millis(50),
            listen_addr: evil_addr,
            seed_nodes: vec![a_addr.to_string()],
            failure_detector_config: FailureDetectorConfig::default(),
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V0,
        },
        vec![("rpc_addr".to_string(), "evil:1".to_string())],
        &UdpTransport,
    )
    .await
    .unwrap();

    // Well past dead_after: b must stay Up with its own metadata all along.
    let until = Instant::now() + DEAD_AFTER + Duration::from_secs(1);
    while Instant::now() < until {
        assert_eq!(a.health("b"), Health::Up);
        assert_eq!(
            meta_of(&a, "b").and_then(|m| m.get("rpc_addr").cloned()),
            Some(b_addr.to_string())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        a.packets_dropped() >= before + 10,
        "{} -> {}",
        before,
        a.packets_dropped()
    );
    // Raw junk is dropped as well, whatever its size.
    let junk = std::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 63), 0)).unwrap();
    let before = a.packets_dropped();
    for len in [0usize, 1, 49, 50, 1400, 60_000] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        junk.send_to(&bytes, a_addr).unwrap();
    }
    assert!(
        eventually(Duration::from_secs(2), || a.packets_dropped() >= before + 6).await,
        "junk not counted: {} -> {}",
        before,
        a.packets_dropped()
    );
    assert_eq!(a.health("b"), Health::Up);

    evil.shutdown().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn gossip_without_a_secret_refuses_to_start() {
    let addr = free_addr([127, 0, 0, 71]);
    for secret in [None, Some(String::new())] {
        let mut cfg = config("a", "cairn", addr, &[]);
        cfg.secret = secret;
        let err = Gossip::start(cfg).await.err().expect("must refuse");
        assert!(err.to_string().contains("CLUSTER_JOIN_TOKEN"), "{err}");
    }
}
