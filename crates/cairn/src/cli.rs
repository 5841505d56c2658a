//! Thin CLI clients of the management plane.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use cairn_cluster::status::ClusterStatus;

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Nodes and their health, the system-group leader, the layout version and which node
    /// holds and leads which partitions.
    Status {
        /// Management endpoint of any node.
        #[arg(long, env = "CAIRN_ADMIN", default_value = "http://127.0.0.1:8080")]
        admin: String,
        /// Print the raw JSON report.
        #[arg(long)]
        json: bool,
        /// PEM CA certificate(s) to verify an https:// endpoint with, besides the public roots.
        #[arg(long, env = "CAIRN_CA_FILE")]
        ca_file: Option<std::path::PathBuf>,
    },
}

/// GET over http:// or https:// (verified with the public roots and `ca_file`).
async fn get(url: &str, ca_file: Option<&std::path::Path>) -> anyhow::Result<Bytes> {
    let connector = cairn_tls::https_connector(ca_file)?;
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let uri: hyper::Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
    let resp = client.get(uri).await.map_err(|e| {
        // The TLS reason (unknown issuer, name mismatch) sits deep in the source chain.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        anyhow::anyhow!("cannot reach {url}: {msg}")
    })?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the response")?
        .to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "{url} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(body)
}

pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status {
            admin,
            json,
            ca_file,
        } => {
            let url = format!("{}/cluster/status", admin.trim_end_matches('/'));
            let body = get(&url, ca_file.as_deref()).await?;
            if json {
                println!("{}", String::from_utf8_lossy(&body));
                return Ok(());
            }
            let s: ClusterStatus =
                serde_json::from_slice(&body).context("decoding the status report")?;
            print!("{}", render(&s));
            Ok(())
        }
    }
}

/// The human-readable report.
pub fn render(s: &ClusterStatus) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "cluster {} ({})  reported by {}\nsystem leader: {}  voters: {}\nlayout version {}  replication {}\n\n",
        s.cluster_name,
        s.cluster_id.as_deref().unwrap_or("-"),
        s.reporting_node,
        s.system_leader.as_deref().unwrap_or("none"),
        s.system_voters.join(","),
        s.layout_version,
        s.replication,
    ));
    out.push_str(&format!(
        "{:<12} {:<8} {:<8} {:<22} {:<22} {:>5} {:>6} {:>10} {:>10}\n",
        "NODE", "STATE", "HEALTH", "RPC", "S3", "PARTS", "LEADS", "DISK GiB", "FREE GiB"
    ));
    for n in &s.nodes {
        out.push_str(&format!(
            "{:<12} {:<8} {:<8} {:<22} {:<22} {:>5} {:>6} {:>10.1} {:>10.1}\n",
            n.node_id,
            n.state,
            n.health,
            n.rpc_addr,
            n.api_addr,
            n.partitions,
            n.leads,
            n.disk_capacity_bytes as f64 / (1u64 << 30) as f64,
            n.disk_free_bytes as f64 / (1u64 << 30) as f64,
        ));
    }
    out.push_str("\nPARTITION  LEADER       REPLICAS\n");
    for p in &s.partitions {
        out.push_str(&format!(
            "{:<10} {:<12} {}\n",
            p.partition,
            p.leader.as_deref().unwrap_or("?"),
            p.replicas.join(",")
        ));
    }
    out
}
