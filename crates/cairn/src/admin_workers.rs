//! This node's background workers on the management plane: `GET /workers` lists them
//! (state, items, bytes, errors, queue), `POST /workers/{name}/pause|resume|wake` controls
//! one (operator scope, audited). The workers themselves run in `cairn_worker::Workers`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::admin::AdminState;
use crate::admin_auth::{error, ReadScope, RequireScope};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/workers", get(list))
        .route("/workers/{name}/{op}", post(control))
}

/// This module's part of the OpenAPI document (merged by `openapi::document`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, control))]
pub struct Api;

/// Every background worker of this node: name, state (busy, throttled, idle, paused, done),
/// items and bytes done, errors, queue length, last error.
#[utoipa::path(get, path = "/workers", tag = "node", security(("bearer" = [])),
    responses(
        (status = 200, description = "The node's workers", body = serde_json::Value),
        (status = 401, description = "No or invalid token", body = crate::openapi::ApiError),
    ))]
async fn list(State(s): State<AdminState>, _: ReadScope) -> Response {
    Json(s.node.workers().statuses()).into_response()
}

/// Pauses, resumes or wakes (runs its next step now) one worker of this node.
#[utoipa::path(post, path = "/workers/{name}/{op}", tag = "node", security(("bearer" = [])),
    params(
        ("name" = String, Path, description = "Worker name, e.g. `gc`, `chunk-sync`"),
        ("op" = String, Path, description = "`pause`, `resume` or `wake`"),
    ),
    responses(
        (status = 200, description = "The worker's status after the change", body = serde_json::Value),
        (status = 400, description = "Unknown operation", body = crate::openapi::ApiError),
        (status = 401, description = "No or invalid token", body = crate::openapi::ApiError),
        (status = 403, description = "The token's scope is below operator", body = crate::openapi::ApiError),
        (status = 404, description = "No worker of that name", body = crate::openapi::ApiError),
    ))]
async fn control(
    State(s): State<AdminState>,
    RequireScope(actor): RequireScope<1>,
    Path((name, op)): Path<(String, String)>,
) -> Response {
    let workers = s.node.workers();
    let done = match op.as_str() {
        "pause" => workers.pause(&name),
        "resume" => workers.resume(&name),
        "wake" => workers.wake(&name),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                format!("unknown worker operation {other:?}: expected pause, resume or wake"),
            )
        }
    };
    if let Err(e) = done {
        return error(StatusCode::NOT_FOUND, "NoSuchWorker", e.to_string());
    }
    if op != "wake" {
        s.node
            .audit(&actor.name, format!("worker {name}: {op}"))
            .await;
    }
    match workers.status(&name) {
        Some(st) => Json(st).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NoSuchWorker",
            format!("no worker named {name}"),
        ),
    }
}
