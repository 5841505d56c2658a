//! Rebalance control on the management plane (operator scope, audited): `POST
//! /admin/rebalances/pause` (no new replica move starts; moves in flight finish), `/resume`,
//! and `/cancel` (the planned moves are dropped: a layout keeps those partitions where they
//! are, held until the nodes to place change; moves in flight finish). Each answers with the
//! plan's status after the change. The status itself is part of `GET /admin/rebalances`
//! (`admin_cluster.rs`); the plan and its rules are `cairn_meta::rebalance`'s.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cairn_cluster::heal::{self, Grace};
use cairn_cluster::rebalance::{Move, PlanStatus};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::rebalance::RebalancePlan;
use cairn_meta::{Command, Query, QueryResult};

use crate::admin::AdminState;
use crate::admin_auth::{error, now_ms, Actor, RequireScope};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/rebalances/pause", post(pause))
        .route("/admin/rebalances/resume", post(resume))
        .route("/admin/rebalances/cancel", post(cancel))
}

/// This module's part of the OpenAPI document (merged by `openapi::document`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(pause, resume, cancel), components(schemas(PlanStatus)))]
pub struct Api;

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        e.to_string(),
    )
}

fn max_moves(s: &AdminState) -> usize {
    cairn_meta::rebalance::max_moves(
        s.cluster
            .registry
            .meta()
            .cluster_config(SYSTEM_GROUP)
            .ok()
            .flatten()
            .as_ref(),
    )
}

/// This node's copy of the plan (empty when it cannot be read).
pub(crate) fn local_plan(s: &AdminState) -> RebalancePlan {
    s.cluster
        .registry
        .meta()
        .rebalance_plan(SYSTEM_GROUP)
        .unwrap_or_default()
}

/// The status of this node's copy of the plan, with the moves in flight `live`.
pub(crate) fn plan_status(s: &AdminState, live: &[Move]) -> PlanStatus {
    cairn_cluster::rebalance::plan_status(&local_plan(s), live, max_moves(s), now_ms())
}

/// Proposes `cmd` as `actor`, then answers with the plan read through the system leader.
async fn apply(s: &AdminState, actor: &Actor, cmd: Command) -> Response {
    let reg = &s.cluster.registry;
    let cmd = Command::Audited {
        actor: actor.name.clone(),
        command: Box::new(cmd),
    };
    match reg.propose(SYSTEM_GROUP, cmd).await {
        Ok(cairn_meta::Response::Refused(e)) => {
            return error(StatusCode::CONFLICT, "Refused", e.to_string())
        }
        Ok(_) => {}
        Err(e) => return unavailable(e),
    }
    let plan: RebalancePlan = match reg.query(SYSTEM_GROUP, &Query::RebalancePlan).await {
        Ok(QueryResult::RebalancePlan(p)) => p,
        Ok(other) => return unavailable(format!("unexpected answer {other:?}")),
        Err(e) => return unavailable(e),
    };
    let live = crate::admin_cluster::rebalances(s).moves;
    Json(cairn_cluster::rebalance::plan_status(
        &plan,
        &live,
        max_moves(s),
        now_ms(),
    ))
    .into_response()
}

/// Pauses the rebalance: no new replica move starts (moves in flight finish). Stays paused
/// across new layouts until resumed.
#[utoipa::path(post, path = "/admin/rebalances/pause", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The plan's status after the change", body = PlanStatus),
        (status = 401, description = "No or invalid token", body = crate::openapi::ApiError),
        (status = 403, description = "The token's scope is below operator", body = crate::openapi::ApiError),
        (status = 503, description = "The system group has no reachable leader", body = crate::openapi::ApiError),
    ))]
async fn pause(State(s): State<AdminState>, RequireScope(actor): RequireScope<1>) -> Response {
    let cmd = Command::SetRebalancePaused {
        paused: true,
        at_ms: now_ms(),
    };
    apply(&s, &actor, cmd).await
}

/// Resumes a paused rebalance: planned moves start again, up to `rebalance.max_moves` at once.
#[utoipa::path(post, path = "/admin/rebalances/resume", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The plan's status after the change", body = PlanStatus),
        (status = 401, description = "No or invalid token", body = crate::openapi::ApiError),
        (status = 403, description = "The token's scope is below operator", body = crate::openapi::ApiError),
        (status = 503, description = "The system group has no reachable leader", body = crate::openapi::ApiError),
    ))]
async fn resume(State(s): State<AdminState>, RequireScope(actor): RequireScope<1>) -> Response {
    let cmd = Command::SetRebalancePaused {
        paused: false,
        at_ms: now_ms(),
    };
    apply(&s, &actor, cmd).await
}

/// Cancels the planned moves (those not started): a new layout keeps their partitions on
/// their current replicas, and the layout controller leaves it alone until the nodes to place
/// change (a node joins, drains, is removed or lost) or the placement settings do. Moves in
/// flight finish. Cancelling with nothing planned changes nothing.
#[utoipa::path(post, path = "/admin/rebalances/cancel", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The plan's status after the change (dropped moves are `cancelled`)", body = PlanStatus),
        (status = 401, description = "No or invalid token", body = crate::openapi::ApiError),
        (status = 403, description = "The token's scope is below operator", body = crate::openapi::ApiError),
        (status = 409, description = "Refused: there is no layout yet", body = crate::openapi::ApiError),
        (status = 503, description = "The system group has no reachable leader", body = crate::openapi::ApiError),
    ))]
async fn cancel(State(s): State<AdminState>, RequireScope(actor): RequireScope<1>) -> Response {
    let reg = &s.cluster.registry;
    // The nodes the layout controller would place now: the hold lasts while they stay so.
    let nodes = match reg.query(SYSTEM_GROUP, &Query::ListNodes).await {
        Ok(QueryResult::Nodes(n)) => n,
        Ok(other) => return unavailable(format!("unexpected answer {other:?}")),
        Err(e) => return unavailable(e),
    };
    let layout = match reg.query(SYSTEM_GROUP, &Query::Layout).await {
        Ok(QueryResult::Layout(l)) => l,
        Ok(other) => return unavailable(format!("unexpected answer {other:?}")),
        Err(e) => return unavailable(e),
    };
    let replication = reg
        .meta()
        .cluster_config(SYSTEM_GROUP)
        .ok()
        .flatten()
        .map_or(s.cluster.settings.replication, |c| c.replication);
    let grace = Grace {
        grace_ms: (s.cluster.settings.repair_grace_secs as i64).saturating_mul(1000),
        now_ms: now_ms(),
    };
    let states = heal::placement_states(&nodes, layout.as_ref(), replication, grace);
    let expected = heal::expected_placed(&states, layout.as_ref());
    let cmd = Command::CancelRebalance {
        expected: expected.into_iter().collect(),
        at_ms: now_ms(),
    };
    apply(&s, &actor, cmd).await
}
