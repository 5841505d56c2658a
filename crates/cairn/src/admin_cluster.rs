//! The cluster API on the management port (any node answers; system-group reads go to its
//! leader, per-node facts come over the mTLS RPC port from each node):
//! - `GET /cluster/health`: healthy / degraded / unavailable and why;
//! - `GET /cluster/nodes`, `/cluster/nodes/{id}`: the catalog plus each node's own status
//!   (`NodeAction::Status` fanned out with a short deadline; unreachable nodes say so);
//! - `GET /cluster/metrics`: requests, bytes, objects and storage per node, and their sum;
//! - `POST /cluster/exec`: a node action on every node a label selector matches, in
//!   parallel, per-node results (operator scope, audited with its outcome);
//! - seed 002's dashboard reads: `GET /admin/nodes` (catalog only, no fan-out),
//!   `/admin/rebalances` (replica moves in progress), `/admin/summary`;
//! - buckets with their usage: `GET /buckets`, `/buckets/{name}`.

// Handlers return ready-made axum responses as their error: they are built once per refused
// request, so boxing them would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_cluster::fanout::{FanOut, NodeFailure, NodeOutcome};
use cairn_cluster::health::{ClusterHealth, HealthLevel, NodeCounts};
use cairn_cluster::node_admin::{NodeAction, NodeStatusReport};
use cairn_cluster::rebalance::Move;
use cairn_cluster::status::ClusterStatus;
use cairn_layout::SelectorSet;
use cairn_meta::model::{BucketRecord, NodeRecord};
use cairn_meta::placement::{bucket_partition, partition_group, SYSTEM_GROUP};
use cairn_meta::{BucketUsage, Command, Query, QueryResult};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::admin::AdminState;
use crate::admin_auth::{error, now_ms, Actor, ReadScope, RequireScope};
use crate::metrics_text as mt;

/// Default per-node deadline of the status fan-out behind `/cluster/nodes`.
const STATUS_DEADLINE: Duration = Duration::from_secs(2);
/// Default per-node deadline of `POST /cluster/exec`.
const EXEC_DEADLINE: Duration = Duration::from_secs(10);

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/cluster/health", get(cluster_health))
        .route("/cluster/nodes", get(cluster_nodes))
        .route("/cluster/nodes/{id}", get(cluster_node))
        .route("/cluster/metrics", get(cluster_metrics))
        .route("/cluster/exec", post(cluster_exec))
        .route("/admin/nodes", get(admin_nodes))
        .route("/admin/rebalances", get(admin_rebalances))
        .route("/admin/summary", get(admin_summary))
        .route("/buckets", get(list_buckets))
        .route("/buckets/{name}", get(bucket_info))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        cluster_health,
        cluster_nodes,
        cluster_node,
        cluster_metrics,
        cluster_exec,
        admin_nodes,
        admin_rebalances,
        admin_summary,
        list_buckets,
        bucket_info
    ),
    components(schemas(
        NodeView,
        FailureView,
        ExecRequest,
        ExecResponse,
        ExecResult,
        MetricsResponse,
        NodeMetrics,
        MetricsTotals,
        RebalancesResponse,
        SummaryResponse,
        Capacity,
        BucketView,
        ClusterHealth,
        HealthLevel,
        NodeCounts,
        Move,
        NodeFailure
    ))
)]
pub struct Api;

// ---- shared helpers ----

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        e.to_string(),
    )
}

fn unexpected(what: &str, other: &QueryResult) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal",
        format!("unexpected answer to {what}: {other:?}"),
    )
}

fn fan_out(s: &AdminState) -> FanOut {
    FanOut {
        peers: s.cluster.registry.peers().clone(),
        plane: s.cluster.plane.clone(),
        self_id: s.cluster.settings.node_id.clone(),
    }
}

/// The status report as this node sees it (catalog, layout, leaders it knows, health).
fn status(s: &AdminState) -> ClusterStatus {
    let c = &s.cluster;
    cairn_cluster::status::cluster_status(
        &c.settings,
        &c.registry,
        &c.view,
        c.gossip.as_deref(),
        now_ms(),
        c.node_timeout_secs,
    )
}

/// The catalog's nodes: a linearizable read through the system leader, else (no leader
/// reachable: exactly when operators need the node list most) this node's own copy.
async fn catalog_nodes(s: &AdminState) -> Result<Vec<NodeRecord>, Response> {
    match s
        .cluster
        .registry
        .query(SYSTEM_GROUP, &Query::ListNodes)
        .await
    {
        Ok(QueryResult::Nodes(n)) => Ok(n),
        Ok(other) => Err(unexpected("ListNodes", &other)),
        Err(e) => {
            tracing::warn!(error = %e, "system group unavailable: using this node's copy of the catalog");
            s.cluster.view.refresh(&s.cluster.registry);
            Ok(s.cluster.view.nodes().into_values().collect())
        }
    }
}

async fn all_buckets(s: &AdminState) -> Result<Vec<BucketRecord>, Response> {
    match s
        .cluster
        .registry
        .query(SYSTEM_GROUP, &Query::ListBuckets)
        .await
    {
        Ok(QueryResult::Buckets(b)) => Ok(b),
        Ok(other) => Err(unexpected("ListBuckets", &other)),
        Err(e) => Err(unavailable(e)),
    }
}

fn bucket_group(s: &AdminState, bucket: &str) -> (u32, u64) {
    let p = bucket_partition(bucket, 0, s.cluster.settings.partitions);
    (p, partition_group(p))
}

/// Bucket usage read from the partitions holding the buckets' indexes.
struct Usages {
    per_bucket: BTreeMap<String, BucketUsage>,
    per_partition: BTreeMap<u32, BucketUsage>,
    /// Partitions that could not be read now (their buckets are missing from the maps).
    unavailable: Vec<u32>,
}

/// Usage of every bucket in `buckets`, read from the partitions that hold their indexes (one
/// linearizable read per partition, in parallel), plus each partition's total.
async fn usages(s: &AdminState, buckets: &[BucketRecord]) -> Result<Usages, Response> {
    let names: BTreeSet<&str> = buckets.iter().map(|b| b.name.as_str()).collect();
    let partitions: BTreeSet<u32> = buckets.iter().map(|b| bucket_group(s, &b.name).0).collect();
    let reads = partitions.iter().map(|p| {
        let reg = s.cluster.registry.clone();
        let p = *p;
        async move {
            (
                p,
                reg.query(partition_group(p), &Query::PartitionUsage).await,
            )
        }
    });
    let mut per_bucket = BTreeMap::new();
    let mut per_partition = BTreeMap::new();
    let mut missing = Vec::new();
    for (p, r) in futures::future::join_all(reads).await {
        let rows = match r {
            Ok(QueryResult::Usages(rows)) => rows,
            Ok(other) => return Err(unexpected("PartitionUsage", &other)),
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "bucket usage unavailable");
                missing.push(p);
                continue;
            }
        };
        for (bucket, u) in rows {
            // Objects of a deleted bucket (orphans) are not any listed bucket's.
            if names.contains(bucket.as_str()) {
                let total: &mut BucketUsage = per_partition.entry(p).or_default();
                *total = total.plus(u);
                per_bucket.insert(bucket, u);
            }
        }
    }
    Ok(Usages {
        per_bucket,
        per_partition,
        unavailable: missing,
    })
}

/// A node that gave no answer.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct FailureView {
    /// `unreachable`, `timeout`, `invalid`, `unsupported`, `failed` or `denied`.
    pub code: String,
    pub message: String,
}

impl From<&NodeFailure> for FailureView {
    fn from(f: &NodeFailure) -> Self {
        Self {
            code: f.code.clone(),
            message: f.message.clone(),
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DeadlineParams {
    /// Per-node deadline in milliseconds (default 2000, at most 60000).
    #[serde(default)]
    pub deadline_ms: Option<u64>,
}

fn deadline(ms: Option<u64>, default: Duration) -> Duration {
    ms.map_or(default, Duration::from_millis).clamp(
        Duration::from_millis(1),
        cairn_cluster::fanout::MAX_DEADLINE,
    )
}

// ---- health ----

/// Whether the cluster serves: `healthy`, `degraded` (a node or replica is not up) or
/// `unavailable` (no system leader, or a partition without a majority of its replicas).
#[utoipa::path(get, path = "/cluster/health", tag = "cluster",
    responses((status = 401, description = "No or invalid token", body = crate::openapi::ApiError), (status = 503, description = "The cluster catalog cannot be read now (no leader)", body = crate::openapi::ApiError), (status = 200, body = ClusterHealth)),
    security(("bearer" = [])))]
async fn cluster_health(State(s): State<AdminState>, _: ReadScope) -> Json<ClusterHealth> {
    Json(cairn_cluster::health::judge(&status(&s)))
}

// ---- nodes ----

/// One node: its catalog record, what this node knows of it, and (for `/cluster/nodes`) its
/// own status report.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct NodeView {
    pub node_id: String,
    /// Lifecycle: joining, active, draining, removed.
    pub state: String,
    /// up, suspect, down (gossip, else heartbeat age) or removed.
    pub health: String,
    pub zone: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub rpc_addr: String,
    pub api_addr: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Disk of the data directory as last reported by the node's heartbeat.
    pub disk_capacity_bytes: u64,
    pub disk_free_bytes: u64,
    pub disk_used_bytes: u64,
    pub last_heartbeat_ms: i64,
    /// Partitions placed on the node by the layout, and those it leads (the node's own count
    /// when its status answered, else the leaders this node knows of).
    pub partitions_held: usize,
    pub partitions_led: usize,
    /// The node's binary version and management address (from its status).
    pub version: Option<String>,
    pub admin_addr: Option<String>,
    /// The node's `GET /status` (absent from `/admin/nodes`, or when it did not answer).
    #[schema(value_type = Option<Object>)]
    pub status: Option<NodeStatusReport>,
    /// Why the status is missing.
    pub status_error: Option<FailureView>,
}

fn node_views(st: &ClusterStatus, catalog: &[NodeRecord]) -> Vec<NodeView> {
    let mut out = Vec::new();
    for n in catalog {
        let seen = st.nodes.iter().find(|x| x.node_id == n.node_id);
        out.push(NodeView {
            node_id: n.node_id.clone(),
            state: format!("{:?}", n.state).to_lowercase(),
            health: seen.map_or_else(|| n.health.as_str().to_string(), |x| x.health.clone()),
            zone: n.zone.clone(),
            labels: n.labels.clone(),
            rpc_addr: n.rpc_addr.clone(),
            api_addr: n.api_addr.clone(),
            cpus: n.cpus,
            memory_bytes: n.memory_bytes,
            disk_capacity_bytes: n.disk_capacity_bytes,
            disk_free_bytes: n.disk_free_bytes,
            disk_used_bytes: n.disk_capacity_bytes.saturating_sub(n.disk_free_bytes),
            last_heartbeat_ms: n.last_heartbeat_ms,
            partitions_held: seen.map_or(0, |x| x.partitions),
            partitions_led: seen.map_or(0, |x| x.leads),
            version: None,
            admin_addr: None,
            status: None,
            status_error: None,
        });
    }
    out
}

/// Adds each node's own status report (or why it has none).
fn attach_status(view: &mut NodeView, outcome: &NodeOutcome<serde_json::Value>) {
    match &outcome.result {
        Ok(v) => match serde_json::from_value::<NodeStatusReport>(v.clone()) {
            Ok(r) => {
                view.partitions_held = r.partitions.held;
                view.partitions_led = r.partitions.led;
                view.version = Some(r.version.clone());
                view.admin_addr = Some(r.admin_addr.clone()).filter(|a| !a.is_empty());
                view.status = Some(r);
            }
            Err(e) => {
                view.status_error = Some(FailureView {
                    code: "failed".into(),
                    message: format!("undecodable status: {e}"),
                })
            }
        },
        Err(f) => view.status_error = Some(f.into()),
    }
}

async fn nodes_with_status(
    s: &AdminState,
    actor: &Actor,
    only: Option<&str>,
    wait: Duration,
) -> Result<Vec<NodeView>, Response> {
    let mut catalog = catalog_nodes(s).await?;
    if let Some(id) = only {
        catalog.retain(|n| n.node_id == id);
        if catalog.is_empty() {
            return Err(error(
                StatusCode::NOT_FOUND,
                "NoSuchNode",
                format!("node {id} is not in the cluster catalog"),
            ));
        }
    }
    let mut views = node_views(&status(s), &catalog);
    let outcomes = fan_out(s)
        .exec(&catalog, &NodeAction::Status, &actor.name, wait)
        .await;
    for (v, o) in views.iter_mut().zip(outcomes.iter()) {
        attach_status(v, o);
    }
    Ok(views)
}

/// Every node of the catalog with its own status report, asked in parallel with a short
/// per-node deadline; nodes that do not answer carry `status_error`.
#[utoipa::path(get, path = "/cluster/nodes", tag = "cluster", params(DeadlineParams),
    responses((status = 400, description = "A malformed query (`deadline_ms` must be a whole number)", body = crate::openapi::ApiError), (status = 401, description = "No or invalid token", body = crate::openapi::ApiError), (status = 503, description = "The cluster catalog cannot be read now (no leader)", body = crate::openapi::ApiError), (status = 200, body = Vec<NodeView>)),
    security(("bearer" = [])))]
async fn cluster_nodes(
    State(s): State<AdminState>,
    ReadScopeActor(actor): ReadScopeActor,
    query: Result<UrlQuery<DeadlineParams>, QueryRejection>,
) -> Response {
    let p = match query {
        Ok(UrlQuery(p)) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidArgument", e.body_text()),
    };
    match nodes_with_status(&s, &actor, None, deadline(p.deadline_ms, STATUS_DEADLINE)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// One node with its own status report; 404 for a node the catalog does not know.
#[utoipa::path(get, path = "/cluster/nodes/{id}", tag = "cluster",
    params(("id" = String, Path, description = "node id"), DeadlineParams),
    responses((status = 400, description = "A malformed query (`deadline_ms` must be a whole number)", body = crate::openapi::ApiError), (status = 401, description = "No or invalid token", body = crate::openapi::ApiError), (status = 503, description = "The cluster catalog cannot be read now (no leader)", body = crate::openapi::ApiError), (status = 200, body = NodeView), (status = 404, description = "no such node")),
    security(("bearer" = [])))]
async fn cluster_node(
    State(s): State<AdminState>,
    ReadScopeActor(actor): ReadScopeActor,
    Path(id): Path<String>,
    query: Result<UrlQuery<DeadlineParams>, QueryRejection>,
) -> Response {
    let p = match query {
        Ok(UrlQuery(p)) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidArgument", e.body_text()),
    };
    match nodes_with_status(
        &s,
        &actor,
        Some(&id),
        deadline(p.deadline_ms, STATUS_DEADLINE),
    )
    .await
    {
        Ok(mut v) => match v.pop() {
            Some(n) => Json(n).into_response(),
            None => error(StatusCode::NOT_FOUND, "NoSuchNode", format!("node {id}")),
        },
        Err(r) => r,
    }
}

/// The catalog's nodes with health, disk and partitions, without asking the nodes (fast;
/// for dashboards that poll).
#[utoipa::path(get, path = "/admin/nodes", tag = "admin",
    responses((status = 401, description = "No or invalid token", body = crate::openapi::ApiError), (status = 503, description = "The cluster catalog cannot be read now (no leader)", body = crate::openapi::ApiError), (status = 200, body = Vec<NodeView>)),
    security(("bearer" = [])))]
async fn admin_nodes(State(s): State<AdminState>, _: ReadScope) -> Response {
    match catalog_nodes(&s).await {
        Ok(catalog) => Json(node_views(&status(&s), &catalog)).into_response(),
        Err(r) => r,
    }
}

/// [`ReadScope`] that keeps the actor (it travels with fanned-out calls).
pub struct ReadScopeActor(pub Actor);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ReadScopeActor {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let RequireScope(actor) = ReadScope::from_request_parts(parts, state).await?;
        Ok(Self(actor))
    }
}

// ---- metrics ----

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, Default)]
pub struct NodeMetrics {
    pub node_id: String,
    /// Whether the node's metrics were read (else `error` says why and counters are 0).
    pub reachable: bool,
    pub error: Option<FailureView>,
    /// S3 requests plus FileService calls since the node started.
    pub requests: u64,
    pub s3_requests: u64,
    pub file_calls: u64,
    /// Payload bytes received and sent (S3 and FileService).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Disk used on the node's data file system (heartbeat) and chunk bytes it stores.
    pub storage_used_bytes: u64,
    pub chunk_bytes: u64,
    /// Objects (and their logical bytes) in the partitions placed on this node.
    pub objects_held: u64,
    pub object_bytes_held: u64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, Default)]
pub struct MetricsTotals {
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub storage_used_bytes: u64,
    pub chunk_bytes: u64,
    /// Objects in the cluster (each counted once, whatever the replication) and their bytes.
    pub objects: u64,
    pub object_bytes: u64,
    pub nodes_reporting: usize,
    /// Partitions whose usage could not be read now (their objects are not counted).
    pub usage_unavailable_partitions: Vec<u32>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct MetricsResponse {
    pub nodes: Vec<NodeMetrics>,
    pub total: MetricsTotals,
}

async fn metrics(s: &AdminState, wait: Duration) -> Result<MetricsResponse, Response> {
    let catalog = catalog_nodes(s).await?;
    let buckets = all_buckets(s).await?;
    let Usages {
        per_bucket,
        per_partition,
        unavailable: usage_unavailable,
    } = usages(s, &buckets).await?;
    let layout = s.cluster.view.layout();
    let texts = fan_out(s).metrics(&catalog, wait).await;
    let mut nodes = Vec::new();
    let mut total = MetricsTotals::default();
    for (n, o) in catalog.iter().zip(texts.iter()) {
        let mut m = NodeMetrics {
            node_id: n.node_id.clone(),
            storage_used_bytes: n.disk_capacity_bytes.saturating_sub(n.disk_free_bytes),
            ..Default::default()
        };
        if let Some(l) = &layout {
            for (p, replicas) in l.assignments.iter().enumerate() {
                if replicas.contains(&n.node_id) {
                    if let Some(u) = per_partition.get(&(p as u32)) {
                        m.objects_held += u.objects;
                        m.object_bytes_held += u.bytes;
                    }
                }
            }
        }
        match &o.result {
            Ok(text) => {
                m.reachable = true;
                m.s3_requests = mt::sum_u64(text, mt::S3_REQUESTS);
                m.file_calls = mt::sum_u64(text, mt::FILES_CALLS);
                m.requests = m.s3_requests + m.file_calls;
                m.bytes_in =
                    mt::sum_u64(text, mt::S3_BYTES_IN) + mt::sum_u64(text, mt::FILES_BYTES_IN);
                m.bytes_out =
                    mt::sum_u64(text, mt::S3_BYTES_OUT) + mt::sum_u64(text, mt::FILES_BYTES_OUT);
                m.chunk_bytes = mt::sum_u64(text, mt::CHUNK_BYTES);
                total.nodes_reporting += 1;
            }
            Err(f) => m.error = Some(f.into()),
        }
        total.requests += m.requests;
        total.bytes_in += m.bytes_in;
        total.bytes_out += m.bytes_out;
        total.storage_used_bytes += m.storage_used_bytes;
        total.chunk_bytes += m.chunk_bytes;
        nodes.push(m);
    }
    for u in per_bucket.values() {
        total.objects += u.objects;
        total.object_bytes += u.bytes;
    }
    total.usage_unavailable_partitions = usage_unavailable;
    Ok(MetricsResponse { nodes, total })
}

/// Requests, bytes, objects and storage per node (each node's metrics, read over the RPC
/// port) and summed; unreachable nodes are listed with the reason and count as zero.
#[utoipa::path(get, path = "/cluster/metrics", tag = "cluster", params(DeadlineParams),
    responses((status = 400, description = "A malformed query (`deadline_ms` must be a whole number)", body = crate::openapi::ApiError), (status = 401, description = "No or invalid token", body = crate::openapi::ApiError), (status = 503, description = "The cluster catalog cannot be read now (no leader)", body = crate::openapi::ApiError), (status = 200, body = MetricsResponse)),
    security(("bearer" = [])))]
async fn cluster_metrics(
    State(s): State<AdminState>,
    _: ReadScope,
    query: Result<UrlQuery<DeadlineParams>, QueryRejection>,
) -> Response {
    let p = match query {
        Ok(UrlQuery(p)) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidArgument", e.body_text()),
    };
    match metrics(&s, deadline(p.deadline_ms, STATUS_DEADLINE)).await {
        Ok(m) => Json(m).into_response(),
        Err(r) => r,
    }
}

// ---- exec ----

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ExecRequest {
    /// Label selectors, comma-separated, all of which a node must match (the placement
    /// grammar: `zone=a,disk!=hdd`, `tier in (ssd,nvme)`, `!gpu`; `node=ID` picks a node by
    /// id; `*` is every node).
    pub selector: String,
    /// The action: `{"action":"status"}`, `{"action":"log-level","level":"debug"}`,
    /// `{"action":"shutdown"}`.
    #[schema(value_type = Object)]
    pub action: NodeAction,
    /// Per-node deadline in milliseconds (default 10000, at most 60000).
    #[serde(default)]
    pub deadline_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ExecResult {
    pub node_id: String,
    pub rpc_addr: String,
    pub ok: bool,
    /// The node's answer when `ok`.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<FailureView>,
    pub elapsed_ms: u64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ExecResponse {
    /// The selector as understood (canonical form).
    pub selector: String,
    pub action: String,
    pub matched: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub results: Vec<ExecResult>,
}

fn action_name(a: &NodeAction) -> String {
    match a {
        NodeAction::Status => "status".into(),
        NodeAction::LogLevel { level } => format!("log-level {level}"),
        NodeAction::Shutdown => "shutdown".into(),
    }
}

/// Runs a node action on every node the selector matches (removed nodes excepted), in
/// parallel, each within its deadline; answers with every node's result, failures included.
/// Needs operator scope; anything but `status` is audited with its outcome.
#[utoipa::path(post, path = "/cluster/exec", tag = "cluster", request_body = ExecRequest,
    responses((status = 401, description = "No or invalid token", body = crate::openapi::ApiError), (status = 403, description = "The token's scope is below operator", body = crate::openapi::ApiError), (status = 200, body = ExecResponse),
              (status = 400, description = "bad selector or action")),
    security(("bearer" = [])))]
async fn cluster_exec(
    State(s): State<AdminState>,
    RequireScope(actor): RequireScope<1>,
    body: axum::body::Bytes,
) -> Response {
    let req: ExecRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                format!("expected {{\"selector\": \"...\", \"action\": {{\"action\": \"status|log-level|shutdown\", ...}}}}: {e}"),
            )
        }
    };
    let selector = match SelectorSet::parse(&req.selector) {
        Ok(sel) => sel,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidSelector",
                format!("selector {:?}: {e}", req.selector),
            )
        }
    };
    let catalog = match catalog_nodes(&s).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let targets = cairn_cluster::fanout::select(&catalog, &selector);
    let outcomes = fan_out(&s)
        .exec(
            &targets,
            &req.action,
            &actor.name,
            deadline(req.deadline_ms, EXEC_DEADLINE),
        )
        .await;
    let results: Vec<ExecResult> = outcomes
        .into_iter()
        .map(|o| ExecResult {
            node_id: o.node_id,
            rpc_addr: o.rpc_addr,
            ok: o.result.is_ok(),
            error: o.result.as_ref().err().map(FailureView::from),
            result: o.result.ok(),
            elapsed_ms: o.elapsed_ms,
        })
        .collect();
    let succeeded = results.iter().filter(|r| r.ok).count();
    let out = ExecResponse {
        selector: selector.to_string(),
        action: action_name(&req.action),
        matched: results.len(),
        succeeded,
        failed: results.len() - succeeded,
        results,
    };
    if req.action != NodeAction::Status && out.matched > 0 {
        audit_exec(&s, &actor, &out).await;
    }
    Json(out).into_response()
}

/// Records the action and each node's outcome in the audit log (best effort: the action has
/// run whatever the log says, so a failure to record it is logged, not answered).
async fn audit_exec(s: &AdminState, actor: &Actor, out: &ExecResponse) {
    let outcomes: Vec<String> = out
        .results
        .iter()
        .map(|r| match &r.error {
            None => format!("{} ok", r.node_id),
            Some(e) => format!("{} {}", r.node_id, e.code),
        })
        .collect();
    let what = format!(
        "node exec {} on [{}] (selector {}): {}",
        out.action,
        out.results
            .iter()
            .map(|r| r.node_id.as_str())
            .collect::<Vec<_>>()
            .join(","),
        out.selector,
        outcomes.join(", ")
    );
    let cmd = Command::Audited {
        actor: actor.name.clone(),
        command: Box::new(Command::AuditEvent {
            what,
            outcome: None,
            at_ms: now_ms(),
        }),
    };
    if let Err(e) = s.cluster.registry.propose(SYSTEM_GROUP, cmd).await {
        tracing::warn!(error = %e, actor = %actor.name, "node exec ran but could not be audited");
    }
}

// ---- rebalances ----

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct RebalancesResponse {
    pub layout_version: u64,
    /// Moves not done yet in the whole cluster: the ones leaders report (published lists may
    /// be capped; this count is not) plus the plan's planned and pending ones.
    pub in_progress: usize,
    /// The moves leaders report (phases `catching_up`, `changing_voters`, `copying_chunks`),
    /// then the plan's others (`planned`: waiting for a slot; `pending`: holds a slot, no
    /// leader reports it now).
    pub moves: Vec<Move>,
    /// The rebalance plan: moves by state, bytes, rate, ETA, every partition's move.
    pub plan: cairn_cluster::rebalance::PlanStatus,
}

pub(crate) fn rebalances(s: &AdminState) -> RebalancesResponse {
    let c = &s.cluster;
    let mut moves = c.view.moves().list();
    let mut in_progress = moves.len();
    if let Some(g) = &c.gossip {
        for (id, _, meta) in g.members() {
            if id == c.settings.node_id {
                continue;
            }
            if let Some(p) = meta
                .get(cairn_cluster::rebalance::GOSSIP_KEY)
                .and_then(|v| cairn_cluster::rebalance::parse_published(v))
            {
                in_progress += p.count;
                moves.extend(p.moves);
            }
        }
    }
    moves.sort_by_key(|m| m.partition);
    let plan = crate::admin_rebalance::plan_status(s, &moves);
    // Planned moves (and claimed ones no leader reports now) count as in progress too: data
    // still has to move for them.
    let reported = moves.len();
    let (moves, _stale) =
        cairn_cluster::rebalance::with_planned(moves, &crate::admin_rebalance::local_plan(s));
    in_progress = (in_progress + moves.len()).saturating_sub(reported);
    RebalancesResponse {
        layout_version: c.view.layout().map_or(0, |l| l.version),
        in_progress,
        moves,
        plan,
    }
}

/// Replica moves the partition leaders are making now to match the layout (each leader
/// publishes its own in gossip), and the rebalance plan's status (this node's copy of the
/// system group): moves planned / moving / done / cancelled, bytes, rate, ETA.
#[utoipa::path(get, path = "/admin/rebalances", tag = "admin",
    responses((status = 401, description = "No or invalid token", body = crate::openapi::ApiError), (status = 503, description = "The cluster catalog cannot be read now (no leader)", body = crate::openapi::ApiError), (status = 200, body = RebalancesResponse)),
    security(("bearer" = [])))]
async fn admin_rebalances(State(s): State<AdminState>, _: ReadScope) -> Json<RebalancesResponse> {
    Json(rebalances(&s))
}

// ---- summary ----

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, Default)]
pub struct Capacity {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub used_bytes: u64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct SummaryResponse {
    pub health: HealthLevel,
    pub problems: Vec<String>,
    pub nodes: NodeCounts,
    /// Disk of the nodes' data file systems (last heartbeats), removed nodes excepted.
    pub capacity: Capacity,
    pub buckets: usize,
    pub objects: u64,
    /// Logical bytes (object sizes, before replication).
    pub bytes: u64,
    pub bytes_per_bucket: Vec<BucketView>,
    pub rebalances_in_progress: usize,
    /// Chunk copies restored by repair, summed over the nodes that answered.
    pub repairs: u64,
    pub nodes_reporting_metrics: usize,
    /// Partitions whose usage could not be read now (their buckets show 0).
    pub usage_unavailable_partitions: Vec<u32>,
}

/// The dashboard's one read: health, capacity, object and bucket counts, bytes per bucket,
/// rebalances in progress and repairs.
#[utoipa::path(get, path = "/admin/summary", tag = "admin",
    responses((status = 401, description = "No or invalid token", body = crate::openapi::ApiError), (status = 503, description = "The cluster catalog cannot be read now (no leader)", body = crate::openapi::ApiError), (status = 200, body = SummaryResponse)),
    security(("bearer" = [])))]
async fn admin_summary(State(s): State<AdminState>, _: ReadScope) -> Response {
    let health = cairn_cluster::health::judge(&status(&s));
    let catalog = match catalog_nodes(&s).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let buckets = match all_buckets(&s).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let usage = match usages(&s, &buckets).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let per_bucket = &usage.per_bucket;
    let mut capacity = Capacity::default();
    for n in catalog
        .iter()
        .filter(|n| n.state != cairn_meta::model::NodeState::Removed)
    {
        capacity.total_bytes += n.disk_capacity_bytes;
        capacity.free_bytes += n.disk_free_bytes;
    }
    capacity.used_bytes = capacity.total_bytes.saturating_sub(capacity.free_bytes);
    let texts = fan_out(&s).metrics(&catalog, STATUS_DEADLINE).await;
    let mut repairs = 0;
    let mut reporting = 0;
    for t in texts.iter().filter_map(|o| o.result.as_ref().ok()) {
        reporting += 1;
        repairs += mt::REPAIR_COUNTERS
            .iter()
            .map(|m| mt::sum_u64(t, m))
            .sum::<u64>();
    }
    let views: Vec<BucketView> = buckets
        .iter()
        .map(|b| bucket_view(&s, b, per_bucket.get(&b.name).copied().unwrap_or_default()))
        .collect();
    Json(SummaryResponse {
        health: health.status,
        problems: health.problems,
        nodes: health.nodes,
        capacity,
        buckets: buckets.len(),
        objects: views.iter().map(|b| b.objects).sum(),
        bytes: views.iter().map(|b| b.bytes).sum(),
        bytes_per_bucket: views,
        rebalances_in_progress: rebalances(&s).in_progress,
        repairs,
        nodes_reporting_metrics: reporting,
        usage_unavailable_partitions: usage.unavailable,
    })
    .into_response()
}

// ---- buckets ----

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct BucketView {
    pub name: String,
    pub created_ms: i64,
    /// The access key that owns the bucket.
    pub owner: Option<String>,
    /// ONE, QUORUM or ALL; None: the node default.
    pub write_consistency: Option<String>,
    /// The partition holding the bucket's object index.
    pub partition: u32,
    pub objects: u64,
    pub bytes: u64,
}

fn bucket_view(s: &AdminState, b: &BucketRecord, u: BucketUsage) -> BucketView {
    BucketView {
        name: b.name.clone(),
        created_ms: b.created_ms,
        owner: b.owner.clone(),
        write_consistency: b.write_consistency.map(|c| c.as_str().to_string()),
        partition: bucket_group(s, &b.name).0,
        objects: u.objects,
        bytes: u.bytes,
    }
}

/// Every bucket with its object count and bytes (kept incrementally, never by scanning).
#[utoipa::path(get, path = "/buckets", tag = "buckets",
    responses((status = 401, description = "No or invalid token", body = crate::openapi::ApiError), (status = 503, description = "The cluster catalog cannot be read now (no leader)", body = crate::openapi::ApiError), (status = 200, body = Vec<BucketView>)),
    security(("bearer" = [])))]
async fn list_buckets(State(s): State<AdminState>, _: ReadScope) -> Response {
    let buckets = match all_buckets(&s).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match usages(&s, &buckets).await {
        Ok(u) if !u.unavailable.is_empty() => unavailable(format!(
            "usage of partition(s) {:?} cannot be read now (no leader reachable)",
            u.unavailable
        )),
        Ok(u) => Json(
            buckets
                .iter()
                .map(|b| {
                    bucket_view(
                        &s,
                        b,
                        u.per_bucket.get(&b.name).copied().unwrap_or_default(),
                    )
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(r) => r,
    }
}

/// One bucket's settings and usage; 404 when it does not exist.
#[utoipa::path(get, path = "/buckets/{name}", tag = "buckets",
    params(("name" = String, Path, description = "bucket name")),
    responses((status = 401, description = "No or invalid token", body = crate::openapi::ApiError), (status = 503, description = "The cluster catalog cannot be read now (no leader)", body = crate::openapi::ApiError), (status = 200, body = BucketView), (status = 404, description = "no such bucket")),
    security(("bearer" = [])))]
async fn bucket_info(
    State(s): State<AdminState>,
    _: ReadScope,
    Path(name): Path<String>,
) -> Response {
    let record = match s
        .cluster
        .registry
        .query(SYSTEM_GROUP, &Query::GetBucket { name: name.clone() })
        .await
    {
        Ok(QueryResult::Bucket(Some(b))) => b,
        Ok(QueryResult::Bucket(None)) => {
            return error(
                StatusCode::NOT_FOUND,
                "NoSuchBucket",
                format!("bucket {name} does not exist"),
            )
        }
        Ok(other) => return unexpected("GetBucket", &other),
        Err(e) => return unavailable(e),
    };
    let (_, group) = bucket_group(&s, &name);
    match s
        .cluster
        .registry
        .query(group, &Query::BucketUsage { bucket: name })
        .await
    {
        Ok(QueryResult::Usage(u)) => Json(bucket_view(&s, &record, u)).into_response(),
        Ok(other) => unexpected("BucketUsage", &other),
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_requests_parse_and_deadlines_are_bounded() {
        let r: ExecRequest = serde_json::from_str(
            r#"{"selector":"zone=a","action":{"action":"log-level","level":"debug"}}"#,
        )
        .unwrap();
        assert_eq!(
            r.action,
            NodeAction::LogLevel {
                level: "debug".into()
            }
        );
        assert_eq!(action_name(&r.action), "log-level debug");
        assert!(serde_json::from_str::<ExecRequest>(
            r#"{"selector":"*","action":{"action":"reboot"}}"#
        )
        .is_err());
        assert_eq!(deadline(None, STATUS_DEADLINE), STATUS_DEADLINE);
        assert_eq!(deadline(Some(0), STATUS_DEADLINE), Duration::from_millis(1));
        assert_eq!(
            deadline(Some(u64::MAX), STATUS_DEADLINE),
            cairn_cluster::fanout::MAX_DEADLINE
        );
    }

    #[test]
    fn the_openapi_document_lists_every_endpoint() {
        use utoipa::OpenApi;
        let doc = Api::openapi();
        for p in [
            "/cluster/health",
            "/cluster/nodes",
            "/cluster/nodes/{id}",
            "/cluster/metrics",
            "/cluster/exec",
            "/admin/nodes",
            "/admin/rebalances",
            "/admin/summary",
            "/buckets",
            "/buckets/{name}",
        ] {
            assert!(doc.paths.paths.contains_key(p), "{p} missing");
        }
    }
}
