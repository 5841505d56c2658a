//! Management endpoints of the SSE-KMS key store (`/kms/keys`), admin scope: create a named
//! key (random 256 bits, wrapped by a key derived from the cluster master key before it is
//! proposed, so the key material is never in the Raft log or a snapshot in plaintext), list
//! keys (never their material), disable and enable them. Changes are audited like access-key
//! changes (`Command::Audited`).

// Handlers return ready-made axum responses as their error (as `admin_keys.rs`).
#![allow(clippy::result_large_err)]

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_meta::kms::{valid_name, KmsKeyRecord};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, Query, QueryResult};
use serde::{Deserialize, Serialize};

use crate::admin::AdminState;
use crate::admin_auth::{error, now_ms, Actor, AdminScope};
use crate::admin_keys::{bad, propose, unavailable};
use crate::openapi::ApiError;

/// The OpenAPI paths of this module (merged by `openapi::document`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_kms_keys, create_kms_key, disable_kms_key, enable_kms_key))]
pub struct Api;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/kms/keys", get(list_kms_keys).post(create_kms_key))
        .route("/kms/keys/{name}/disable", post(disable_kms_key))
        .route("/kms/keys/{name}/enable", post(enable_kms_key))
}

/// A key of the store as the API shows it (never its material).
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct KmsKeyView {
    /// The key id to send as `x-amz-server-side-encryption-aws-kms-key-id` (also accepted as
    /// `alias/<name>` or an ARN ending in `key/<name>`).
    pub name: String,
    /// `enabled` or `disabled`.
    pub status: String,
    pub description: String,
    pub created_ms: i64,
}

impl From<&KmsKeyRecord> for KmsKeyView {
    fn from(r: &KmsKeyRecord) -> Self {
        Self {
            name: r.name.clone(),
            status: if r.enabled { "enabled" } else { "disabled" }.into(),
            description: r.description.clone(),
            created_ms: r.created_ms,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateKmsKey {
    /// 1–128 characters of letters, digits, `/ _ - .`, not starting with `/`.
    pub name: String,
    #[serde(default)]
    pub description: String,
}

async fn key(s: &AdminState, name: &str) -> Result<KmsKeyRecord, Response> {
    let q = Query::KmsKey {
        name: name.to_string(),
    };
    match s.cluster.registry.query(SYSTEM_GROUP, &q).await {
        Ok(QueryResult::KmsKey(Some(k))) => Ok(k),
        Ok(QueryResult::KmsKey(None)) => Err(error(
            StatusCode::NOT_FOUND,
            "NoSuchKmsKey",
            format!("no KMS key named {name}"),
        )),
        Ok(other) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            format!("unexpected answer {other:?}"),
        )),
        Err(e) => Err(unavailable(e)),
    }
}

#[utoipa::path(
    get,
    path = "/kms/keys",
    tag = "kms",
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "Keys of the SSE-KMS key store (never their material)", body = [KmsKeyView]),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn list_kms_keys(State(s): State<AdminState>, _: AdminScope) -> Response {
    match s
        .cluster
        .registry
        .query(SYSTEM_GROUP, &Query::ListKmsKeys)
        .await
    {
        Ok(QueryResult::KmsKeys(keys)) => {
            Json(keys.iter().map(KmsKeyView::from).collect::<Vec<_>>()).into_response()
        }
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            format!("unexpected answer {other:?}"),
        ),
        Err(e) => unavailable(e),
    }
}

#[utoipa::path(
    post,
    path = "/kms/keys",
    tag = "kms",
    request_body = CreateKmsKey,
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 201, description = "The new key (its material is never shown)", body = KmsKeyView),
        (status = 400, description = "Invalid name", body = ApiError),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 409, description = "A key of this name exists", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn create_kms_key(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    body: Result<Json<CreateKmsKey>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return bad(e.body_text()),
    };
    if let Err(e) = valid_name(&req.name) {
        return bad(e);
    }
    let cluster = s.keys.master().derive(cairn_object::sse::SSE_S3_CONTEXT);
    let wrapped = match cairn_object::sse::new_kms_key(&cluster, &req.name) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string()),
    };
    let record = KmsKeyRecord {
        v: 1,
        name: req.name.clone(),
        created_ms: now_ms(),
        enabled: true,
        wrapped,
        description: req.description,
    };
    let view = KmsKeyView::from(&record);
    let cmd = Command::CreateKmsKey {
        record,
        if_absent: false,
    };
    if let Err(r) = propose(&s, &actor, cmd).await {
        return r;
    }
    (StatusCode::CREATED, Json(view)).into_response()
}

async fn set_enabled(s: AdminState, actor: Actor, name: String, enabled: bool) -> Response {
    let cmd = Command::SetKmsKeyEnabled {
        name: name.clone(),
        enabled,
        at_ms: now_ms(),
    };
    if let Err(r) = propose(&s, &actor, cmd).await {
        return r;
    }
    match key(&s, &name).await {
        Ok(k) => Json(KmsKeyView::from(&k)).into_response(),
        Err(r) => r,
    }
}

#[utoipa::path(
    post,
    path = "/kms/keys/{name}/disable",
    tag = "kms",
    params(("name" = String, Path, description = "The key's name (URL-encoded: aws%2Fs3)")),
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "The key, now disabled: objects under it can be neither written nor read", body = KmsKeyView),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 404, description = "No such key", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn disable_kms_key(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    Path(name): Path<String>,
) -> Response {
    set_enabled(s, actor, name, false).await
}

#[utoipa::path(
    post,
    path = "/kms/keys/{name}/enable",
    tag = "kms",
    params(("name" = String, Path, description = "The key's name (URL-encoded: aws%2Fs3)")),
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "The key, enabled again", body = KmsKeyView),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 404, description = "No such key", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn enable_kms_key(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    Path(name): Path<String>,
) -> Response {
    set_enabled(s, actor, name, true).await
}
