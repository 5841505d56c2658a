//! `cairn node status|log-level|shutdown` and `cairn logs [--follow]`: thin clients of one
//! node's management plane (`node_admin.rs`). The node is `--admin URL`, or `--node ID`
//! looked up through `/cluster/nodes` of the `--admin` node.

use anyhow::Context;
use http_body_util::BodyExt;

use cairn_cluster::node_admin::NodeStatusReport;

use crate::cli::{request, send, AdminArgs};
use crate::logs::LogLine;
use crate::node_admin::{LogLevelAnswer, ShutdownAnswer};

/// Which node a command talks to.
#[derive(clap::Args, Clone)]
pub struct NodeTarget {
    /// The node's id: its management address is looked up through `/cluster/nodes` of the
    /// `--admin` node (default: the `--admin` node itself).
    #[arg(long = "node", value_name = "ID")]
    pub node: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(clap::Subcommand)]
pub enum NodeCommand {
    /// The node's status: version, uptime, roles, labels, partitions held and led, disk,
    /// readiness and log filter.
    Status {
        #[command(flatten)]
        target: NodeTarget,
        /// Print the raw JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Replace the node's log filter, e.g. `debug` or `info,cairn_raft=debug`.
    LogLevel {
        level: String,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Stop the node cleanly: it finishes in-flight requests, hands its Raft leaderships off
    /// and exits.
    Shutdown {
        #[command(flatten)]
        target: NodeTarget,
    },
    /// The node's background workers, or pause / resume / wake one (`gc`, `chunk-sync`, ...).
    Worker {
        /// `ls`, `pause`, `resume` or `wake`.
        #[arg(default_value = "ls")]
        op: String,
        /// The worker (not needed for `ls`).
        name: Option<String>,
        #[command(flatten)]
        target: NodeTarget,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run an action on every node a label selector matches, in parallel, and print each
    /// node's answer (failures included; exit code 1 if any node failed).
    Exec(crate::cli_cluster::ExecArgs),
    /// Drain a node: the layout gives it no replicas and its data moves to the others while
    /// it keeps serving (refused below the replication factor unless --force).
    Drain {
        /// The node's id.
        id: String,
        /// Drain even if fewer nodes than the replication factor would remain.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a node for good (refused while it still holds replicas or while that would
    /// drop a partition below the replication factor, unless --force): drain it first.
    Remove {
        /// The node's id.
        id: String,
        /// Remove even if partitions are left with fewer copies.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Turn a node's maintenance flag on or off: while on, the node is not re-homed however
    /// long it is down.
    Maintenance {
        /// `on` or `off`.
        op: String,
        /// The node's id.
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `cairn logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// Keep printing new lines as the node logs them (until interrupted or the node stops).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only lines at least this severe: error, warn, info, debug, trace.
    #[arg(long)]
    pub level: Option<String>,
    /// Only lines whose target starts with this, e.g. `cairn_raft`.
    #[arg(long)]
    pub target: Option<String>,
    /// Recent lines to print (default 100; with --follow, 10 before the live ones).
    #[arg(long)]
    pub limit: Option<usize>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub node: NodeTarget,
}

impl NodeTarget {
    /// The management endpoint to send to: `--admin`, or `--node`'s address from the
    /// cluster's node list.
    async fn resolve(&self) -> anyhow::Result<AdminArgs> {
        let Some(id) = &self.node else {
            return Ok(self.admin.clone());
        };
        let body = request(&self.admin, "GET", "/cluster/nodes", None)
            .await
            .with_context(|| {
                format!("looking up node {id} (or pass --admin with node {id}'s management URL)")
            })?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).context("decoding /cluster/nodes")?;
        let addr = admin_addr_of(&v, id)?;
        let scheme = if self.admin.admin.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let mut args = self.admin.clone();
        args.admin = format!("{scheme}://{addr}");
        Ok(args)
    }
}

/// The management address (`host:port`) of node `id` in a `/cluster/nodes` answer (a list
/// of nodes, or an object with a `nodes` list; the address at the top of an entry or in its
/// `status`).
pub fn admin_addr_of(v: &serde_json::Value, id: &str) -> anyhow::Result<String> {
    let list = v
        .as_array()
        .or_else(|| v.get("nodes").and_then(|n| n.as_array()))
        .context("/cluster/nodes answered something else than a node list")?;
    let entry = list
        .iter()
        .find(|n| n.get("node_id").and_then(|x| x.as_str()) == Some(id))
        .with_context(|| format!("no node {id} in the cluster"))?;
    entry
        .get("admin_addr")
        .or_else(|| entry.get("status").and_then(|s| s.get("admin_addr")))
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .map(String::from)
        .with_context(|| format!("node {id} has no known management address (is it reachable?)"))
}

pub async fn node(cmd: NodeCommand) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Exec(args) => return crate::cli_cluster::exec(args).await,
        NodeCommand::Worker {
            op,
            name,
            target,
            json,
        } => {
            let args = target.resolve().await?;
            let body = match (op.as_str(), name) {
                ("ls", _) => request(&args, "GET", "/workers", None).await?,
                ("pause" | "resume" | "wake", Some(name)) => {
                    request(&args, "POST", &format!("/workers/{name}/{op}"), None).await?
                }
                ("pause" | "resume" | "wake", None) => {
                    anyhow::bail!(
                        "`cairn node worker {op}` needs a worker name (see `cairn node worker ls`)"
                    )
                }
                (other, _) => {
                    anyhow::bail!(
                        "unknown worker operation {other:?}: expected ls, pause, resume or wake"
                    )
                }
            };
            if json {
                println!("{}", String::from_utf8_lossy(&body));
                return Ok(());
            }
            let list: Vec<cairn_worker::WorkerStatus> = if op == "ls" {
                serde_json::from_slice(&body).context("decoding the worker list")?
            } else {
                vec![serde_json::from_slice(&body).context("decoding the worker status")?]
            };
            print!("{}", render_workers(&list));
        }
        NodeCommand::Status { target, json } => {
            let args = target.resolve().await?;
            let body = request(&args, "GET", "/status", None).await?;
            if json {
                println!("{}", String::from_utf8_lossy(&body));
                return Ok(());
            }
            let s: NodeStatusReport =
                serde_json::from_slice(&body).context("decoding the status report")?;
            print!("{}", render_status(&s));
        }
        NodeCommand::LogLevel { level, target } => {
            let args = target.resolve().await?;
            let body = serde_json::json!({ "level": level });
            let out = request(&args, "PUT", "/log-level", Some(body)).await?;
            let a: LogLevelAnswer = serde_json::from_slice(&out).context("decoding the answer")?;
            println!("{}: log filter {} (was {})", a.node_id, a.level, a.previous);
        }
        NodeCommand::Drain { id, force, admin } => {
            let q = if force { "?force=true" } else { "" };
            let path = format!("/cluster/nodes/{}/drain{q}", encode(&id));
            print_lifecycle(&request(&admin, "POST", &path, None).await?)?;
        }
        NodeCommand::Remove { id, force, admin } => {
            let q = if force { "?force=true" } else { "" };
            let path = format!("/cluster/nodes/{}/remove{q}", encode(&id));
            print_lifecycle(&request(&admin, "POST", &path, None).await?)?;
        }
        NodeCommand::Maintenance { op, id, admin } => {
            let on = match op.as_str() {
                "on" => true,
                "off" => false,
                other => anyhow::bail!("expected `on` or `off`, not {other:?}"),
            };
            let path = format!("/cluster/nodes/{}/maintenance", encode(&id));
            let body = serde_json::json!({ "on": on });
            print_lifecycle(&request(&admin, "POST", &path, Some(body)).await?)?;
        }
        NodeCommand::Shutdown { target } => {
            let args = target.resolve().await?;
            let out = request(&args, "POST", "/shutdown", None).await?;
            let a: ShutdownAnswer = serde_json::from_slice(&out).context("decoding the answer")?;
            if a.already {
                println!("{}: already shutting down", a.node_id);
            } else {
                println!(
                    "{}: shutting down (finishing requests, handing off Raft leadership)",
                    a.node_id
                );
            }
        }
    }
    Ok(())
}

/// Prints a node's lifecycle answer (`admin_heal.rs`).
fn print_lifecycle(body: &[u8]) -> anyhow::Result<()> {
    let a: crate::admin_heal::NodeLifecycle =
        serde_json::from_slice(body).context("decoding the answer")?;
    let m = if a.maintenance {
        ", in maintenance"
    } else {
        ""
    };
    println!("{}: {}{m}", a.node_id, a.state);
    Ok(())
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h) {
        (0, 0) => format!("{m}m{s}s"),
        (0, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// The human-readable status of one node.
pub fn render_status(s: &NodeStatusReport) -> String {
    let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut out = format!(
        "node {}  version {}  up {}  {}\n",
        s.node_id,
        s.version,
        duration(s.uptime_secs),
        if s.ready { "ready" } else { "NOT READY" }
    );
    out.push_str(&format!(
        "zone {}  labels {}\nroles {}\n",
        s.zone.as_deref().unwrap_or("-"),
        if labels.is_empty() {
            "-".to_string()
        } else {
            labels.join(",")
        },
        s.roles.join(", ")
    ));
    out.push_str(&format!(
        "rpc {}  s3 {}  admin {}\n",
        s.rpc_addr, s.api_addr, s.admin_addr
    ));
    out.push_str(&format!(
        "partitions held {}  led {}{}\n",
        s.partitions.held,
        s.partitions.led,
        if s.partitions.system_leader {
            "  (system group leader)"
        } else {
            ""
        }
    ));
    out.push_str(&format!(
        "disk {}: {} free of {}, chunks {}\nlog filter {}\n",
        s.disk.path,
        gib(s.disk.free_bytes),
        gib(s.disk.total_bytes),
        gib(s.disk.chunk_bytes),
        s.log_level
    ));
    for r in &s.not_ready_reasons {
        out.push_str(&format!("not ready: {r}\n"));
    }
    out.push_str(&render_workers(&s.workers));
    out
}

/// The workers of one node as a table (empty when it reported none).
pub fn render_workers(workers: &[cairn_worker::WorkerStatus]) -> String {
    if workers.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "{:<16} {:<10} {:>10} {:>10} {:>7} {:>7}  NOTE\n",
        "WORKER", "STATE", "ITEMS", "BYTES", "ERRORS", "QUEUE"
    );
    for w in workers {
        let note = match (&w.last_error, &w.note) {
            (Some(e), _) if w.consecutive_errors > 0 => format!("failing: {e}"),
            (_, Some(n)) => n.clone(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<16} {:<10} {:>10} {:>10} {:>7} {:>7}  {}\n",
            w.name,
            w.state.as_str(),
            w.items,
            w.bytes,
            w.errors,
            w.queue_length
                .map(|q| q.to_string())
                .unwrap_or_else(|| "-".into()),
            note
        ));
    }
    out
}

/// Percent-encodes a query parameter value.
fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn logs_query(a: &LogsArgs, limit: usize) -> String {
    let mut q = vec![format!("limit={limit}")];
    if let Some(l) = &a.level {
        q.push(format!("level={}", encode(l)));
    }
    if let Some(t) = &a.target {
        q.push(format!("target={}", encode(t)));
    }
    q.join("&")
}

fn print_line(l: &LogLine, json: bool) {
    if json {
        println!("{}", serde_json::to_string(l).unwrap_or_default());
    } else {
        println!("{}", l.to_plain());
    }
}

pub async fn logs(a: LogsArgs) -> anyhow::Result<()> {
    let args = a.node.resolve().await?;
    if !a.follow {
        let path = format!("/logs?{}", logs_query(&a, a.limit.unwrap_or(100)));
        let body = request(&args, "GET", &path, None).await?;
        let lines: Vec<LogLine> = serde_json::from_slice(&body).context("decoding the lines")?;
        for l in &lines {
            print_line(l, a.json);
        }
        return Ok(());
    }
    let path = format!("/logs/stream?{}", logs_query(&a, a.limit.unwrap_or(10)));
    let (resp, auth) = send(&args, "GET", &path, None).await?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading the response")?
            .to_bytes();
        return Err(crate::cli::refusal(
            &args, "GET", &path, status, &body, &auth,
        ));
    }
    let mut body = resp.into_body();
    let mut sse = SseParser::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the log stream")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for ev in sse.push(&data) {
            match ev.event.as_str() {
                "line" => match serde_json::from_str::<LogLine>(&ev.data) {
                    Ok(l) => print_line(&l, a.json),
                    Err(e) => eprintln!("cairn: undecodable log line ({e}): {}", ev.data),
                },
                "lagged" => eprintln!("cairn: fell behind the node's log: {}", ev.data),
                _ => {}
            }
        }
    }
    eprintln!("cairn: the log stream ended (the node stopped?)");
    Ok(())
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Splits a server-sent-events byte stream into events.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Adds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        // Blocks end with an empty line; split on bytes, so a character cut between two
        // chunks is decoded whole.
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let rest = self.buf.split_off(end + 2);
            let block = String::from_utf8_lossy(&self.buf[..end]).replace('\r', "");
            self.buf = rest;
            let mut ev = SseEvent {
                event: "message".into(),
                data: String::new(),
            };
            let mut has_data = false;
            for line in block.lines() {
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => ev.event = value.to_string(),
                    "data" => {
                        if has_data {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if has_data {
                out.push(ev);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nevent: line\nid: 4\nda").is_empty());
        let evs = p.push(b"ta: {\"a\":1}\n\nevent: lagged\ndata: {\"missed\":3}\n\n");
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    event: "line".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: "lagged".into(),
                    data: "{\"missed\":3}".into()
                },
            ]
        );
    }

    #[test]
    fn node_addresses_come_from_the_node_list() {
        let v = serde_json::json!([
            {"node_id": "n1", "admin_addr": "10.0.0.1:8080"},
            {"node_id": "n2", "status": {"admin_addr": "10.0.0.2:8080"}},
            {"node_id": "n3", "reachable": false},
        ]);
        assert_eq!(admin_addr_of(&v, "n1").unwrap(), "10.0.0.1:8080");
        assert_eq!(admin_addr_of(&v, "n2").unwrap(), "10.0.0.2:8080");
        assert!(admin_addr_of(&v, "n3").is_err());
        assert!(admin_addr_of(&v, "n9").is_err());
        let wrapped = serde_json::json!({"nodes": [{"node_id": "n1", "admin_addr": "h:1"}]});
        assert_eq!(admin_addr_of(&wrapped, "n1").unwrap(), "h:1");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("cairn_raft::registry"), "cairn_raft%3A%3Aregistry");
        assert_eq!(encode("warn"), "warn");
    }

    #[test]
    fn status_renders() {
        let s = NodeStatusReport {
            node_id: "n1".into(),
            version: "0.1.0".into(),
            uptime_secs: 3725,
            ready: false,
            not_ready_reasons: vec!["no partition layout yet".into()],
            ..Default::default()
        };
        let out = render_status(&s);
        assert!(out.contains("node n1"));
        assert!(out.contains("up 1h2m"));
        assert!(out.contains("not ready: no partition layout yet"));
    }
}
