//! The per-node management plane: `GET /ready` (open, for load balancers), `GET /status`,
//! `GET /logs`, `GET /logs/stream` (server-sent events) with read scope, `PUT /log-level` and
//! `POST /shutdown` with operator scope.
//!
//! [`LocalNode`] holds what they read and runs the actions; it also implements
//! [`NodeAdmin`], so `POST /cluster/exec` (fanned out over the RPC port) runs exactly the same
//! code as these endpoints. Log-level changes and shutdowns are audited in the system group
//! with the caller's name.

// Handlers return ready-made axum responses as their error.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use cairn_cluster::node_admin::{
    DiskReport, NodeAction, NodeActionError, NodeAdmin, NodeStatusReport, PartitionCounts,
};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::Command;
use cairn_raft::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::admin::AdminState;
use crate::admin_auth::{error, now_ms, ReadScope, RequireScope};
use crate::logs::{LineFilter, LogLine, Logs};

/// Longest wait for the audit entry of an action (the action itself does not depend on it).
const AUDIT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a measured size of the chunk directory is reused.
const CHUNK_BYTES_TTL: Duration = Duration::from_secs(30);
/// Most lines one `/logs` answer carries.
const MAX_LIMIT: usize = crate::logs::RING_LINES;

/// What a node's management plane reads and does.
pub struct LocalNode {
    settings: cairn_cluster::ClusterSettings,
    admin_addr: String,
    registry: Arc<Registry>,
    view: Arc<cairn_cluster::ClusterView>,
    logs: Logs,
    started: Instant,
    disk_reserve_bytes: u64,
    chunk_bytes: Mutex<Option<(Instant, u64)>>,
    workers: cairn_worker::Workers,
    /// The chunk store's free-space guard (a full node refuses new chunks).
    chunk_disk: Option<cairn_chunk::DiskGuard>,
    /// `Some(reason)` once a shutdown was asked for (endpoint, exec or signal).
    shutdown: watch::Sender<Option<String>>,
}

/// `PUT /log-level` body.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LogLevelBody {
    /// A `tracing` filter: `debug`, or `info,cairn_raft=debug`.
    pub level: String,
}

/// The answer to a log-level change.
#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct LogLevelAnswer {
    pub node_id: String,
    pub previous: String,
    pub level: String,
    /// Whether the change was recorded in the cluster audit log.
    pub audited: bool,
}

/// The answer to a shutdown request (sent before the node stops).
#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct ShutdownAnswer {
    pub node_id: String,
    pub shutting_down: bool,
    /// A shutdown was already under way.
    pub already: bool,
    pub audited: bool,
}

/// `GET /ready`.
#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct Readiness {
    pub node_id: String,
    pub ready: bool,
    /// Why not, when not.
    pub reasons: Vec<String>,
}

/// Query of `GET /logs` and `GET /logs/stream`.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only lines at least this severe: error, warn, info, debug, trace.
    pub level: Option<String>,
    /// Only lines whose target starts with this (e.g. `cairn_raft`).
    pub target: Option<String>,
    /// `/logs`: most lines returned (the newest; default 100). `/logs/stream`: recent lines
    /// sent before the live ones (default 0).
    pub limit: Option<usize>,
    /// Only lines with a sequence number above this.
    pub after: Option<u64>,
}

impl LocalNode {
    pub fn new(
        settings: cairn_cluster::ClusterSettings,
        admin_addr: String,
        registry: Arc<Registry>,
        view: Arc<cairn_cluster::ClusterView>,
        logs: Logs,
        disk_reserve_bytes: u64,
        workers: cairn_worker::Workers,
    ) -> Self {
        Self {
            workers,
            settings,
            admin_addr,
            registry,
            view,
            logs,
            started: Instant::now(),
            disk_reserve_bytes,
            chunk_bytes: Mutex::new(None),
            chunk_disk: None,
            shutdown: watch::channel(None).0,
        }
    }

    /// Reports the chunk store's free-space state (`disk.full` in status, a not-ready reason).
    pub fn with_chunk_disk(mut self, guard: cairn_chunk::DiskGuard) -> Self {
        self.chunk_disk = Some(guard);
        self
    }

    /// Why this node should not take traffic now (empty: ready): no layout yet, a Raft group
    /// it holds without a leader, free disk below `DISK_RESERVE_BYTES` (new chunks refused),
    /// chunk disk I/O errors in the last minute, Raft log writes paused or failing, Raft groups
    /// stopped by a fatal error, shutting down.
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(why) = self.shutdown.borrow().as_ref() {
            reasons.push(format!("shutting down ({why})"));
        }
        self.view.refresh(&self.registry);
        if self.view.layout().is_none() {
            reasons.push("no partition layout yet".into());
        }
        if self.registry.leader_of(SYSTEM_GROUP).is_none() {
            reasons.push("the system group has no leader".into());
        }
        let leaderless: Vec<String> = self
            .registry
            .groups()
            .into_iter()
            .filter(|g| *g != SYSTEM_GROUP)
            .filter(|g| self.registry.is_replica(*g) && self.registry.leader_of(*g).is_none())
            .map(|g| (g - 1).to_string())
            .collect();
        if !leaderless.is_empty() {
            reasons.push(format!(
                "partitions without a leader: {}",
                leaderless.join(",")
            ));
        }
        let (_, free) = disk_stats(&self.settings.data_dir);
        let chunks_full = self.chunk_disk.as_ref().is_some_and(|d| d.is_full());
        if free < self.disk_reserve_bytes || chunks_full {
            reasons.push(format!(
                "disk: {free} bytes free, below DISK_RESERVE_BYTES ({}): new chunk copies are \
                 refused (reads go on) until space is freed",
                self.disk_reserve_bytes
            ));
        }
        if let Some(errors) = self.chunk_disk.as_ref().and_then(|d| d.recent_errors()) {
            reasons.push(errors.to_string());
        }
        if let Some(trouble) = self.registry.log_health().trouble() {
            reasons.push(trouble.to_string());
        }
        let stopped = self.registry.stopped_groups();
        if !stopped.is_empty() {
            let names: Vec<String> = stopped
                .iter()
                .map(|g| match *g {
                    SYSTEM_GROUP => "system".to_string(),
                    g => format!("partition {}", g - 1),
                })
                .collect();
            reasons.push(format!(
                "raft groups stopped by a storage error (restart the node): {}",
                names.join(", ")
            ));
        }
        reasons
    }

    /// The node's status report.
    pub async fn status(&self) -> NodeStatusReport {
        let reg = &self.registry;
        let me = self.settings.raft_id;
        let mut held = 0;
        let mut led = 0;
        for g in reg.groups().into_iter().filter(|g| *g != SYSTEM_GROUP) {
            if reg.is_replica(g) {
                held += 1;
            }
            if reg.is_leader(g) {
                led += 1;
            }
        }
        let mut roles = Vec::new();
        if let Some(raft) = reg.raft_handle(SYSTEM_GROUP) {
            let m = raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            if membership.voter_ids().any(|v| v == me) {
                roles.push("system-voter".to_string());
            } else if membership.get_node(&me).is_some() {
                roles.push("system-learner".to_string());
            }
        }
        // Every node serves S3 and FileService.
        roles.extend(["s3".to_string(), "files".to_string()]);
        let (total, free) = disk_stats(&self.settings.data_dir);
        let reasons = self.not_ready_reasons();
        NodeStatusReport {
            node_id: self.settings.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            zone: self.settings.zone.clone(),
            labels: self.settings.labels.clone(),
            roles,
            rpc_addr: self.settings.rpc_addr.clone(),
            api_addr: self.settings.api_addr.clone(),
            admin_addr: self.admin_addr.clone(),
            partitions: PartitionCounts {
                held,
                led,
                system_leader: reg.is_leader(SYSTEM_GROUP),
            },
            disk: DiskReport {
                path: self.settings.data_dir.display().to_string(),
                total_bytes: total,
                free_bytes: free,
                chunk_bytes: self.chunk_bytes().await,
                reserve_bytes: self.disk_reserve_bytes,
                full: free < self.disk_reserve_bytes
                    || self.chunk_disk.as_ref().is_some_and(|d| d.is_full()),
                io_errors: self.chunk_disk.as_ref().map_or(0, |d| d.io_errors_total()),
            },
            ready: reasons.is_empty(),
            not_ready_reasons: reasons,
            log_level: self.logs.filter(),
            workers: self.workers.statuses(),
        }
    }

    /// The node's background workers.
    pub fn workers(&self) -> &cairn_worker::Workers {
        &self.workers
    }

    /// Bytes of chunk files under `<data>/chunks`, measured at most every 30 s.
    async fn chunk_bytes(&self) -> u64 {
        if let Some((at, bytes)) = *self.chunk_bytes.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < CHUNK_BYTES_TTL {
                return bytes;
            }
        }
        let dir = self.settings.data_dir.join("chunks");
        let bytes = tokio::task::spawn_blocking(move || dir_bytes(&dir))
            .await
            .unwrap_or(0);
        *self.chunk_bytes.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), bytes));
        bytes
    }

    /// Replaces the log filter on behalf of `actor`.
    pub async fn set_log_level(
        &self,
        level: &str,
        actor: &str,
    ) -> Result<LogLevelAnswer, NodeActionError> {
        let previous = self
            .logs
            .set_filter(level)
            .map_err(|e| NodeActionError::Invalid(e.to_string()))?;
        let level = self.logs.filter();
        tracing::info!(%actor, %previous, %level, "log level changed");
        let audited = self
            .audit(actor, format!("log level set to {level} (was {previous})"))
            .await;
        Ok(LogLevelAnswer {
            node_id: self.settings.node_id.clone(),
            previous,
            level,
            audited,
        })
    }

    /// Asks the node to stop on behalf of `actor`: the server then stops accepting S3
    /// requests, finishes those in flight, hands its Raft leaderships off and exits 0.
    pub async fn request_shutdown(&self, actor: &str) -> ShutdownAnswer {
        let already = self.shutdown.borrow().is_some();
        let audited = if already {
            false
        } else {
            self.audit(actor, "shutdown requested".into()).await
        };
        let fresh = self.begin_shutdown(format!("requested by {actor}"));
        ShutdownAnswer {
            node_id: self.settings.node_id.clone(),
            shutting_down: true,
            already: already || !fresh,
            audited,
        }
    }

    /// Marks the node as shutting down (not ready; log streams end); false if it already was.
    pub fn begin_shutdown(&self, reason: String) -> bool {
        self.shutdown.send_if_modified(|s| {
            if s.is_some() {
                return false;
            }
            *s = Some(reason);
            true
        })
    }

    /// Resolves with the reason once a shutdown is asked for.
    pub async fn shutdown_requested(&self) -> String {
        let mut rx = self.shutdown.subscribe();
        let reason = match rx.wait_for(|s| s.is_some()).await {
            Ok(s) => s.clone().unwrap_or_default(),
            // Unreachable while `self` holds the sender; treat as a request.
            Err(_) => "management plane gone".into(),
        };
        reason
    }

    fn stopping(&self) -> watch::Receiver<Option<String>> {
        self.shutdown.subscribe()
    }

    /// Records `event` of this node in the system group's audit log, attributed to `actor`;
    /// false (and a warning) when it could not be recorded in time.
    pub(crate) async fn audit(&self, actor: &str, event: String) -> bool {
        let cmd = Command::Audited {
            actor: actor.to_string(),
            command: Box::new(Command::AuditEvent {
                what: format!("node {}: {event}", self.settings.node_id),
                outcome: None,
                at_ms: now_ms(),
            }),
        };
        match tokio::time::timeout(AUDIT_TIMEOUT, self.registry.propose(SYSTEM_GROUP, cmd)).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, %event, "could not audit a node event");
                false
            }
            Err(_) => {
                tracing::warn!(%event, "auditing a node event timed out");
                false
            }
        }
    }
}

impl NodeAdmin for LocalNode {
    fn exec<'a>(
        &'a self,
        action: NodeAction,
        actor: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<serde_json::Value, NodeActionError>> {
        Box::pin(async move {
            let value = match action {
                NodeAction::Status => serde_json::to_value(self.status().await),
                NodeAction::LogLevel { level } => {
                    serde_json::to_value(self.set_log_level(&level, actor).await?)
                }
                NodeAction::Shutdown => serde_json::to_value(self.request_shutdown(actor).await),
            };
            value.map_err(|e| NodeActionError::Failed(e.to_string()))
        })
    }
}

/// The free-space floor of the Raft log for a chunk reserve: a quarter of it, at most
/// 256 MiB. Chunks stop at the reserve, so the metadata keeps the rest of it; the log pauses
/// only when even that is nearly used up.
pub fn raft_log_floor(disk_reserve_bytes: u64) -> u64 {
    (disk_reserve_bytes / 4).min(256 << 20)
}

/// (total, available) bytes of the file system holding `path`; zeros if it cannot be read.
fn disk_stats(path: &Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return (0, 0);
    };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return (0, 0);
    }
    let frsize = st.f_frsize as u64;
    (st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize)
}

/// Total size of the regular files under `dir` (0 if it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/ready", get(ready))
        .route("/status", get(status))
        .route("/logs", get(logs))
        .route("/logs/stream", get(logs_stream))
        .route("/log-level", put(log_level))
        .route("/shutdown", post(shutdown))
}

/// The node-plane part of the OpenAPI document (merged into the root document of
/// `openapi.rs`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(ready, status, logs, logs_stream, log_level, shutdown),
    components(schemas(Readiness, LogLine, LogLevelBody, LogLevelAnswer, ShutdownAnswer))
)]
pub struct Api;

fn action_error(e: NodeActionError) -> Response {
    match e {
        NodeActionError::Invalid(m) => error(StatusCode::BAD_REQUEST, "InvalidArgument", m),
        NodeActionError::Failed(m) => error(StatusCode::INTERNAL_SERVER_ERROR, "Internal", m),
    }
}

/// Readiness for load balancers: 200 when the node has a layout, every Raft group it holds
/// has a leader, its disk is above the reserve and it is not shutting down; else 503 with
/// the reasons.
#[utoipa::path(get, path = "/ready", tag = "node",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready, with the reasons", body = Readiness),
    ))]
async fn ready(State(s): State<AdminState>) -> Response {
    let reasons = s.node.not_ready_reasons();
    let ready = reasons.is_empty();
    let body = Readiness {
        node_id: s.node_id.clone(),
        ready,
        reasons,
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// This node's status: id, version, uptime, roles, zone and labels, addresses, partitions held
/// and led, disk, readiness and log filter.
#[utoipa::path(get, path = "/status", tag = "node", security(("bearer" = [])),
    responses(
        (status = 200, description = "The node's status report (NodeStatusReport)", body = serde_json::Value),
        (status = 401, description = "No or invalid token", body = serde_json::Value),
    ))]
async fn status(State(s): State<AdminState>, _: ReadScope) -> Response {
    Json(s.node.status().await).into_response()
}

fn parse_query(
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<(LogsQuery, LineFilter), Response> {
    let Query(q) =
        q.map_err(|e| error(StatusCode::BAD_REQUEST, "InvalidArgument", e.body_text()))?;
    let f = LineFilter::parse(q.level.as_deref(), q.target.as_deref())
        .map_err(|e| error(StatusCode::BAD_REQUEST, "InvalidArgument", e.to_string()))?;
    Ok((q, f))
}

/// Recent log lines of this node (kept in memory, the last 4096), oldest first.
#[utoipa::path(get, path = "/logs", tag = "node", security(("bearer" = [])),
    params(LogsQuery),
    responses(
        (status = 200, description = "Matching lines, oldest first", body = Vec<LogLine>),
        (status = 400, description = "Invalid level or parameter", body = serde_json::Value),
        (status = 401, description = "No or invalid token", body = serde_json::Value),
    ))]
async fn logs(
    State(s): State<AdminState>,
    _: ReadScope,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Response {
    let (q, f) = match parse_query(q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let limit = q.limit.unwrap_or(100).min(MAX_LIMIT);
    Json(s.node.logs.recent(&f, q.after.unwrap_or(0), limit)).into_response()
}

/// What the live stream still has to send.
struct LiveStream {
    backlog: VecDeque<LogLine>,
    rx: broadcast::Receiver<LogLine>,
    filter: LineFilter,
    last: u64,
    stop: watch::Receiver<Option<String>>,
}

fn line_event(l: &LogLine) -> Event {
    Event::default()
        .event("line")
        .id(l.seq.to_string())
        .data(serde_json::to_string(l).unwrap_or_default())
}

impl LiveStream {
    /// The next event, or `None` when the node shuts down.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if let Some(l) = self.backlog.pop_front() {
            self.last = l.seq;
            return Some((Ok(line_event(&l)), self));
        }
        loop {
            let received = tokio::select! {
                r = self.rx.recv() => Some(r),
                _ = self.stop.wait_for(|s| s.is_some()) => None,
            };
            match received {
                None | Some(Err(broadcast::error::RecvError::Closed)) => return None,
                Some(Ok(l)) => {
                    if l.seq <= self.last || !self.filter.matches(&l) {
                        continue;
                    }
                    self.last = l.seq;
                    return Some((Ok(line_event(&l)), self));
                }
                Some(Err(broadcast::error::RecvError::Lagged(n))) => {
                    let ev = Event::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{n}}}"));
                    return Some((Ok(ev), self));
                }
            }
        }
    }
}

/// Live log lines of this node as server-sent events (`event: line`, `data:` a LogLine as
/// JSON, `id:` its sequence number; `event: lagged` when the reader fell behind). The
/// stream ends when the node shuts down.
#[utoipa::path(get, path = "/logs/stream", tag = "node", security(("bearer" = [])),
    params(LogsQuery),
    responses(
        (status = 200, description = "text/event-stream of log lines", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid level or parameter", body = serde_json::Value),
        (status = 401, description = "No or invalid token", body = serde_json::Value),
    ))]
async fn logs_stream(
    State(s): State<AdminState>,
    _: ReadScope,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Response {
    let (q, filter) = match parse_query(q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Subscribe first, then read the backlog: no line falls between the two (duplicates are
    // skipped by sequence number).
    let rx = s.node.logs.subscribe();
    let limit = q.limit.unwrap_or(0).min(MAX_LIMIT);
    let after = q.after.unwrap_or(0);
    let backlog: VecDeque<LogLine> = if limit > 0 {
        s.node.logs.recent(&filter, after, limit).into()
    } else {
        VecDeque::new()
    };
    let state = LiveStream {
        backlog,
        rx,
        filter,
        last: after,
        stop: s.node.stopping(),
    };
    let stream = futures::stream::unfold(state, LiveStream::next);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Replaces this node's log filter (all outputs: stderr, `/logs`, `/logs/stream`).
#[utoipa::path(put, path = "/log-level", tag = "node", security(("bearer" = [])),
    request_body = LogLevelBody,
    responses(
        (status = 200, description = "The filter was replaced", body = LogLevelAnswer),
        (status = 400, description = "Invalid filter", body = serde_json::Value),
        (status = 401, description = "No or invalid token", body = serde_json::Value),
        (status = 403, description = "The token's scope is below operator", body = serde_json::Value),
    ))]
async fn log_level(
    State(s): State<AdminState>,
    RequireScope(actor): RequireScope<1>,
    body: Result<Json<LogLevelBody>, JsonRejection>,
) -> Response {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidArgument", e.body_text()),
    };
    match s.node.set_log_level(&b.level, &actor.name).await {
        Ok(a) => Json(a).into_response(),
        Err(e) => action_error(e),
    }
}

/// Stops this node cleanly: it stops accepting S3 requests, finishes those in flight, hands
/// its Raft leaderships to caught-up peers and exits 0. Answers before it stops.
#[utoipa::path(post, path = "/shutdown", tag = "node", security(("bearer" = [])),
    responses(
        (status = 202, description = "The node is stopping", body = ShutdownAnswer),
        (status = 401, description = "No or invalid token", body = serde_json::Value),
        (status = 403, description = "The token's scope is below operator", body = serde_json::Value),
    ))]
async fn shutdown(State(s): State<AdminState>, RequireScope(actor): RequireScope<1>) -> Response {
    let answer = s.node.request_shutdown(&actor.name).await;
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::OpenApi;

    #[test]
    fn openapi_lists_every_node_endpoint() {
        let doc = Api::openapi();
        for p in [
            "/ready",
            "/status",
            "/logs",
            "/logs/stream",
            "/log-level",
            "/shutdown",
        ] {
            assert!(doc.paths.paths.contains_key(p), "{p} missing");
        }
    }

    #[test]
    fn chunk_directory_size_counts_nested_files() {
        let dir = std::env::temp_dir().join(format!("cairn-dirbytes-{}", std::process::id()));
        let nested = dir.join("ab").join("cd");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(dir.join("ab").join("x"), [0u8; 10]).unwrap();
        std::fs::write(nested.join("y"), [0u8; 32]).unwrap();
        assert_eq!(dir_bytes(&dir), 42);
        assert_eq!(dir_bytes(&dir.join("missing")), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_raft_log_floor_is_a_capped_quarter_of_the_reserve() {
        assert_eq!(raft_log_floor(0), 0);
        assert_eq!(raft_log_floor(512 << 20), 128 << 20);
        assert_eq!(raft_log_floor(1 << 60), 256 << 20);
    }

    #[test]
    fn disk_stats_of_the_temp_dir() {
        let (total, free) = disk_stats(&std::env::temp_dir());
        assert!(total > 0 && free <= total);
    }
}
