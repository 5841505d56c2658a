//! The management plane (port NODE_ADMIN_PORT): liveness, readiness and Prometheus metrics
//! (open; `/metrics` needs a token with METRICS_REQUIRE_TOKEN=true), the cluster status and
//! audit log (read scope), access keys and operator tokens (admin scope, `admin_keys.rs`).
//! Authentication is `admin_auth.rs`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;

use crate::admin_auth::ReadScope;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Registry>,
    pub node_id: String,
    pub keys: Arc<cairn_meta::secrets::KeyDirectory>,
    pub metrics_require_token: bool,
    pub cluster: Arc<ClusterContext>,
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
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/audit", get(cluster_audit))
        .merge(crate::admin_keys::routes())
        .merge(crate::admin_cluster::routes())
        .layer(axum::middleware::from_fn_with_state(
            keys,
            crate::admin_auth::authenticate,
        ))
        .with_state(state)
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    // The server binds this listener only after every Raft group has a leader.
    (StatusCode::OK, format!("ready {}\n", s.node_id))
}

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

#[derive(serde::Deserialize)]
struct AuditParams {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_audit_max")]
    max: usize,
}

fn default_audit_max() -> usize {
    100
}

/// The audit log of cluster catalog changes (system group), oldest first.
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
