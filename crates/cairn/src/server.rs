//! `cairn server`: wires configuration, storage, the Raft registry, the object service, the S3
//! listener and the management plane together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_config::{Config, ServerFlags};
use cairn_object::{ObjectService, ServiceConfig};
use cairn_raft::{Registry, RegistryConfig};
use tokio::sync::watch;

use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::Command;

use crate::{admin, identity};

pub async fn run(flags: ServerFlags) -> anyhow::Result<()> {
    let cfg = Config::load(&flags)?;
    let logs = crate::logs::init(&cfg.log, &cfg.log_format);
    arm_failpoints()?;

    let data = cfg.data_dir().to_path_buf();
    crate::datadir::make_private(&data)?;
    let node_id = identity::node_id(&data, cfg.node_id.as_deref())?;
    let (access_key, secret_key, generated) =
        identity::credentials(&data, cfg.access_key.as_deref(), cfg.secret_key.as_deref())?;
    if generated {
        // Printed once, at first start; afterwards they live in <data>/credentials.toml.
        println!(
            "Generated root credentials (saved in {}):",
            data.join("credentials.toml").display()
        );
        println!("  ACCESS_KEY={access_key}");
        println!("  SECRET_KEY={secret_key}");
    }
    let root =
        cairn_files::Credentials::new(&access_key, &secret_key).context("root credentials")?;

    let advertise =
        cfg.node_advertise_addr
            .clone()
            .unwrap_or_else(|| match cfg.node_bind_addr.as_str() {
                "0.0.0.0" | "::" => host_name(),
                other => other.to_string(),
            });
    let chunks = {
        let dir = data.join("chunks");
        tokio::task::spawn_blocking(move || cairn_chunk::ChunkStore::open(dir)).await??
    };
    // Under the reserve the node takes no new chunk copies (writers steer around it).
    chunks.disk().set_reserve(cfg.disk_reserve_bytes);
    let clustered = !cfg.seeds().is_empty();
    // There is no unauthenticated mode: a cluster needs a join token (a node alone makes one).
    let (join_token, token_generated) =
        cairn_trust::token::effective(&data, cfg.cluster_join_token.as_deref(), clustered)?;
    if token_generated {
        println!(
            "Generated the cluster join token (saved in {}); give it to nodes that join this one:",
            data.join(cairn_trust::token::TOKEN_FILE).display()
        );
        println!(
            "  CLUSTER_JOIN_TOKEN={}",
            join_token.as_deref().unwrap_or_default()
        );
    }
    let operator_tls = match (&cfg.tls_ca_cert, &cfg.tls_node_cert, &cfg.tls_node_key) {
        (Some(ca), Some(cert), Some(key)) => Some(cairn_trust::OperatorFiles {
            ca_cert: ca.into(),
            node_cert: cert.into(),
            node_key: key.into(),
        }),
        _ => None,
    };
    let trust = cairn_trust::Trust::open(&data, &node_id, operator_tls)
        .context("loading the node's TLS identity (<data>/tls or TLS_* settings)")?;
    trust.spawn_reload(Duration::from_secs(5));
    if !clustered {
        // A cluster of one is its own CA, so later nodes can join it. The master key first:
        // a joiner admitted (which needs the CA) receives it.
        cairn_meta::secrets::MasterKey::load_or_create(&data, cfg.encryption_key.as_deref())
            .context("creating the cluster master key")?;
        trust
            .create_ca(&cfg.cluster_name)
            .context("creating the cluster CA")?;
    }
    let raft_id = identity::raft_id(&node_id);
    let rpc_addr = format!("{advertise}:{}", cfg.node_rpc_port);
    let bind: std::net::IpAddr = cfg.node_bind_addr.parse().context("NODE_BIND_ADDR")?;
    let registry = Registry::open(RegistryConfig {
        dir: data.join("meta"),
        node_id: raft_id,
        rpc_addr: rpc_addr.clone(),
        partitions: cfg.partitions,
        snapshot_every: cfg.raft_snapshot_every,
        bootstrap: if clustered {
            cairn_raft::Bootstrap::Cluster
        } else {
            cairn_raft::Bootstrap::SingleNode
        },
        trust: Some(trust.clone()),
    })
    .await
    .context("starting the metadata groups")?;
    // The Raft log pauses (this node stops leading) before the disk is completely full: a
    // failed redb write would stop every group on the node until a restart.
    registry
        .log_health()
        .set_floor(crate::node_admin::raft_log_floor(cfg.disk_reserve_bytes));
    // FileService answers UNAVAILABLE until the object service is attached below.
    let files = cairn_files::FileServer::for_cluster(root);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Stops the S3 listener first: a stopping node finishes its S3 requests, then hands off
    // its Raft leaderships while the RPC port still serves, then stops the rest.
    let (stop_s3_tx, stop_s3_rx) = watch::channel(false);
    let placement = cfg.placement()?;
    let settings = cairn_cluster::ClusterSettings {
        node_id: node_id.clone(),
        raft_id,
        rpc_addr: rpc_addr.clone(),
        api_addr: format!("{advertise}:{}", cfg.node_api_port),
        cluster_name: cfg.cluster_name.clone(),
        join_token: join_token.clone(),
        join_token_accept: cfg.join_token_accept()?,
        encryption_key: cfg.encryption_key.clone(),
        trust: trust.clone(),
        seeds: cfg.seeds(),
        replication: cfg.replication_factor as usize,
        desired_voters: cfg.cluster_voters as usize,
        zone: cfg.node_zone.clone(),
        labels: cfg.labels()?,
        partitions: cfg.partitions,
        heartbeat_secs: cfg.heartbeat_interval_secs,
        data_dir: data.clone(),
        placement_require: placement.0,
        placement_prefer: placement.1,
        placement_avoid: placement.2,
        repair_grace_secs: cfg.repair_grace_secs,
    };
    let rpc_listener = tokio::net::TcpListener::bind(SocketAddr::new(bind, cfg.node_rpc_port))
        .await
        .with_context(|| format!("binding NODE_RPC_PORT on {bind}:{}", cfg.node_rpc_port))?;
    let gossip = if clustered {
        let advertise_sock = tokio::net::lookup_host(&rpc_addr)
            .await
            .context("resolving NODE_ADVERTISE_ADDR for gossip")?
            .next()
            .context("NODE_ADVERTISE_ADDR resolves to no address")?;
        let g = cairn_cluster::gossip::Gossip::start(cairn_cluster::gossip::GossipConfig {
            node_id: node_id.clone(),
            cluster_name: cfg.cluster_name.clone(),
            // UDP on the same port number as gRPC.
            bind: SocketAddr::new(bind, cfg.node_rpc_port),
            advertise: advertise_sock,
            seeds: cfg.seeds(),
            interval: Duration::from_millis((cfg.heartbeat_interval_secs * 1000 / 5).max(200)),
            dead_after: Duration::from_secs(cfg.node_timeout_secs),
            metadata: [
                ("rpc_addr".to_string(), rpc_addr.clone()),
                (
                    "api_addr".to_string(),
                    format!("{advertise}:{}", cfg.node_api_port),
                ),
                ("raft_id".to_string(), raft_id.to_string()),
            ]
            .into_iter()
            .collect(),
            // Gossip packets are sealed under a key derived from the cluster secret.
            secret: join_token.clone(),
            // Packets sealed with these tokens open too (a token rotation in progress).
            accept: cfg.join_token_accept()?,
            generation_file: Some(data.join("gossip-generation")),
        })
        .await
        .context("starting gossip")?;
        Some(Arc::new(g))
    } else {
        None
    };
    // The node's management plane as other nodes reach it (`POST /cluster/exec`,
    // `/cluster/nodes`, `/cluster/metrics`); filled in once the pieces exist.
    let plane = cairn_cluster::NodePlane::default();
    let rpc_task = tokio::spawn(cairn_cluster::serve_rpc(
        rpc_listener,
        registry.clone(),
        trust.clone(),
        cairn_trust::ListenerLimits::default(),
        cairn_cluster::ControlServer::new(registry.clone(), settings.clone())
            .with_node_plane(plane.clone()),
        cairn_cluster::ChunkServer::new(chunks.clone()),
        files.clone().into_service(),
        wait_for(shutdown_rx.clone()),
    ));

    let service_config = ServiceConfig {
        chunk_size: cfg.chunk_size as usize,
        inline_threshold: cfg.inline_threshold as usize,
    };
    if clustered {
        cairn_cluster::formation::form_or_join(&settings, &registry)
            .await
            .context("forming or joining the cluster")?;
    } else {
        // A cluster of one still has an identity, so later nodes can join it by naming it.
        let cmd = Command::FormCluster {
            cluster_id: uuid::Uuid::new_v4().to_string(),
            name: cfg.cluster_name.clone(),
        };
        registry
            .propose(SYSTEM_GROUP, cmd)
            .await
            .context("recording the cluster identity")?;
        cairn_cluster::record_config(&settings, &registry)
            .await
            .context("recording the cluster configuration")?;
    }
    cairn_cluster::check_config(&settings, &registry)
        .context("checking the cluster configuration")?;
    let master =
        crate::master::master_key(&data, cfg.encryption_key.as_deref(), &registry, clustered)
            .await?;
    let keys = Arc::new(cairn_meta::secrets::KeyDirectory::new(
        registry.meta().clone(),
        master,
        Some((access_key.clone(), secret_key.clone())),
    ));
    files.attach_keys(keys.clone());
    let view = Arc::new(cairn_cluster::ClusterView::default());
    view.refresh(&registry);
    // Every background worker of the node runs in `workers` (statuses, pause/resume, metrics).
    let workers = cairn_worker::Workers::new(shutdown_rx.clone());
    let consistency = cairn_chunk::WriteConsistency::parse(&cfg.default_write_consistency)
        .context("DEFAULT_WRITE_CONSISTENCY")?;
    // Start-time settings: the cluster configuration's where it sets them, else this node's.
    let node_settings = crate::config_live::Effective::resolve(&cfg, consistency, None);
    let effective = crate::config_live::Effective::resolve(
        &cfg,
        consistency,
        registry
            .meta()
            .cluster_config(SYSTEM_GROUP)
            .ok()
            .flatten()
            .as_ref(),
    );
    let io = Arc::new(cairn_chunk::ReplicatedChunks::new(
        chunks.clone(),
        node_id.clone(),
        registry.peers().clone(),
        view.clone(),
        cfg.partitions,
        effective.write_consistency,
    ));
    // Partition moves copy chunks to the new holders through the chunk layer.
    workers.spawn(
        cairn_cluster::controller::Controller::new(
            settings.clone(),
            registry.clone(),
            view.clone(),
            gossip.clone(),
        )
        .with_chunks(io.clone()),
    )?;
    let s3_limits = cairn_s3::S3Limits::new(
        effective.s3_max_connections as usize,
        effective.s3_max_inflight as usize,
    );
    let rates = crate::config_live::WorkerRates::new(&effective);
    let config_runtime = crate::config_live::ConfigRuntime::new(
        node_id.clone(),
        registry.clone(),
        io.clone(),
        crate::config_live::LiveKnobs {
            s3_limits: s3_limits.clone(),
            rates: rates.clone(),
        },
        gossip.clone(),
        node_settings,
        effective.clone(),
    );
    config_runtime.spawn(Duration::from_millis(500), shutdown_rx.clone());
    let objects =
        ObjectService::with_chunk_io(service_config, registry.clone(), chunks.clone(), io.clone());
    objects.set_sse_key(keys.master().derive(cairn_object::sse::SSE_S3_CONTEXT));
    files.attach(objects.clone());
    workers.spawn(cairn_chunk::refs::RefSync::new(
        registry.clone(),
        Duration::from_millis(200),
    ))?;
    workers.spawn(cairn_chunk::gc::Gc::new(
        registry.clone(),
        chunks.clone(),
        Duration::from_secs(effective.gc_grace_secs),
        Duration::from_secs(effective.gc_interval_secs),
    ))?;
    if let Some(g) = &gossip {
        // Full nodes are steered around before they refuse a write.
        cairn_cluster::view::spawn_disk_state(
            view.clone(),
            Arc::downgrade(g),
            chunks.disk().clone(),
            Duration::from_secs(1),
            shutdown_rx.clone(),
        );
    }
    workers.spawn(cairn_chunk::DiskWatch::new(
        chunks.disk().clone(),
        Duration::from_secs(1),
    ))?;
    // Anti-entropy, throttled by REPAIR_RATE_MBPS / `repair.rate_mbps` (live).
    let chunk_sync = cairn_chunk::sync::ChunkSync::new(
        io.clone(),
        registry.clone(),
        256,
        Duration::from_secs(5),
    )
    .with_rate(rates.repair.clone());
    let sync_metrics = chunk_sync.metrics();
    workers.spawn(chunk_sync)?;
    // Copies of partitions placed elsewhere leave once every holder has them.
    workers.spawn(cairn_chunk::handback::Handback::new(
        io.clone(),
        Duration::from_secs(cfg.handback_interval_secs),
    ))?;
    // Bit-rot detection: every local chunk re-read and re-hashed, bad copies restored.
    let scrub = cairn_chunk::scrub::Scrub::new(
        io.clone(),
        rates.scrub.clone(),
        Duration::from_secs(cfg.scrub_interval_secs),
    );
    let scrub_metrics = scrub.metrics();
    workers.spawn(scrub)?;
    // Bucket lifecycle rules, applied by each partition's leader (LIFECYCLE_* settings).
    objects.set_lifecycle_day(Duration::from_secs(cfg.lifecycle_day_secs));
    let lifecycle = cairn_object::lifecycle::LifecycleWorker::new(
        objects.clone(),
        Duration::from_secs(cfg.lifecycle_interval_secs),
        rates.lifecycle.clone(),
    );
    let lifecycle_metrics = lifecycle.metrics();
    workers.spawn(lifecycle)?;
    workers.spawn(cairn_object::workers::UploadReaper::new(
        objects.clone(),
        Duration::from_secs(effective.upload_expiry_secs),
        Duration::from_secs(effective.upload_expiry_secs.clamp(1, 3600)),
    ))?;

    tokio::spawn(crate::master::seal_legacy_keys(
        registry.clone(),
        keys.clone(),
    ));
    tokio::spawn(crate::master::register_root_key(
        registry.clone(),
        keys.clone(),
        node_id.clone(),
        access_key.clone(),
        secret_key.clone(),
        shutdown_rx.clone(),
    ));
    let mut metrics = prometheus_client::registry::Registry::with_prefix("cairn");
    let s3_metrics = cairn_s3::S3Metrics::register(&mut metrics);
    registry.register_metrics(&mut metrics);
    let node_metrics =
        crate::node_metrics::NodeMetrics::new(data.clone(), &node_id, cfg.node_zone.as_deref());
    node_metrics.register(&mut metrics);
    node_metrics.spawn_scanner(crate::node_metrics::DATA_DIR_SCAN, shutdown_rx.clone());
    files.metrics().register(&mut metrics);
    chunks.metrics().register(&mut metrics);
    scrub_metrics.register(&mut metrics);
    lifecycle_metrics.register(&mut metrics);
    sync_metrics.register(&mut metrics);
    workers.register_metrics(&mut metrics);
    view.moves().register_metrics(&mut metrics);
    if let Some(g) = &gossip {
        g.register_metrics(&mut metrics);
    }
    let s3_settings = cairn_s3::S3Settings {
        access_key: access_key.clone(),
        secret_key: secret_key.clone(),
        region: cfg.s3_region.clone(),
        domains: cfg.domains(),
        keys: Some(keys.clone()),
    };
    let cors = cairn_s3::Cors::new(objects.clone(), &s3_settings)?;
    let s3 = cairn_s3::build_service(objects, &s3_settings, s3_metrics.clone())?;
    let sigv2 = match cfg.s3_allow_sigv2 {
        true => Some(cairn_s3::SigV2Verifier::new(
            &s3_settings,
            secret_lookup(keys.clone()),
        )?),
        false => None,
    };

    let api_addr = SocketAddr::new(bind, cfg.node_api_port);
    let admin_addr = SocketAddr::new(bind, cfg.node_admin_port);
    let api_listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .with_context(|| format!("binding NODE_API_PORT on {api_addr}"))?;
    let admin_listener = tokio::net::TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("binding NODE_ADMIN_PORT on {admin_addr}"))?;

    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(
            cairn_tls::ServerTls::from_files(cert, key).context("loading TLS_CERT / TLS_KEY")?,
        ),
        _ => None,
    };
    let header_timeout = Duration::from_secs(cfg.http_header_timeout_secs);
    let s3_task = tokio::spawn(cairn_s3::serve(
        api_listener,
        s3,
        s3_metrics,
        cairn_s3::ServeOptions {
            max_connections: effective.s3_max_connections as usize,
            max_in_flight: effective.s3_max_inflight as usize,
            header_timeout,
            body_idle_timeout: Duration::from_secs(cfg.http_body_idle_timeout_secs),
            sigv2,
            tls: tls.clone(),
            limits: Some(s3_limits),
            cors: Some(cors),
        },
        wait_for(stop_s3_rx),
    ));
    let node = Arc::new(
        crate::node_admin::LocalNode::new(
            settings.clone(),
            format!("{advertise}:{}", cfg.node_admin_port),
            registry.clone(),
            view.clone(),
            logs,
            cfg.disk_reserve_bytes,
            workers.clone(),
        )
        .with_chunk_disk(chunks.disk().clone()),
    );
    plane.install_admin(node.clone());
    let metrics = Arc::new(metrics);
    {
        let metrics = metrics.clone();
        plane.install_metrics(Arc::new(move || {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &metrics)
                .map_err(|e| format!("encoding metrics: {e}"))?;
            Ok(out)
        }));
    }
    let admin_router = admin::router(admin::AdminState {
        metrics,
        node_id: node_id.clone(),
        keys: keys.clone(),
        metrics_require_token: cfg.metrics_require_token,
        cluster: Arc::new(admin::ClusterContext {
            settings: settings.clone(),
            registry: registry.clone(),
            view,
            node_timeout_secs: cfg.node_timeout_secs,
            gossip: gossip.clone(),
            plane,
        }),
        node: node.clone(),
        config: config_runtime,
    });
    let https = tls.is_some();
    let admin_task = tokio::spawn(crate::https::serve_admin(
        admin_listener,
        admin_router,
        tls,
        header_timeout,
        wait_for(shutdown_rx),
    ));
    tracing::info!(%node_id, https, s3 = %api_addr, admin = %admin_addr, data = %data.display(), "cairn node is serving");

    let reason = tokio::select! {
        () = shutdown_signal() => "signal".to_string(),
        r = node.shutdown_requested() => r,
    };
    node.begin_shutdown(reason.clone());
    tracing::info!(%reason, "shutting down: finishing S3 requests");
    let _ = stop_s3_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), s3_task).await;
    let handoffs = registry.hand_off_leadership(HANDOFF_TIMEOUT).await;
    let moved = handoffs
        .iter()
        .filter(|h| matches!(h.outcome, cairn_raft::HandoffOutcome::Moved { .. }))
        .count();
    tracing::info!(
        moved,
        led = handoffs.len(),
        "Raft leadership handed off; stopping"
    );
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = admin_task.await;
        let _ = rpc_task.await;
    })
    .await;
    if let Some(g) = gossip.and_then(|g| Arc::try_unwrap(g).ok()) {
        g.shutdown().await;
    }
    registry.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Longest time a stopping node spends handing off its Raft leaderships.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(8);

/// Secrets of the cluster's keys, for the SigV2 pre-check (s3s and the access hook still
/// apply the key table afterwards).
fn secret_lookup(keys: Arc<cairn_meta::secrets::KeyDirectory>) -> cairn_s3::SecretLookup {
    Arc::new(move |ak: &str| keys.resolve(ak).and_then(|k| k.secret))
}

/// The machine's host name (advertised when binding all interfaces), or `localhost`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// The fault-injection points of the node (see docs/CHAOS.md).
const FAILPOINTS: [&str; 3] = ["chunk-write", "chunk-read", "raft-log-write"];

/// Arms the fault-injection points named in `CAIRN_FAILPOINTS` (`point=actions;...` in the
/// `fail` crate's syntax, e.g. `chunk-write=10%return;chunk-read=sleep(50)`). Only the chaos
/// suite sets it; a misspelt point is an error rather than a fault silently not injected.
fn arm_failpoints() -> anyhow::Result<()> {
    let Ok(spec) = std::env::var("CAIRN_FAILPOINTS") else {
        return Ok(());
    };
    for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (point, actions) = item
            .split_once('=')
            .map(|(p, a)| (p.trim(), a.trim()))
            .with_context(|| format!("CAIRN_FAILPOINTS: `{item}` is not point=actions"))?;
        if !FAILPOINTS.contains(&point) {
            anyhow::bail!(
                "CAIRN_FAILPOINTS: unknown point `{point}` (known: {})",
                FAILPOINTS.join(", ")
            );
        }
        fail::cfg(point, actions)
            .map_err(|e| anyhow::anyhow!("CAIRN_FAILPOINTS: {point}={actions}: {e}"))?;
        tracing::warn!(point, actions, "fault injection armed (CAIRN_FAILPOINTS)");
    }
    Ok(())
}
