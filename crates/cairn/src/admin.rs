//! The management plane (port NODE_ADMIN_PORT): liveness, readiness and Prometheus metrics
//! (open; `/metrics` needs a token with METRICS_REQUIRE_TOKEN=true), the cluster status and
//! audit log (read scope), access keys and operator tokens (admin scope, `admin_keys.rs`),
//! this node's status, logs, log level and shutdown (`node_admin.rs`).
//! Authentication is `admin_auth.rs`; every request runs in a span with a request id; the
//! OpenAPI document (`/openapi.json`, public) is `openapi.rs`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;

use crate::admin_auth::ReadScope;
use crate::openapi::ApiError;

/// The OpenAPI paths of this module (merged by `openapi::document`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(health, metrics, cluster_status, cluster_audit, crate::openapi::serve))]
pub struct Api;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Registry>,
    pub node_id: String,
    pub keys: Arc<cairn_meta::secrets::KeyDirectory>,
    pub metrics_require_token: bool,
    pub cluster: Arc<ClusterContext>,
    /// This node's management plane (`node_admin.rs`).
    pub node: Arc<crate::node_admin::LocalNode>,
    /// This node's applied cluster configuration (`admin_config.rs`).
    pub config: Arc<crate::config_live::ConfigRuntime>,
}

/// What the cluster endpoints read.
pub struct ClusterContext {
    pub settings: cairn_cluster::ClusterSettings,
    pub registry: Arc<cairn_raft::Registry>,
    pub view: Arc<cairn_cluster::ClusterView>,
    pub node_timeout_secs: u64,
    pub gossip: Option<Arc<cairn_cluster::gossip::Gossip>>,
    /// This node's management plane (called directly by the fan-out for this node).
    pub plane: cairn_cluster::NodePlane,
}

pub fn router(state: AdminState) -> Router {
    let keys = state.keys.clone();
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(crate::openapi::serve))
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/audit", get(cluster_audit))
        .merge(crate::admin_keys::routes())
        .merge(crate::admin_kms::routes())
        .merge(crate::node_admin::routes())
        .merge(crate::admin_config::routes())
        .merge(crate::admin_cluster::routes())
        .merge(crate::admin_workers::routes())
        .merge(crate::admin_heal::routes())
        .merge(crate::admin_rebalance::routes())
        .layer(axum::middleware::from_fn_with_state(
            keys,
            crate::admin_auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(crate::logs::request_span))
        .with_state(state)
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "node",
    responses((status = 200, description = "The node is live", body = String, content_type = "text/plain"))
)]
async fn health() -> &'static str {
    "ok\n"
}

/// Prometheus metrics of this node (OpenMetrics text). Open unless the node runs with
/// `METRICS_REQUIRE_TOKEN=true`, then any valid token (read scope) is needed.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "node",
    security((), ("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "Metrics in the OpenMetrics text format", body = String,
            content_type = "application/openmetrics-text"),
        (status = 401, description = "A token is required and missing or invalid", body = ApiError),
    )
)]
async fn metrics(
    State(s): State<AdminState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    if s.metrics_require_token {
        if let Err(r) = crate::admin_auth::read_allowed(req.extensions()) {
            return r;
        }
    }
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &s.metrics) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// The cluster as this node sees it: nodes with their health, the system group, the layout's
/// partitions and their leaders.
#[utoipa::path(
    get,
    path = "/cluster/status",
    tag = "cluster",
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "Cluster status", body = cairn_cluster::status::ClusterStatus),
        (status = 401, description = "Missing or invalid token", body = ApiError),
    )
)]
async fn cluster_status(State(s): State<AdminState>, _: ReadScope) -> impl IntoResponse {
    let c = &s.cluster;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Json(cairn_cluster::status::cluster_status(
        &c.settings,
        &c.registry,
        &c.view,
        c.gossip.as_deref(),
        now,
        c.node_timeout_secs,
    ))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Entries after this sequence number (0: from the start).
    #[serde(default)]
    after: u64,
    /// At most this many entries (capped at 1000; default 100).
    #[serde(default = "default_audit_max")]
    #[param(default = 100, maximum = 1000)]
    max: usize,
}

fn default_audit_max() -> usize {
    100
}

/// The audit log of cluster catalog changes (system group), oldest first.
#[utoipa::path(
    get,
    path = "/cluster/audit",
    tag = "cluster",
    params(AuditParams),
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "Audit entries, oldest first", body = [cairn_meta::store::AuditEntry]),
        (status = 400, description = "Invalid query parameters", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or invalid token", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = String, content_type = "text/plain"),
    )
)]
async fn cluster_audit(
    State(s): State<AdminState>,
    _: ReadScope,
    axum::extract::Query(p): axum::extract::Query<AuditParams>,
) -> axum::response::Response {
    let q = cairn_meta::Query::Audit {
        after: p.after,
        max: p.max.min(1000),
    };
    match s
        .cluster
        .registry
        .query(cairn_meta::placement::SYSTEM_GROUP, &q)
        .await
    {
        Ok(cairn_meta::QueryResult::Audit(entries)) => Json(entries).into_response(),
        Ok(other) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected result {other:?}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}
