//! Thin CLI clients of the management plane: `cairn cluster status`, `cairn token ...`,
//! `cairn key ...`. Every request goes through [`request`] (one place for transport and auth).

use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use cairn_cluster::status::ClusterStatus;

use crate::identity;

/// Where the management API is and how to authenticate to it (shared by every admin command).
#[derive(clap::Args, Clone)]
pub struct AdminArgs {
    /// Management endpoint of any node.
    #[arg(long, env = "CAIRN_ADMIN", default_value = "http://127.0.0.1:8080")]
    pub admin: String,
    /// Operator token (`cairn token create`).
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Root access key, to sign the request instead of sending a token (the node's ACCESS_KEY).
    #[arg(long, env = "ACCESS_KEY", hide_env_values = true)]
    pub access_key: Option<String>,
    /// Root secret key (the node's SECRET_KEY); signs, never sent.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// A node's data directory to read generated root credentials from (`credentials.toml`).
    #[arg(long, env = "STORAGE_PATH")]
    pub data_dir: Option<PathBuf>,
    /// PEM CA certificate(s) to verify an https:// endpoint with, besides the public roots.
    #[arg(long, env = "CAIRN_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// How a management request is authenticated.
pub(crate) enum Auth {
    Token(String),
    Root(cairn_files::Credentials),
    None,
}

impl AdminArgs {
    /// A token if given, else root credentials (flags/env, then the data directory), else none
    /// (the node then answers 401 and the message says what to pass).
    fn auth(&self) -> anyhow::Result<Auth> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        if let Some(t) = set(&self.token) {
            return Ok(Auth::Token(t));
        }
        let pair = match (set(&self.access_key), set(&self.secret_key)) {
            (Some(a), Some(s)) => Some((a, s)),
            (Some(_), None) => anyhow::bail!("--access-key given without --secret-key"),
            (None, Some(_)) => anyhow::bail!("--secret-key given without --access-key"),
            (None, None) => {
                let dir = self
                    .data_dir
                    .clone()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or_else(|| PathBuf::from("data"));
                identity::stored_credentials(&dir).ok().flatten()
            }
        };
        Ok(match pair {
            Some((a, s)) => Auth::Root(cairn_files::Credentials::new(&a, &s)?),
            None => Auth::None,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.admin.trim_end_matches('/'))
    }
}

/// The one HTTP request helper of the admin CLI: sends `method path` with an optional JSON
/// body, authenticated as `auth`; returns the body of a 2xx answer, or an error that names
/// the problem (node unreachable, token missing or refused, scope too low, the server's
/// message).
pub(crate) async fn request(
    args: &AdminArgs,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<Bytes> {
    let (resp, auth) = send(args, method, path, body).await?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the response")?
        .to_bytes();
    if status.is_success() {
        return Ok(body);
    }
    Err(refusal(args, method, path, status, &body, &auth))
}

/// Sends `method path` (see [`request`]) and returns the response, whatever its status, with
/// how it was authenticated; for answers read as a stream (`cairn logs --follow`).
pub(crate) async fn send(
    args: &AdminArgs,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(hyper::Response<hyper::body::Incoming>, Auth)> {
    let url = args.url(path);
    let auth = args.auth()?;
    let body = match body {
        Some(v) => serde_json::to_vec(&v)?,
        None => Vec::new(),
    };
    let uri: hyper::Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(uri.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json");
    match &auth {
        Auth::Token(t) => {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        Auth::Root(c) => {
            let date = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .to_string();
            let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let (m, target, body_hash) = crate::admin_auth::signed_parts(method, pq, &body);
            req = req
                .header(cairn_files::auth::ACCESS_KEY_HEADER, c.access_key())
                .header(cairn_files::auth::DATE_HEADER, &date)
                .header(
                    cairn_files::auth::SIGNATURE_HEADER,
                    c.sign(&m, &target, &body_hash, &date),
                );
        }
        Auth::None => {}
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .context("building the request")?;
    // http:// or https:// (verified with the public roots and `--ca-file`).
    let connector = cairn_tls::https_connector(args.ca_file.as_deref())?;
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let resp = client.request(req).await.map_err(|e| {
        // The TLS reason (unknown issuer, name mismatch) sits deep in the source chain.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        anyhow::anyhow!(
            "cannot reach the management API at {}: {msg} (is the node running? set --admin or CAIRN_ADMIN)",
            args.admin
        )
    })?;
    Ok((resp, auth))
}

/// The error for a non-2xx answer: the server's message and a hint about the credentials.
pub(crate) fn refusal(
    args: &AdminArgs,
    method: &str,
    path: &str,
    status: hyper::StatusCode,
    body: &[u8],
    auth: &Auth,
) -> anyhow::Error {
    let url = args.url(path);
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some(format!(
                "{}: {}",
                e.get("code")?.as_str()?,
                e.get("message")?.as_str()?
            ))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let hint = match (status.as_u16(), auth) {
        (401, Auth::None) => " (pass --token or set CAIRN_TOKEN; `cairn token create` makes one with the root credentials)",
        (401, _) => " (the token or root credentials were refused)",
        (403, _) => " (the token's scope is too low for this command)",
        _ => "",
    };
    anyhow::anyhow!("{method} {url} answered {status}: {message}{hint}")
}

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Nodes and their health, the system-group leader, the layout version and which node
    /// holds and leads which partitions.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the raw JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Every node with its health, zone, labels, disk, partitions held and led, and version
    /// (each node is asked for its own status; unreachable nodes say so).
    Nodes {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        json: bool,
    },
    /// Whether the cluster serves (healthy, degraded, unavailable) and why.
    Health {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status { admin, json } => {
            let body = request(&admin, "GET", "/cluster/status", None).await?;
            if json {
                println!("{}", String::from_utf8_lossy(&body));
                return Ok(());
            }
            let s: ClusterStatus =
                serde_json::from_slice(&body).context("decoding the status report")?;
            print!("{}", render(&s));
            println!(
                "redundancy: {}",
                cairn_cluster::health::judge(&s).redundancy
            );
            // Every node's background workers, as each node reports them.
            match request(&admin, "GET", "/cluster/nodes", None).await {
                Ok(body) => {
                    let nodes: Vec<crate::admin_cluster::NodeView> =
                        serde_json::from_slice(&body).context("decoding the node list")?;
                    for n in nodes {
                        match &n.status {
                            Some(st) => print!(
                                "\nworkers on {}:\n{}",
                                n.node_id,
                                crate::cli_node::render_workers(&st.workers)
                            ),
                            None => println!(
                                "\nworkers on {}: unknown (node did not answer)",
                                n.node_id
                            ),
                        }
                    }
                }
                Err(e) => println!("\nworkers: unknown ({e:#})"),
            }
            Ok(())
        }
        ClusterCommand::Nodes { admin, json } => crate::cli_cluster::nodes(&admin, json).await,
        ClusterCommand::Health { admin, json } => crate::cli_cluster::health(&admin, json).await,
    }
}

/// Operator tokens for the management API.
#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (alone, on stdout). Authenticated with the root
    /// credentials (ACCESS_KEY/SECRET_KEY or --data-dir) or an admin token.
    Create {
        #[arg(long)]
        name: String,
        /// read, operator or admin.
        #[arg(long)]
        scope: String,
        /// Lifetime, e.g. 90s, 30m, 24h, 7d (default: never expires).
        #[arg(long)]
        ttl: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List tokens (never the tokens themselves).
    Ls {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke a token by name: it is refused from now on.
    Revoke {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Parses `90s`, `30m`, `24h`, `7d` (or plain seconds) into seconds.
pub fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86_400),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("--ttl {s:?}: use a number with s, m, h or d (e.g. 24h)"))?;
    anyhow::ensure!(n > 0, "--ttl must be positive");
    n.checked_mul(mult).context("--ttl is too large")
}

pub(crate) fn ms_date(ms: Option<i64>) -> String {
    match ms.and_then(|m| time::OffsetDateTime::from_unix_timestamp(m / 1000).ok()) {
        Some(t) => t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| "-".into()),
        None => "never".into(),
    }
}

pub async fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            name,
            scope,
            ttl,
            admin,
        } => {
            let ttl_secs = ttl.as_deref().map(parse_ttl).transpose()?;
            let body = serde_json::json!({"name": name, "scope": scope, "ttl_secs": ttl_secs});
            let out = request(&admin, "POST", "/tokens", Some(body)).await?;
            let t: crate::admin_keys::NewToken =
                serde_json::from_slice(&out).context("decoding the answer")?;
            println!("{}", t.token);
        }
        TokenCommand::Ls { json, admin } => {
            let out = request(&admin, "GET", "/tokens", None).await?;
            if json {
                println!("{}", String::from_utf8_lossy(&out));
                return Ok(());
            }
            let list: Vec<crate::admin_keys::TokenView> =
                serde_json::from_slice(&out).context("decoding the answer")?;
            println!(
                "{:<20} {:<12} {:<9} {:<8} {:<26} CREATOR",
                "NAME", "ID", "SCOPE", "STATUS", "EXPIRES"
            );
            for t in list {
                println!(
                    "{:<20} {:<12} {:<9} {:<8} {:<26} {}",
                    t.name,
                    t.id,
                    t.scope,
                    t.status,
                    ms_date(t.expires_ms),
                    t.creator
                );
            }
        }
        TokenCommand::Revoke { name, admin } => {
            request(&admin, "DELETE", &format!("/tokens/{name}"), None).await?;
            eprintln!("token {name} revoked");
        }
    }
    Ok(())
}

/// S3 access keys and their grants.
#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Create a key; prints ACCESS_KEY=... and SECRET_KEY=... (the secret is shown only now).
    Create {
        #[arg(long)]
        name: String,
        /// BUCKET=read|write|owner (BUCKET may be a prefix like `logs-*`); repeatable.
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// The key may create buckets (and owns those it creates).
        #[arg(long)]
        allow_create_bucket: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List keys (never their secrets).
    Ls {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Disable a key: every request signed with it is refused until `enable`.
    Disable {
        /// The access key id.
        #[arg(value_name = "ACCESS_KEY")]
        key_id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    Enable {
        /// The access key id.
        #[arg(value_name = "ACCESS_KEY")]
        key_id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete a key for good (it can never come back, not even from a node's configuration).
    Rm {
        /// The access key id.
        #[arg(value_name = "ACCESS_KEY")]
        key_id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Give a key a new secret (printed); the old one stops working at once.
    Rotate {
        /// The access key id.
        #[arg(value_name = "ACCESS_KEY")]
        key_id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Grant a key read, write or owner on a bucket (or a name prefix like `logs-*`).
    Grant {
        /// The access key id.
        #[arg(value_name = "ACCESS_KEY")]
        key_id: String,
        bucket: String,
        permission: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a key's grant on a bucket pattern.
    Ungrant {
        /// The access key id.
        #[arg(value_name = "ACCESS_KEY")]
        key_id: String,
        bucket: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

fn print_key_secret(out: &[u8], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", String::from_utf8_lossy(out));
        return Ok(());
    }
    let k: crate::admin_keys::KeySecret =
        serde_json::from_slice(out).context("decoding the answer")?;
    println!("ACCESS_KEY={}", k.access_key);
    println!("SECRET_KEY={}", k.secret_key);
    Ok(())
}

fn print_key(out: &[u8]) -> anyhow::Result<()> {
    let k: crate::admin_keys::KeyView =
        serde_json::from_slice(out).context("decoding the answer")?;
    let grants: Vec<String> = k
        .grants
        .iter()
        .map(|g| format!("{}={}", g.bucket, g.permission))
        .collect();
    println!(
        "{} {} grants [{}]",
        k.access_key,
        k.status,
        grants.join(", ")
    );
    Ok(())
}

pub async fn key(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Create {
            name,
            grants,
            allow_create_bucket,
            json,
            admin,
        } => {
            let mut list = Vec::new();
            for g in &grants {
                let (bucket, permission) = g
                    .split_once('=')
                    .with_context(|| format!("--grant {g:?}: use BUCKET=read|write|owner"))?;
                list.push(serde_json::json!({"bucket": bucket, "permission": permission}));
            }
            let body = serde_json::json!({
                "name": name, "grants": list, "allow_create_bucket": allow_create_bucket,
            });
            let out = request(&admin, "POST", "/keys", Some(body)).await?;
            print_key_secret(&out, json)?;
        }
        KeyCommand::Ls { json, admin } => {
            let out = request(&admin, "GET", "/keys", None).await?;
            if json {
                println!("{}", String::from_utf8_lossy(&out));
                return Ok(());
            }
            let list: Vec<crate::admin_keys::KeyView> =
                serde_json::from_slice(&out).context("decoding the answer")?;
            println!(
                "{:<22} {:<20} {:<9} {:<5} {:<6} GRANTS",
                "ACCESS KEY", "NAME", "STATUS", "ROOT", "CREATE"
            );
            for k in list {
                let grants: Vec<String> = k
                    .grants
                    .iter()
                    .map(|g| format!("{}={}", g.bucket, g.permission))
                    .collect();
                println!(
                    "{:<22} {:<20} {:<9} {:<5} {:<6} {}",
                    k.access_key,
                    k.name,
                    k.status,
                    if k.root { "yes" } else { "no" },
                    if k.allow_create_bucket { "yes" } else { "no" },
                    grants.join(", ")
                );
            }
        }
        KeyCommand::Disable { key_id, admin } => {
            print_key(&request(&admin, "POST", &format!("/keys/{key_id}/disable"), None).await?)?;
        }
        KeyCommand::Enable { key_id, admin } => {
            print_key(&request(&admin, "POST", &format!("/keys/{key_id}/enable"), None).await?)?;
        }
        KeyCommand::Rm { key_id, admin } => {
            request(&admin, "DELETE", &format!("/keys/{key_id}"), None).await?;
            eprintln!("access key {key_id} deleted");
        }
        KeyCommand::Rotate { key_id, admin } => {
            let out = request(&admin, "POST", &format!("/keys/{key_id}/rotate"), None).await?;
            print_key_secret(&out, false)?;
        }
        KeyCommand::Grant {
            key_id,
            bucket,
            permission,
            admin,
        } => {
            let body = serde_json::json!({ "permission": permission });
            let path = format!("/keys/{key_id}/grants/{bucket}");
            print_key(&request(&admin, "PUT", &path, Some(body)).await?)?;
        }
        KeyCommand::Ungrant {
            key_id,
            bucket,
            admin,
        } => {
            let path = format!("/keys/{key_id}/grants/{bucket}");
            print_key(&request(&admin, "DELETE", &path, None).await?)?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("90s").unwrap(), 90);
        assert_eq!(parse_ttl("30m").unwrap(), 1800);
        assert_eq!(parse_ttl("24h").unwrap(), 86_400);
        assert_eq!(parse_ttl("7d").unwrap(), 604_800);
        assert_eq!(parse_ttl("5").unwrap(), 5);
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("soon").is_err());
    }
}
