//! Node lifecycle on the management plane (operator scope, audited): `POST
//! /cluster/nodes/{id}/drain` (the layout gives the node no slots; it keeps serving until its
//! replicas have moved), `/remove` (refused while it would drop a partition below the
//! replication factor, unless `?force=true`) and `/maintenance` (`{"on": true}`: a node that is
//! down for maintenance is not re-homed after `REPAIR_GRACE_SECS`). The decisions are
//! `cairn_cluster::heal`'s; the layout controller acts on the new state.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cairn_cluster::heal::{self, Grace, HealError};
use cairn_meta::model::{LayoutRecord, NodeRecord, NodeState};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, CommandError, Query, QueryResult};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::admin::AdminState;
use crate::admin_auth::{error, now_ms, Actor, RequireScope};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/cluster/nodes/{id}/drain", post(drain))
        .route("/cluster/nodes/{id}/remove", post(remove))
        .route("/cluster/nodes/{id}/maintenance", post(maintenance))
}

/// This module's part of the OpenAPI document (merged by `openapi::document`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(drain, remove, maintenance))]
pub struct Api;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ForceParams {
    /// Skip the replication-factor check (data may be left with fewer copies).
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize, ToSchema)]
struct MaintenanceRequest {
    on: bool,
}

/// The node's lifecycle after the change.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct NodeLifecycle {
    pub node_id: String,
    /// `active`, `joining`, `draining` or `removed`.
    pub state: String,
    pub maintenance: bool,
}

fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Joining => "joining",
        NodeState::Active => "active",
        NodeState::Draining => "draining",
        NodeState::Removed => "removed",
    }
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        e.to_string(),
    )
}

/// What the checks read, through the system leader (linearizable): the nodes, the layout and
/// the replication factor.
struct Catalog {
    nodes: Vec<NodeRecord>,
    layout: Option<LayoutRecord>,
    replication: usize,
}

async fn catalog(s: &AdminState) -> Result<Catalog, Response> {
    let reg = &s.cluster.registry;
    let nodes = match reg.query(SYSTEM_GROUP, &Query::ListNodes).await {
        Ok(QueryResult::Nodes(n)) => n,
        Ok(other) => return Err(unavailable(format!("unexpected answer {other:?}"))),
        Err(e) => return Err(unavailable(e)),
    };
    let layout = match reg.query(SYSTEM_GROUP, &Query::Layout).await {
        Ok(QueryResult::Layout(l)) => l,
        Ok(other) => return Err(unavailable(format!("unexpected answer {other:?}"))),
        Err(e) => return Err(unavailable(e)),
    };
    let replication = reg
        .meta()
        .cluster_config(SYSTEM_GROUP)
        .ok()
        .flatten()
        .map_or(s.cluster.settings.replication, |c| c.replication);
    Ok(Catalog {
        nodes,
        layout,
        replication,
    })
}

fn grace(s: &AdminState) -> Grace {
    Grace {
        grace_ms: (s.cluster.settings.repair_grace_secs as i64).saturating_mul(1000),
        now_ms: now_ms(),
    }
}

/// A refused check: audited with its reason, answered 404 (unknown node) or 409.
async fn refused(s: &AdminState, actor: &Actor, what: String, e: HealError) -> Response {
    s.node
        .audit(&actor.name, format!("{what}: refused: {e}"))
        .await;
    let status = match e {
        HealError::UnknownNode(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::CONFLICT,
    };
    let code = match e {
        HealError::UnknownNode(_) => "NoSuchNode",
        HealError::AlreadyRemoved(_) => "NodeRemoved",
        HealError::BelowReplication { .. }
        | HealError::StillHolds { .. }
        | HealError::StillMoving { .. } => "BelowReplicationFactor",
    };
    error(status, code, e.to_string())
}

/// Proposes `cmd` (audited as `actor`) and answers with the node's new lifecycle.
async fn apply(s: &AdminState, actor: &Actor, cmd: Command, mut after: NodeRecord) -> Response {
    match &cmd {
        Command::SetNodeState { state, .. } => after.state = *state,
        Command::SetNodeMaintenance { on, .. } => after.maintenance = *on,
        _ => {}
    }
    let cmd = Command::Audited {
        actor: actor.name.clone(),
        command: Box::new(cmd),
    };
    match s.cluster.registry.propose(SYSTEM_GROUP, cmd).await {
        Ok(cairn_meta::Response::Refused(e @ CommandError::UnknownNode(_))) => {
            error(StatusCode::NOT_FOUND, "NoSuchNode", e.to_string())
        }
        Ok(cairn_meta::Response::Refused(e)) => {
            error(StatusCode::CONFLICT, "Refused", e.to_string())
        }
        Ok(_) => Json(NodeLifecycle {
            node_id: after.node_id.clone(),
            state: state_name(after.state).into(),
            maintenance: after.maintenance,
        })
        .into_response(),
        Err(e) => unavailable(e),
    }
}

fn record(c: &Catalog, id: &str) -> Result<NodeRecord, HealError> {
    c.nodes
        .iter()
        .find(|n| n.node_id == id)
        .cloned()
        .ok_or_else(|| HealError::UnknownNode(id.into()))
}

/// Drains a node: the next layout gives it no slots, the partition leaders move its replicas
/// and chunk sync copies its chunks to the new holders while it keeps serving. Refused (409)
/// when fewer nodes than the replication factor would remain, unless `force=true`.
#[utoipa::path(post, path = "/cluster/nodes/{id}/drain", tag = "cluster",
    params(("id" = String, Path, description = "Node id"), ForceParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The node is draining", body = NodeLifecycle),
        (status = 400, description = "A malformed query (`force` must be true or false)", body = crate::openapi::ApiError),
        (status = 401, description = "No or invalid token", body = crate::openapi::ApiError),
        (status = 403, description = "The token's scope is below operator", body = crate::openapi::ApiError),
        (status = 404, description = "No such node", body = crate::openapi::ApiError),
        (status = 409, description = "Refused: below the replication factor, or removed", body = crate::openapi::ApiError),
        (status = 503, description = "The system group has no reachable leader", body = crate::openapi::ApiError),
    ))]
async fn drain(
    State(s): State<AdminState>,
    RequireScope(actor): RequireScope<1>,
    Path(id): Path<String>,
    query: Result<UrlQuery<ForceParams>, QueryRejection>,
) -> Response {
    let p = match query {
        Ok(UrlQuery(p)) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidArgument", e.body_text()),
    };
    let c = match catalog(&s).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let what = format!("node {id}: drain");
    let checked = heal::check_drain(&c.nodes, &id, c.replication, p.force, grace(&s))
        .and_then(|()| record(&c, &id));
    let rec = match checked {
        Ok(r) => r,
        Err(e) => return refused(&s, &actor, what, e).await,
    };
    let cmd = Command::SetNodeState {
        node_id: id,
        state: NodeState::Draining,
        at_ms: now_ms(),
    };
    apply(&s, &actor, cmd, rec).await
}

/// Removes a node from the cluster for good (its catalog record stays, as `removed`; it gets
/// no slots and gives up its system-group vote). Refused (409) while the layout still places
/// replicas on it, while a replica move is still taking data off it, or when fewer nodes than
/// the replication factor would remain — unless `force=true`.
#[utoipa::path(post, path = "/cluster/nodes/{id}/remove", tag = "cluster",
    params(("id" = String, Path, description = "Node id"), ForceParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The node is removed", body = NodeLifecycle),
        (status = 400, description = "A malformed query (`force` must be true or false)", body = crate::openapi::ApiError),
        (status = 401, description = "No or invalid token", body = crate::openapi::ApiError),
        (status = 403, description = "The token's scope is below operator", body = crate::openapi::ApiError),
        (status = 404, description = "No such node", body = crate::openapi::ApiError),
        (status = 409, description = "Refused: it would drop partitions below the replication factor", body = crate::openapi::ApiError),
        (status = 503, description = "The system group has no reachable leader", body = crate::openapi::ApiError),
    ))]
async fn remove(
    State(s): State<AdminState>,
    RequireScope(actor): RequireScope<1>,
    Path(id): Path<String>,
    query: Result<UrlQuery<ForceParams>, QueryRejection>,
) -> Response {
    let p = match query {
        Ok(UrlQuery(p)) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidArgument", e.body_text()),
    };
    let c = match catalog(&s).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // Moves whose starting voter set holds the node still need its copy.
    let moving_from: Vec<u32> = crate::admin_cluster::rebalances(&s)
        .moves
        .iter()
        .filter(|m| m.from.contains(&id))
        .map(|m| m.partition)
        .collect();
    let what = format!(
        "node {id}: remove{}",
        if p.force { " (forced)" } else { "" }
    );
    let checked = heal::check_remove(
        &c.nodes,
        c.layout.as_ref(),
        &moving_from,
        &id,
        c.replication,
        p.force,
        grace(&s),
    )
    .and_then(|()| record(&c, &id));
    let rec = match checked {
        Ok(r) => r,
        Err(e) => return refused(&s, &actor, what, e).await,
    };
    let cmd = Command::SetNodeState {
        node_id: id,
        state: NodeState::Removed,
        at_ms: now_ms(),
    };
    apply(&s, &actor, cmd, rec).await
}

/// Turns a node's maintenance flag on or off (`{"on": true}`). While on, the node is not
/// re-homed however long it is down; turning it off lets the repair grace apply again.
#[utoipa::path(post, path = "/cluster/nodes/{id}/maintenance", tag = "cluster",
    params(("id" = String, Path, description = "Node id")),
    request_body = MaintenanceRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The node's lifecycle after the change", body = NodeLifecycle),
        (status = 400, description = "Expected {\"on\": true|false}", body = crate::openapi::ApiError),
        (status = 401, description = "No or invalid token", body = crate::openapi::ApiError),
        (status = 403, description = "The token's scope is below operator", body = crate::openapi::ApiError),
        (status = 404, description = "No such node", body = crate::openapi::ApiError),
        (status = 503, description = "The system group has no reachable leader", body = crate::openapi::ApiError),
    ))]
async fn maintenance(
    State(s): State<AdminState>,
    RequireScope(actor): RequireScope<1>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: MaintenanceRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                format!("expected {{\"on\": true|false}}: {e}"),
            )
        }
    };
    let c = match catalog(&s).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let rec = match record(&c, &id) {
        Ok(r) => r,
        Err(e) => {
            let what = format!("node {id}: maintenance");
            return refused(&s, &actor, what, e).await;
        }
    };
    let cmd = Command::SetNodeMaintenance {
        node_id: id,
        on: req.on,
        at_ms: now_ms(),
    };
    apply(&s, &actor, cmd, rec).await
}
