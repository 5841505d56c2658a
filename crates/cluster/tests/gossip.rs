//! Gossip membership over real UDP on loopback: discovery from one seed each, failure
//! detection (Up -> Suspect -> Down), rejoin after a restart, and cluster isolation.
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
