//! CLI clients of the cluster API (`admin_cluster.rs`): `cairn cluster nodes|health`,
//! `cairn node exec --selector SEL ACTION`, `cairn bucket ls|info|usage`. Tables for people,
//! `--json` for scripts; every request goes through `cli::request`.

use anyhow::Context;
use cairn_cluster::health::ClusterHealth;
use cairn_cluster::node_admin::NodeAction;

use crate::admin_cluster::{BucketView, ExecResponse, NodeView};
use crate::cli::{request, AdminArgs};

/// `1.5 GiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn print_json(body: &[u8]) {
    println!("{}", String::from_utf8_lossy(body));
}

/// `cairn cluster nodes`: one line per node.
pub async fn nodes(admin: &AdminArgs, json: bool) -> anyhow::Result<()> {
    let body = request(admin, "GET", "/cluster/nodes", None).await?;
    if json {
        print_json(&body);
        return Ok(());
    }
    let nodes: Vec<NodeView> = serde_json::from_slice(&body).context("decoding the node list")?;
    print!("{}", render_nodes(&nodes));
    Ok(())
}

pub fn render_nodes(nodes: &[NodeView]) -> String {
    let mut out = format!(
        "{:<12} {:<9} {:<8} {:<6} {:<24} {:>10} {:>10} {:>5} {:>4} {:<9} NOTE\n",
        "NODE",
        "STATE",
        "HEALTH",
        "ZONE",
        "LABELS",
        "DISK USED",
        "DISK FREE",
        "HELD",
        "LED",
        "VERSION"
    );
    for n in nodes {
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let labels = if labels.is_empty() {
            "-".to_string()
        } else {
            labels.join(",")
        };
        let note = match &n.status_error {
            Some(e) => format!("status {}: {}", e.code, e.message),
            None => match &n.status {
                Some(s) if !s.ready => format!("not ready: {}", s.not_ready_reasons.join("; ")),
                _ => String::new(),
            },
        };
        out.push_str(&format!(
            "{:<12} {:<9} {:<8} {:<6} {:<24} {:>10} {:>10} {:>5} {:>4} {:<9} {}\n",
            n.node_id,
            n.state,
            n.health,
            n.zone.as_deref().unwrap_or("-"),
            labels,
            human_bytes(n.disk_used_bytes),
            human_bytes(n.disk_free_bytes),
            n.partitions_held,
            n.partitions_led,
            n.version.as_deref().unwrap_or("?"),
            note
        ));
    }
    out
}

/// `cairn cluster health`.
pub async fn health(admin: &AdminArgs, json: bool) -> anyhow::Result<()> {
    let body = request(admin, "GET", "/cluster/health", None).await?;
    if json {
        print_json(&body);
        return Ok(());
    }
    let h: ClusterHealth = serde_json::from_slice(&body).context("decoding the health report")?;
    print!("{}", render_health(&h));
    Ok(())
}

pub fn render_health(h: &ClusterHealth) -> String {
    let status = serde_json::to_value(h.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut out = format!(
        "cluster is {status} (reported by {}, system leader {}, layout v{})\n\
         nodes: {} total, {} up, {} suspect, {} down\n\
         partitions: {} total, {} healthy, {} degraded, {} unavailable\n\
         redundancy: {}\n",
        h.reporting_node,
        h.system_leader.as_deref().unwrap_or("none"),
        h.layout_version,
        h.nodes.total,
        h.nodes.up,
        h.nodes.suspect,
        h.nodes.down,
        h.partitions.total,
        h.partitions.healthy,
        h.partitions.degraded,
        h.partitions.unavailable,
        h.redundancy,
    );
    for p in &h.problems {
        out.push_str(&format!("  - {p}\n"));
    }
    out
}

#[derive(clap::Args)]
pub struct ExecArgs {
    /// Comma-separated label selectors every target must match, e.g. 'zone=a,disk!=hdd',
    /// 'tier in (ssd,nvme)', 'node=n2'; '*' for every node.
    #[arg(long)]
    pub selector: String,
    /// Per-node deadline in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub deadline_ms: u64,
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: ExecAction,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(clap::Subcommand, Clone)]
pub enum ExecAction {
    /// Each node's status report.
    Status,
    /// Replace each node's log filter, e.g. `debug` or `info,cairn_raft=debug`.
    LogLevel { level: String },
    /// Stop each node cleanly.
    Shutdown,
}

impl From<ExecAction> for NodeAction {
    fn from(a: ExecAction) -> Self {
        match a {
            ExecAction::Status => NodeAction::Status,
            ExecAction::LogLevel { level } => NodeAction::LogLevel { level },
            ExecAction::Shutdown => NodeAction::Shutdown,
        }
    }
}

pub(crate) async fn exec(args: ExecArgs) -> anyhow::Result<()> {
    let action: NodeAction = args.action.into();
    let body = serde_json::json!({
        "selector": args.selector,
        "action": action,
        "deadline_ms": args.deadline_ms,
    });
    let out = request(&args.admin, "POST", "/cluster/exec", Some(body)).await?;
    let r: ExecResponse = serde_json::from_slice(&out).context("decoding the answer")?;
    if args.json {
        print_json(&out);
    } else {
        print!("{}", render_exec(&r));
    }
    anyhow::ensure!(r.matched > 0, "no node matches the selector {}", r.selector);
    anyhow::ensure!(r.failed == 0, "{} of {} nodes failed", r.failed, r.matched);
    Ok(())
}

pub fn render_exec(r: &ExecResponse) -> String {
    let mut out = format!(
        "{} on {} node(s) matching {}: {} ok, {} failed\n",
        r.action, r.matched, r.selector, r.succeeded, r.failed
    );
    for n in &r.results {
        let detail = match (&n.result, &n.error) {
            (_, Some(e)) => format!("ERROR {}: {}", e.code, e.message),
            (Some(v), None) => format!("ok {}", serde_json::to_string(v).unwrap_or_default()),
            (None, None) => "ok".to_string(),
        };
        out.push_str(&format!(
            "{:<12} {:>6} ms  {}\n",
            n.node_id, n.elapsed_ms, detail
        ));
    }
    out
}

/// Buckets and their usage.
#[derive(clap::Subcommand)]
pub enum BucketCommand {
    /// Every bucket with its objects and bytes.
    Ls {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One bucket's settings (owner, write consistency, partition) and usage.
    Info {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Objects and bytes of one bucket, or of every bucket and their total.
    Usage {
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

pub async fn bucket(cmd: BucketCommand) -> anyhow::Result<()> {
    match cmd {
        BucketCommand::Ls { json, admin } => {
            let body = request(&admin, "GET", "/buckets", None).await?;
            if json {
                print_json(&body);
                return Ok(());
            }
            let list: Vec<BucketView> =
                serde_json::from_slice(&body).context("decoding the bucket list")?;
            print!("{}", render_buckets(&list, false));
        }
        BucketCommand::Info { name, json, admin } => {
            let body = request(&admin, "GET", &format!("/buckets/{name}"), None).await?;
            if json {
                print_json(&body);
                return Ok(());
            }
            let b: BucketView = serde_json::from_slice(&body).context("decoding the bucket")?;
            println!("bucket            {}", b.name);
            println!(
                "created           {}",
                crate::cli::ms_date(Some(b.created_ms))
            );
            println!("owner             {}", b.owner.as_deref().unwrap_or("-"));
            println!(
                "write consistency {}",
                b.write_consistency.as_deref().unwrap_or("default")
            );
            println!("index partition   {}", b.partition);
            println!("objects           {}", b.objects);
            println!("bytes             {} ({})", b.bytes, human_bytes(b.bytes));
        }
        BucketCommand::Usage { name, json, admin } => {
            let list: Vec<BucketView> = match &name {
                Some(n) => {
                    let body = request(&admin, "GET", &format!("/buckets/{n}"), None).await?;
                    vec![serde_json::from_slice(&body).context("decoding the bucket")?]
                }
                None => {
                    let body = request(&admin, "GET", "/buckets", None).await?;
                    serde_json::from_slice(&body).context("decoding the bucket list")?
                }
            };
            if json {
                let usage: Vec<serde_json::Value> = list
                    .iter()
                    .map(|b| serde_json::json!({"bucket": b.name, "objects": b.objects, "bytes": b.bytes}))
                    .collect();
                println!("{}", serde_json::Value::Array(usage));
                return Ok(());
            }
            print!("{}", render_buckets(&list, name.is_none()));
        }
    }
    Ok(())
}

pub fn render_buckets(list: &[BucketView], total: bool) -> String {
    let mut out = format!(
        "{:<32} {:>10} {:>14} {:>10}\n",
        "BUCKET", "OBJECTS", "BYTES", "SIZE"
    );
    for b in list {
        out.push_str(&format!(
            "{:<32} {:>10} {:>14} {:>10}\n",
            b.name,
            b.objects,
            b.bytes,
            human_bytes(b.bytes)
        ));
    }
    if total {
        let (o, by): (u64, u64) = list
            .iter()
            .fold((0, 0), |(o, b), x| (o + x.objects, b + x.bytes));
        out.push_str(&format!(
            "{:<32} {:>10} {:>14} {:>10}\n",
            "TOTAL",
            o,
            by,
            human_bytes(by)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn tables_show_every_row_and_the_failures() {
        let r: ExecResponse = serde_json::from_value(serde_json::json!({
            "selector": "zone in (a)", "action": "log-level debug", "matched": 2,
            "succeeded": 1, "failed": 1,
            "results": [
                {"node_id": "n1", "rpc_addr": "a:1", "ok": true, "result": {"level": "debug"},
                 "error": null, "elapsed_ms": 3},
                {"node_id": "n2", "rpc_addr": "b:1", "ok": false, "result": null,
                 "error": {"code": "timeout", "message": "no answer within 10 ms"}, "elapsed_ms": 10}
            ]
        }))
        .unwrap();
        let t = render_exec(&r);
        assert!(t.contains("1 ok, 1 failed"), "{t}");
        assert!(t.contains("n2") && t.contains("ERROR timeout"), "{t}");
        let b = BucketView {
            name: "photos".into(),
            created_ms: 0,
            owner: None,
            write_consistency: None,
            partition: 3,
            objects: 2,
            bytes: 2048,
        };
        let t = render_buckets(&[b.clone(), b], true);
        assert!(t.lines().last().unwrap().contains("4096"), "{t}");
    }
}
