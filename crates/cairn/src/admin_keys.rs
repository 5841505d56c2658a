//! Management endpoints for access keys (`/keys`) and operator tokens (`/tokens`), admin scope.
//! Every change is proposed to the system group wrapped in `Command::Audited`, so the audit log
//! names the token (or root key) that made it. Secrets are returned once, at creation or
//! rotation, and never stored or logged in plaintext.

// Handlers return ready-made axum responses as their error: they are built once per refused
// request, so boxing them would buy nothing.
#![allow(clippy::result_large_err)]

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use cairn_meta::model::{AccessKeyRecord, Grant, KeyStatus, Permission, TokenRecord, TokenScope};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, CommandError, KeyChange, Query, QueryResult};
use serde::{Deserialize, Serialize};

use crate::admin::AdminState;
use crate::admin_auth::{error, now_ms, token_hash, Actor, AdminScope, TOKEN_PREFIX};
use crate::openapi::ApiError;

/// The OpenAPI paths of this module (merged by `openapi::document`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_keys,
    create_key,
    delete_key,
    disable_key,
    enable_key,
    rotate_key,
    grant,
    remove_grant,
    list_tokens,
    create_token,
    revoke_token
))]
pub struct Api;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{ak}", delete(delete_key))
        .route("/keys/{ak}/disable", post(disable_key))
        .route("/keys/{ak}/enable", post(enable_key))
        .route("/keys/{ak}/rotate", post(rotate_key))
        .route(
            "/keys/{ak}/grants/{bucket}",
            put(grant).delete(remove_grant),
        )
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{name}", delete(revoke_token))
}

/// A key as the API shows it (never its secret).
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyView {
    pub access_key: String,
    pub name: String,
    pub status: String,
    pub root: bool,
    pub allow_create_bucket: bool,
    pub grants: Vec<GrantView>,
    pub created_ms: i64,
}

#[derive(Serialize, Deserialize, Clone, utoipa::ToSchema)]
pub struct GrantView {
    pub bucket: String,
    #[schema(value_type = PermissionName)]
    pub permission: String,
}

/// The permissions a grant may give (documentation of `permission` fields, which are parsed
/// by `Permission::parse`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum PermissionName {
    Read,
    Write,
    Owner,
}

/// The scopes of an operator token (documentation of `scope` fields, parsed by
/// `TokenScope::parse`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ScopeName {
    Read,
    Operator,
    Admin,
}

impl From<&AccessKeyRecord> for KeyView {
    fn from(r: &AccessKeyRecord) -> Self {
        Self {
            access_key: r.access_key.clone(),
            name: r.description.clone(),
            status: r.status.as_str().into(),
            root: r.root,
            allow_create_bucket: r.allow_create_bucket,
            grants: r
                .grants
                .iter()
                .map(|g| GrantView {
                    bucket: g.bucket.clone(),
                    permission: g.permission.as_str().into(),
                })
                .collect(),
            created_ms: r.created_ms,
        }
    }
}

/// A new or rotated key's credentials, shown once.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeySecret {
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateKey {
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    #[serde(default)]
    pub grants: Vec<GrantView>,
    #[serde(default)]
    pub allow_create_bucket: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct GrantBody {
    #[schema(value_type = PermissionName)]
    pub permission: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateToken {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    #[schema(value_type = ScopeName)]
    pub scope: String,
    /// Lifetime in seconds (None: never expires).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// A token as the API lists it (never the token; `id` is the first hex digits of its hash).
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    pub name: String,
    pub id: String,
    pub scope: String,
    pub creator: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub status: String,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    pub name: String,
    pub scope: String,
    pub expires_ms: Option<i64>,
    pub token: String,
}

fn random_hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(n);
    s
}

pub(crate) fn bad(msg: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "InvalidArgument", msg)
}

pub(crate) fn unavailable(e: impl ToString) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        e.to_string(),
    )
}

/// Proposes `cmd` to the system group on behalf of `actor` (audited); maps refusals to HTTP
/// answers. Shared by the key, token and KMS key endpoints.
pub(crate) async fn propose(s: &AdminState, actor: &Actor, cmd: Command) -> Result<(), Response> {
    let cmd = Command::Audited {
        actor: actor.name.clone(),
        command: Box::new(cmd),
    };
    match s.cluster.registry.propose(SYSTEM_GROUP, cmd).await {
        Ok(cairn_meta::Response::Refused(e)) => Err(match &e {
            CommandError::NoSuchAccessKey(_) => {
                error(StatusCode::NOT_FOUND, "NoSuchAccessKey", e.to_string())
            }
            CommandError::NoSuchToken(_) => {
                error(StatusCode::NOT_FOUND, "NoSuchToken", e.to_string())
            }
            CommandError::NoSuchKmsKey(_) => {
                error(StatusCode::NOT_FOUND, "NoSuchKmsKey", e.to_string())
            }
            CommandError::AccessKeyExists
            | CommandError::TokenExists(_)
            | CommandError::KmsKeyExists(_) => {
                error(StatusCode::CONFLICT, "AlreadyExists", e.to_string())
            }
            CommandError::Invalid(_) => bad(e.to_string()),
            _ => error(StatusCode::CONFLICT, "Refused", e.to_string()),
        }),
        Ok(_) => Ok(()),
        Err(e) => Err(unavailable(e)),
    }
}

async fn all_keys(s: &AdminState) -> Result<Vec<AccessKeyRecord>, Response> {
    match s
        .cluster
        .registry
        .query(SYSTEM_GROUP, &Query::ListAccessKeys)
        .await
    {
        Ok(QueryResult::AccessKeys(k)) => Ok(k),
        Ok(other) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            format!("unexpected answer {other:?}"),
        )),
        Err(e) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            e.to_string(),
        )),
    }
}

fn parse_grants(grants: &[GrantView]) -> Result<Vec<Grant>, Response> {
    grants
        .iter()
        .map(|g| {
            let permission = Permission::parse(&g.permission).ok_or_else(|| {
                bad(format!(
                    "permission {:?}: use read, write or owner",
                    g.permission
                ))
            })?;
            cairn_meta::access::valid_pattern(&g.bucket).map_err(bad)?;
            Ok(Grant {
                bucket: g.bucket.clone(),
                permission,
            })
        })
        .collect()
}

#[utoipa::path(
    get,
    path = "/keys",
    tag = "keys",
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "Access keys (never their secrets)", body = [KeyView]),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn list_keys(State(s): State<AdminState>, _: AdminScope) -> Response {
    match all_keys(&s).await {
        Ok(keys) => Json(
            keys.iter()
                .filter(|k| k.status != KeyStatus::Deleted)
                .map(KeyView::from)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(r) => r,
    }
}

#[utoipa::path(
    post,
    path = "/keys",
    tag = "keys",
    request_body = CreateKey,
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 201, description = "The new key; its secret is shown only now", body = KeySecret),
        (status = 400, description = "Invalid request", body = ApiError),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 409, description = "It exists already, or the change was refused", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn create_key(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    body: Result<Json<CreateKey>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return bad(e.body_text()),
    };
    if req.name.trim().is_empty() || req.name.len() > 128 {
        return bad("a key needs a name of 1 to 128 characters");
    }
    let grants = match parse_grants(&req.grants) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let access_key = format!("CK{}", random_hex(18).to_uppercase());
    let secret_key = random_hex(40);
    let mut record =
        match s
            .keys
            .master()
            .new_record(&access_key, &secret_key, req.name.trim(), now_ms())
        {
            Ok(r) => r,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string()),
        };
    record.grants = grants;
    record.allow_create_bucket = req.allow_create_bucket;
    if let Err(r) = propose(&s, &actor, Command::CreateAccessKey { record }).await {
        return r;
    }
    (
        StatusCode::CREATED,
        Json(KeySecret {
            access_key,
            secret_key,
        }),
    )
        .into_response()
}

async fn change(s: &AdminState, actor: &Actor, ak: String, change: KeyChange) -> Response {
    let cmd = Command::UpdateAccessKey {
        access_key: ak.clone(),
        change,
        at_ms: now_ms(),
    };
    match propose(s, actor, cmd).await {
        Ok(()) => key_view(s, &ak).await,
        Err(r) => r,
    }
}

async fn key_view(s: &AdminState, ak: &str) -> Response {
    match all_keys(s).await {
        Ok(keys) => match keys.iter().find(|k| k.access_key == ak) {
            Some(k) => Json(KeyView::from(k)).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                "NoSuchAccessKey",
                format!("access key {ak} does not exist"),
            ),
        },
        Err(r) => r,
    }
}

#[utoipa::path(
    post,
    path = "/keys/{ak}/disable",
    tag = "keys",
    params(
        ("ak" = String, Path, description = "Access key id")
    ),
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "The key, now disabled", body = KeyView),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 404, description = "No such access key or token", body = ApiError),
        (status = 409, description = "It exists already, or the change was refused", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn disable_key(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    Path(ak): Path<String>,
) -> Response {
    change(&s, &actor, ak, KeyChange::Status(KeyStatus::Disabled)).await
}

#[utoipa::path(
    post,
    path = "/keys/{ak}/enable",
    tag = "keys",
    params(
        ("ak" = String, Path, description = "Access key id")
    ),
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "The key, now active", body = KeyView),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 404, description = "No such access key or token", body = ApiError),
        (status = 409, description = "It exists already, or the change was refused", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn enable_key(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    Path(ak): Path<String>,
) -> Response {
    change(&s, &actor, ak, KeyChange::Status(KeyStatus::Active)).await
}

#[utoipa::path(
    post,
    path = "/keys/{ak}/rotate",
    tag = "keys",
    params(
        ("ak" = String, Path, description = "Access key id")
    ),
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "The new secret, shown only now", body = KeySecret),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 404, description = "No such access key or token", body = ApiError),
        (status = 409, description = "It exists already, or the change was refused", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn rotate_key(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    Path(ak): Path<String>,
) -> Response {
    let secret_key = random_hex(40);
    let master = s.keys.master();
    let sealed = match master.seal(&ak, &secret_key) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string()),
    };
    let rotate = KeyChange::Rotate {
        sealed,
        fingerprint: master.fingerprint(&ak, &secret_key),
    };
    let cmd = Command::UpdateAccessKey {
        access_key: ak.clone(),
        change: rotate,
        at_ms: now_ms(),
    };
    match propose(&s, &actor, cmd).await {
        Ok(()) => Json(KeySecret {
            access_key: ak,
            secret_key,
        })
        .into_response(),
        Err(r) => r,
    }
}

#[utoipa::path(
    delete,
    path = "/keys/{ak}",
    tag = "keys",
    params(
        ("ak" = String, Path, description = "Access key id")
    ),
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 404, description = "No such access key or token", body = ApiError),
        (status = 409, description = "It exists already, or the change was refused", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn delete_key(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    Path(ak): Path<String>,
) -> Response {
    let cmd = Command::DeleteAccessKey {
        access_key: ak.clone(),
        at_ms: now_ms(),
    };
    match propose(&s, &actor, cmd).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

#[utoipa::path(
    put,
    path = "/keys/{ak}/grants/{bucket}",
    tag = "keys",
    params(
        ("ak" = String, Path, description = "Access key id"),
        ("bucket" = String, Path, description = "Bucket name or pattern (`logs-*`)")
    ),
    request_body = GrantBody,
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "The key with the grant", body = KeyView),
        (status = 400, description = "Invalid request", body = ApiError),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 404, description = "No such access key or token", body = ApiError),
        (status = 409, description = "It exists already, or the change was refused", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn grant(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    Path((ak, bucket)): Path<(String, String)>,
    body: Result<Json<GrantBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad(e.body_text()),
    };
    let g = match parse_grants(&[GrantView {
        bucket,
        permission: b.permission,
    }]) {
        Ok(mut g) => match g.pop() {
            Some(g) => g,
            None => return bad("no grant"),
        },
        Err(r) => return r,
    };
    change(&s, &actor, ak, KeyChange::Grant(g)).await
}

#[utoipa::path(
    delete,
    path = "/keys/{ak}/grants/{bucket}",
    tag = "keys",
    params(
        ("ak" = String, Path, description = "Access key id"),
        ("bucket" = String, Path, description = "Bucket name or pattern the grant names")
    ),
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "The key without the grant", body = KeyView),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 404, description = "No such access key or token", body = ApiError),
        (status = 409, description = "It exists already, or the change was refused", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn remove_grant(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    Path((ak, bucket)): Path<(String, String)>,
) -> Response {
    change(&s, &actor, ak, KeyChange::RemoveGrant(bucket)).await
}

#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 200, description = "Operator tokens (never the tokens themselves)", body = [TokenView]),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn list_tokens(State(s): State<AdminState>, _: AdminScope) -> Response {
    let tokens = match s
        .cluster
        .registry
        .query(SYSTEM_GROUP, &Query::ListTokens)
        .await
    {
        Ok(QueryResult::Tokens(t)) => t,
        Ok(other) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal",
                format!("unexpected answer {other:?}"),
            )
        }
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                e.to_string(),
            )
        }
    };
    let now = now_ms();
    Json(
        tokens
            .iter()
            .map(|t| TokenView {
                name: t.name.clone(),
                id: t.hash.chars().take(12).collect(),
                scope: t.scope.as_str().into(),
                creator: t.creator.clone(),
                created_ms: t.created_ms,
                expires_ms: t.expires_ms,
                status: if t.revoked_ms.is_some() {
                    "revoked"
                } else if t.expires_ms.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                }
                .into(),
            })
            .collect::<Vec<_>>(),
    )
    .into_response()
}

#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    request_body = CreateToken,
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 201, description = "The new token; shown only now", body = NewToken),
        (status = 400, description = "Invalid request", body = ApiError),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 409, description = "It exists already, or the change was refused", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn create_token(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    body: Result<Json<CreateToken>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return bad(e.body_text()),
    };
    let name = req.name.trim().to_string();
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return bad("a token name is 1 to 64 letters, digits, '-', '_' or '.'");
    }
    let Some(scope) = TokenScope::parse(&req.scope) else {
        return bad(format!(
            "scope {:?}: use read, operator or admin",
            req.scope
        ));
    };
    if req.ttl_secs == Some(0) {
        return bad("ttl must be positive");
    }
    let now = now_ms();
    let expires_ms = req
        .ttl_secs
        .map(|t| now.saturating_add(i64::try_from(t.saturating_mul(1000)).unwrap_or(i64::MAX)));
    let token = format!("{TOKEN_PREFIX}{}", random_hex(64));
    let record = TokenRecord {
        name: name.clone(),
        hash: token_hash(&token),
        scope,
        creator: actor.name.clone(),
        created_ms: now,
        expires_ms,
        revoked_ms: None,
    };
    if let Err(r) = propose(&s, &actor, Command::CreateToken { record }).await {
        return r;
    }
    (
        StatusCode::CREATED,
        Json(NewToken {
            name,
            scope: scope.as_str().into(),
            expires_ms,
            token,
        }),
    )
        .into_response()
}

#[utoipa::path(
    delete,
    path = "/tokens/{name}",
    tag = "tokens",
    params(
        ("name" = String, Path, description = "Token name")
    ),
    security(("bearer" = []), ("root_signature" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing, invalid, expired or revoked credentials", body = ApiError),
        (status = 403, description = "The token's scope is below admin", body = ApiError),
        (status = 404, description = "No such access key or token", body = ApiError),
        (status = 409, description = "It exists already, or the change was refused", body = ApiError),
        (status = 503, description = "The system group has no reachable leader", body = ApiError),
    )
)]
async fn revoke_token(
    State(s): State<AdminState>,
    AdminScope { 0: actor }: AdminScope,
    Path(name): Path<String>,
) -> Response {
    let cmd = Command::RevokeToken {
        name,
        at_ms: now_ms(),
    };
    match propose(&s, &actor, cmd).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented enums name exactly the values the handlers accept.
    fn documented<T: utoipa::PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).expect("schema");
        schema["enum"]
            .as_array()
            .expect("an enum schema")
            .iter()
            .map(|v| v.as_str().expect("string").to_string())
            .collect()
    }

    #[test]
    fn documented_names_parse() {
        let perms = documented::<PermissionName>();
        assert_eq!(perms, ["read", "write", "owner"]);
        assert!(perms.iter().all(|p| Permission::parse(p).is_some()));
        let scopes = documented::<ScopeName>();
        assert_eq!(scopes, ["read", "operator", "admin"]);
        assert!(scopes.iter().all(|s| TokenScope::parse(s).is_some()));
        assert!(TokenScope::parse("root").is_none());
    }
}
