//! The replicated cluster configuration on the management API: `GET /cluster/config` (every
//! setting, how it applies, and which version each node applied), `PATCH /cluster/config`
//! (set some settings) and `PUT /cluster/config` (the whole document), `GET
//! /cluster/config/history` (who changed what, when and why) and `POST
//! /cluster/config/rollback/{version}` (a new version equal to an old one). Changes are
//! proposed to the system group wrapped in `Command::Audited`; the state machine validates
//! them again (`cairn_meta::config_doc`). A change answers once every reachable node applied
//! it (or after a few seconds), saying which nodes applied it live and which settings wait
//! for a restart.

// Handlers return ready-made axum responses as their error: they are built once per refused
// request, so boxing them would buy nothing.
#![allow(clippy::result_large_err)]

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_meta::config_doc::{self, ApplyMode, ConfigValue, ConfigVersion};
use cairn_meta::model::{ClusterConfig, NodeState};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, CommandError, Query, QueryResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::admin::AdminState;
use crate::admin_auth::{error, now_ms, Actor, ReadScope, RequireScope};
use crate::config_live::NodeConfigState;

/// How long a change waits for every reachable node to apply it before answering.
const APPLY_WAIT: Duration = Duration::from_secs(5);
/// Attempts at a change that lost a race with another change (re-read, re-apply).
const ATTEMPTS: usize = 3;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/cluster/config",
            get(get_config).put(put_config).patch(patch_config),
        )
        .route("/cluster/config/history", get(history))
        .route("/cluster/config/rollback/{version}", post(rollback))
}

/// This module's part of the OpenAPI document (merged into the root document by `openapi::document`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_config, patch_config, put_config, history, rollback))]
pub struct Api;

/// One setting of the document.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct SettingView {
    pub key: String,
    /// A number, a string or a list of strings; null when unset (each node's own setting).
    pub value: Option<Value>,
    /// fixed, cluster (applied by the cluster's controllers), live (by every node at once) or
    /// restart (by each node at its next start).
    pub apply: String,
    pub help: String,
}

/// The current configuration and every node's applied version.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigView {
    pub version: u64,
    pub changed_ms: i64,
    pub settings: Vec<SettingView>,
    pub nodes: Vec<NodeConfigState>,
}

/// A change: settings by name (a number, a string or a list of strings; null unsets).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangeRequest {
    #[schema(value_type = Object)]
    pub settings: serde_json::Map<String, Value>,
    /// Why (recorded in the history and the audit log).
    #[serde(default)]
    pub message: String,
    /// Refuse the change (409) unless the current version is this one.
    #[serde(default)]
    pub expected_version: Option<u64>,
}

/// A rollback's reason (optional body).
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct RollbackRequest {
    #[serde(default)]
    pub message: String,
}

/// One setting that changed.
#[derive(Serialize, Deserialize, Clone, utoipa::ToSchema)]
pub struct DiffView {
    pub key: String,
    pub from: Option<Value>,
    pub to: Option<Value>,
    /// How the change takes effect (cluster, live or restart).
    pub apply: String,
}

/// The answer to a change or a rollback.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeAnswer {
    pub version: u64,
    pub diff: Vec<DiffView>,
    /// Nodes that applied this version.
    pub applied: Vec<String>,
    /// Reachable or not, nodes that had not reported this version when the answer was made.
    pub pending: Vec<String>,
    /// Changed settings every node applies only at its next start.
    pub restart_required: Vec<String>,
    pub nodes: Vec<NodeConfigState>,
}

/// One recorded version.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub version: u64,
    pub at_ms: i64,
    /// The token or root key that made the change (null for the version recorded at
    /// formation).
    pub actor: Option<String>,
    pub message: String,
    pub rollback_of: Option<u64>,
    /// What changed from the previous recorded version.
    pub diff: Vec<DiffView>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct HistoryParams {
    /// Versions after this one.
    #[serde(default)]
    pub after: u64,
    /// At most this many (default 100, at most 1000).
    #[serde(default = "default_max")]
    pub max: usize,
}

fn default_max() -> usize {
    100
}

fn to_json(v: &ConfigValue) -> Value {
    match v {
        ConfigValue::Int(n) => Value::from(*n),
        ConfigValue::Text(t) => Value::from(t.as_str()),
        ConfigValue::List(l) => Value::from(l.clone()),
    }
}

fn from_json(key: &str, v: &Value) -> Result<Option<ConfigValue>, Response> {
    let wrong = || {
        invalid_config(
            key,
            format!("{key}: expected a number, a string or a list of strings"),
        )
    };
    Ok(match v {
        Value::Null => None,
        Value::Number(n) => Some(match n.as_u64() {
            Some(u) => ConfigValue::Int(u),
            // Negative or fractional: let the setting say what it expects.
            None => ConfigValue::Text(n.to_string()),
        }),
        Value::String(s) => Some(ConfigValue::Text(s.clone())),
        Value::Array(items) => Some(ConfigValue::List(
            items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(wrong)?,
        )),
        Value::Bool(_) | Value::Object(_) => return Err(wrong()),
    })
}

/// `{"error": {"code": "InvalidConfig", "message": ..., "field": ...}}`, 400.
fn invalid_config(field: &str, message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": {
            "code": "InvalidConfig",
            "message": message.into(),
            "field": field,
        }})),
    )
        .into_response()
}

fn config_error(e: config_doc::ConfigError) -> Response {
    invalid_config(e.key(), e.to_string())
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        e.to_string(),
    )
}

fn unexpected(other: QueryResult) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal",
        format!("unexpected answer {other:?}"),
    )
}

fn diff_views(old: &ClusterConfig, new: &ClusterConfig) -> Vec<DiffView> {
    config_doc::diff(old, new)
        .into_iter()
        .map(|d| DiffView {
            apply: config_doc::setting(&d.key)
                .map(|s| s.apply.as_str())
                .unwrap_or("live")
                .to_string(),
            from: d.from.as_ref().map(to_json),
            to: d.to.as_ref().map(to_json),
            key: d.key,
        })
        .collect()
}

/// The current configuration, read through the system group's leader.
async fn current(s: &AdminState) -> Result<ClusterConfig, Response> {
    match s
        .cluster
        .registry
        .query(SYSTEM_GROUP, &Query::ClusterConfig)
        .await
    {
        Ok(QueryResult::Config(Some(c))) => Ok(c),
        Ok(QueryResult::Config(None)) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "the cluster configuration is not recorded yet",
        )),
        Ok(other) => Err(unexpected(other)),
        Err(e) => Err(unavailable(e)),
    }
}

async fn versions(s: &AdminState, after: u64, max: usize) -> Result<Vec<ConfigVersion>, Response> {
    match s
        .cluster
        .registry
        .query(SYSTEM_GROUP, &Query::ConfigHistory { after, max })
        .await
    {
        Ok(QueryResult::ConfigHistory(v)) => Ok(v),
        Ok(other) => Err(unexpected(other)),
        Err(e) => Err(unavailable(e)),
    }
}

/// Registered nodes that are not removed (what a replication factor is checked against).
fn node_count(s: &AdminState) -> usize {
    s.cluster
        .view
        .nodes()
        .values()
        .filter(|n| n.state != NodeState::Removed)
        .count()
}

#[utoipa::path(
    get,
    path = "/cluster/config",
    tag = "config",
    responses(
        (status = 200, description = "The current configuration", body = ConfigView),
        (status = 401, description = "No or invalid token"),
        (status = 503, description = "The system group has no leader"),
    ),
    security(("bearer" = []))
)]
/// The current configuration: every setting with its value and how it applies, and the
/// version each node applied.
pub async fn get_config(State(s): State<AdminState>, _: ReadScope) -> Response {
    let c = match current(&s).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    s.config.refresh();
    Json(ConfigView {
        version: c.version,
        changed_ms: c.changed_ms,
        settings: config_doc::entries(&c)
            .into_iter()
            .map(|(setting, value)| SettingView {
                key: setting.name.into(),
                value: value.as_ref().map(to_json),
                apply: setting.apply.as_str().into(),
                help: setting.help.into(),
            })
            .collect(),
        nodes: s.config.nodes(),
    })
    .into_response()
}

fn parse_request(body: &Bytes) -> Result<ChangeRequest, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            format!("expected {{\"settings\": {{...}}, \"message\": \"...\"}}: {e}"),
        )
    })
}

#[utoipa::path(
    patch,
    path = "/cluster/config",
    tag = "config",
    request_body = ChangeRequest,
    responses(
        (status = 200, description = "The new version and where it applied", body = ChangeAnswer),
        (status = 400, description = "Invalid change (the error names the setting)"),
        (status = 401, description = "No or invalid token"),
        (status = 403, description = "Token scope below operator"),
        (status = 409, description = "The current version is not `expected_version`"),
        (status = 503, description = "The system group has no leader"),
    ),
    security(("bearer" = []))
)]
/// Sets the given settings (others keep their value) as a new version.
pub async fn patch_config(
    State(s): State<AdminState>,
    RequireScope(actor): RequireScope<1>,
    body: Bytes,
) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    change(&s, &actor, &req, false).await
}

#[utoipa::path(
    put,
    path = "/cluster/config",
    tag = "config",
    request_body = ChangeRequest,
    responses(
        (status = 200, description = "The new version and where it applied", body = ChangeAnswer),
        (status = 400, description = "Invalid document (the error names the setting)"),
        (status = 401, description = "No or invalid token"),
        (status = 403, description = "Token scope below operator"),
        (status = 409, description = "The current version is not `expected_version`"),
        (status = 503, description = "The system group has no leader"),
    ),
    security(("bearer" = []))
)]
/// Replaces the whole document: settings not given are unset (`replication.factor` and
/// `replication.voters` are required).
pub async fn put_config(
    State(s): State<AdminState>,
    RequireScope(actor): RequireScope<1>,
    body: Bytes,
) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    change(&s, &actor, &req, true).await
}

/// `cur` with the request's settings (or, for a whole document, only them) applied.
fn changed(
    cur: &ClusterConfig,
    req: &ChangeRequest,
    whole: bool,
) -> Result<ClusterConfig, Response> {
    let mut next = if whole {
        ClusterConfig {
            partitions: cur.partitions,
            ..Default::default()
        }
    } else {
        cur.clone()
    };
    for (key, value) in &req.settings {
        let v = from_json(key, value)?;
        config_doc::set(&mut next, key, v.as_ref()).map_err(config_error)?;
    }
    if whole {
        for key in ["replication.factor", "replication.voters"] {
            if !req.settings.contains_key(key) {
                return Err(invalid_config(
                    key,
                    format!("{key}: missing (PUT replaces the whole document; PATCH sets some settings)"),
                ));
            }
        }
    }
    next.version = cur.version + 1;
    next.changed_ms = now_ms();
    Ok(next)
}

/// Records a refused change in the audit log, with its actor and why (best effort).
async fn audit_refusal(s: &AdminState, actor: &Actor, what: String, reason: String) {
    let cmd = Command::Audited {
        actor: actor.name.clone(),
        command: Box::new(Command::AuditEvent {
            what,
            outcome: Some(reason),
            at_ms: now_ms(),
        }),
    };
    if let Err(e) = s.cluster.registry.propose(SYSTEM_GROUP, cmd).await {
        tracing::debug!(error = %e, "refused config change not audited");
    }
}

/// The refusal's message, from a JSON error answer built here.
async fn refusal_reason(r: Response) -> (Response, Option<String>) {
    let (parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let reason = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error")?.get("message")?.as_str().map(str::to_string));
    (
        Response::from_parts(parts, axum::body::Body::from(bytes)),
        reason,
    )
}

/// Audits `r` as a refusal of `what` when it is a 400 (an invalid change).
async fn audited(s: &AdminState, actor: &Actor, what: String, r: Response) -> Response {
    if r.status() != StatusCode::BAD_REQUEST {
        return r;
    }
    let (r, reason) = refusal_reason(r).await;
    audit_refusal(s, actor, what, reason.unwrap_or_else(|| "refused".into())).await;
    r
}

fn describe_request(req: &ChangeRequest, whole: bool) -> String {
    let keys: Vec<String> = req
        .settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let what = if whole { "replace" } else { "change" };
    format!("{what} cluster config: {}", keys.join(", "))
}

async fn change(s: &AdminState, actor: &Actor, req: &ChangeRequest, whole: bool) -> Response {
    let r = change_once(s, actor, req, whole).await;
    audited(s, actor, describe_request(req, whole), r).await
}

async fn change_once(s: &AdminState, actor: &Actor, req: &ChangeRequest, whole: bool) -> Response {
    for _ in 0..ATTEMPTS {
        let cur = match current(s).await {
            Ok(c) => c,
            Err(r) => return r,
        };
        if req.expected_version.is_some_and(|v| v != cur.version) {
            return error(
                StatusCode::CONFLICT,
                "VersionMismatch",
                format!(
                    "the configuration is at version {}, not {}",
                    cur.version,
                    req.expected_version.unwrap_or_default()
                ),
            );
        }
        let next = match changed(&cur, req, whole) {
            Ok(n) => n,
            Err(r) => return r,
        };
        match propose(s, actor, &cur, next, &req.message, None).await {
            Err(Retry::Stale) if req.expected_version.is_none() => continue,
            Err(Retry::Stale) => {
                return error(
                    StatusCode::CONFLICT,
                    "VersionMismatch",
                    "the configuration changed meanwhile",
                )
            }
            Err(Retry::Answer(r)) | Ok(r) => return r,
        }
    }
    error(
        StatusCode::CONFLICT,
        "Conflict",
        "the configuration kept changing meanwhile: retry",
    )
}

enum Retry {
    /// Another change got in first.
    Stale,
    Answer(Response),
}

/// Proposes `next` (the version after `cur`); on success waits for the nodes to apply it and
/// answers with the report.
async fn propose(
    s: &AdminState,
    actor: &Actor,
    cur: &ClusterConfig,
    next: ClusterConfig,
    message: &str,
    rollback_of: Option<u64>,
) -> Result<Response, Retry> {
    let diff = diff_views(cur, &next);
    if diff.is_empty() {
        return Err(Retry::Answer(error(
            StatusCode::BAD_REQUEST,
            "NoChange",
            format!("version {} already has these settings", cur.version),
        )));
    }
    // The state machine checks again; checking here first gives the same answer sooner.
    if let Err(e) = config_doc::validate_change(cur, &next, node_count(s)) {
        return Err(Retry::Answer(config_error(e)));
    }
    let version = next.version;
    let cmd = Command::Audited {
        actor: actor.name.clone(),
        command: Box::new(Command::ChangeConfig {
            config: next,
            actor: actor.name.clone(),
            message: message.trim().to_string(),
            rollback_of,
        }),
    };
    match s.cluster.registry.propose(SYSTEM_GROUP, cmd).await {
        Ok(cairn_meta::Response::Refused(CommandError::StaleConfig(_))) => Err(Retry::Stale),
        Ok(cairn_meta::Response::Refused(CommandError::InvalidConfig { field, message })) => {
            Err(Retry::Answer(invalid_config(&field, message)))
        }
        Ok(cairn_meta::Response::Refused(e)) => Err(Retry::Answer(error(
            StatusCode::BAD_REQUEST,
            "Refused",
            e.to_string(),
        ))),
        Ok(_) => {
            tracing::info!(actor = %actor.name, version, "cluster configuration changed");
            Ok(Json(wait_applied(s, version, diff).await).into_response())
        }
        Err(e) => Err(Retry::Answer(unavailable(e))),
    }
}

/// Waits (at most [`APPLY_WAIT`]) until every node that is up reports `version`.
async fn wait_applied(s: &AdminState, version: u64, diff: Vec<DiffView>) -> ChangeAnswer {
    let deadline = Instant::now() + APPLY_WAIT;
    let nodes = loop {
        s.config.refresh();
        let nodes = s.config.nodes();
        let done = nodes
            .iter()
            .filter(|n| n.health == "up")
            .all(|n| n.applied_version.is_some_and(|v| v >= version));
        if done || Instant::now() >= deadline {
            break nodes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (applied, pending): (Vec<_>, Vec<_>) = nodes
        .iter()
        .partition(|n| n.applied_version.is_some_and(|v| v >= version));
    ChangeAnswer {
        version,
        restart_required: diff
            .iter()
            .filter(|d| d.apply == ApplyMode::Restart.as_str())
            .map(|d| d.key.clone())
            .collect(),
        diff,
        applied: applied.iter().map(|n| n.node_id.clone()).collect(),
        pending: pending.iter().map(|n| n.node_id.clone()).collect(),
        nodes,
    }
}

#[utoipa::path(
    get,
    path = "/cluster/config/history",
    tag = "config",
    params(HistoryParams),
    responses(
        (status = 200, description = "Recorded versions, oldest first", body = Vec<HistoryEntry>),
        (status = 401, description = "No or invalid token"),
        (status = 503, description = "The system group has no leader"),
    ),
    security(("bearer" = []))
)]
/// Recorded versions, oldest first: who changed what, when and why.
pub async fn history(
    State(s): State<AdminState>,
    _: ReadScope,
    params: Result<UrlQuery<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let UrlQuery(p) = match params {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidArgument", e.body_text()),
    };
    let max = p.max.clamp(1, 1000);
    // One more, before the first asked for, to diff it against.
    let base = p.after.saturating_sub(1);
    let list = match versions(&s, base, max + 1).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut out = Vec::new();
    let mut prev: Option<&ConfigVersion> = None;
    for v in &list {
        if v.version > p.after {
            out.push(HistoryEntry {
                version: v.version,
                at_ms: v.at_ms,
                actor: v.actor.clone(),
                message: v.message.clone(),
                rollback_of: v.rollback_of,
                diff: match prev {
                    Some(p) => diff_views(&p.config, &v.config),
                    None => Vec::new(),
                },
            });
        }
        prev = Some(v);
    }
    out.truncate(max);
    Json(out).into_response()
}

#[utoipa::path(
    post,
    path = "/cluster/config/rollback/{version}",
    tag = "config",
    params(("version" = u64, Path, description = "The recorded version to restore")),
    request_body(content = Option<RollbackRequest>, description = "Optional reason"),
    responses(
        (status = 200, description = "The new version (equal to the old one) and where it applied", body = ChangeAnswer),
        (status = 400, description = "The old version is not valid for the cluster now, or nothing changes"),
        (status = 401, description = "No or invalid token"),
        (status = 403, description = "Token scope below operator"),
        (status = 404, description = "No such version"),
        (status = 503, description = "The system group has no leader"),
    ),
    security(("bearer" = []))
)]
/// Restores version `version` as a new version (history is never rewritten).
pub async fn rollback(
    State(s): State<AdminState>,
    RequireScope(actor): RequireScope<1>,
    Path(version): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(version) = version.trim_start_matches('v').parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            format!("version {version:?} is not a number"),
        );
    };
    let req: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    format!("expected {{\"message\": \"...\"}}: {e}"),
                )
            }
        }
    };
    let target = match versions(&s, version.saturating_sub(1), 1).await {
        Ok(v) => v.into_iter().find(|v| v.version == version),
        Err(r) => return r,
    };
    let Some(target) = target else {
        return error(
            StatusCode::NOT_FOUND,
            "NoSuchVersion",
            format!("configuration version {version} is not recorded"),
        );
    };
    let message = match req.message.trim() {
        "" => format!("rollback to v{version}"),
        m => m.to_string(),
    };
    let r = rollback_once(&s, &actor, &target, &message).await;
    audited(
        &s,
        &actor,
        format!("rollback cluster config to v{version}"),
        r,
    )
    .await
}

async fn rollback_once(
    s: &AdminState,
    actor: &Actor,
    target: &ConfigVersion,
    message: &str,
) -> Response {
    let version = target.version;
    for _ in 0..ATTEMPTS {
        let cur = match current(s).await {
            Ok(c) => c,
            Err(r) => return r,
        };
        let next = ClusterConfig {
            version: cur.version + 1,
            partitions: cur.partitions,
            changed_ms: now_ms(),
            ..target.config.clone()
        };
        match propose(s, actor, &cur, next, message, Some(version)).await {
            Err(Retry::Stale) => continue,
            Err(Retry::Answer(r)) | Ok(r) => return r,
        }
    }
    error(
        StatusCode::CONFLICT,
        "Conflict",
        "the configuration kept changing meanwhile: retry",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_every_config_endpoint() {
        let doc = <Api as utoipa::OpenApi>::openapi();
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        for p in [
            "/cluster/config",
            "/cluster/config/history",
            "/cluster/config/rollback/{version}",
        ] {
            assert!(
                doc.paths.paths.contains_key(p),
                "{p} missing from {paths:?}"
            );
        }
    }

    #[test]
    fn json_values_map_to_setting_values() {
        assert_eq!(
            from_json("k", &serde_json::json!(3)).ok().flatten(),
            Some(ConfigValue::Int(3))
        );
        assert_eq!(from_json("k", &Value::Null).ok().flatten(), None);
        assert_eq!(
            from_json("k", &serde_json::json!(["a=b"])).ok().flatten(),
            Some(ConfigValue::List(vec!["a=b".into()]))
        );
        assert!(from_json("k", &serde_json::json!(true)).is_err());
        assert!(from_json("k", &serde_json::json!([1])).is_err());
        assert_eq!(
            to_json(&ConfigValue::List(vec!["x".into()])),
            serde_json::json!(["x"])
        );
    }

    #[test]
    fn a_whole_document_needs_the_required_settings() {
        let cur = ClusterConfig {
            version: 4,
            partitions: 64,
            replication: 3,
            desired_voters: 3,
            gc_grace_secs: Some(5),
            ..Default::default()
        };
        let req = |v: Value| ChangeRequest {
            settings: v.as_object().cloned().unwrap_or_default(),
            message: String::new(),
            expected_version: None,
        };
        assert!(changed(
            &cur,
            &req(serde_json::json!({"replication.factor": 3})),
            true
        )
        .is_err());
        let next = changed(
            &cur,
            &req(serde_json::json!({"replication.factor": 3, "replication.voters": 3})),
            true,
        )
        .ok()
        .unwrap_or_default();
        assert_eq!(next.version, 5);
        assert_eq!(next.partitions, 64);
        // Not given in a whole document: unset.
        assert_eq!(next.gc_grace_secs, None);
        let patched = changed(
            &cur,
            &req(serde_json::json!({"gc.interval_secs": "7"})),
            false,
        )
        .ok()
        .unwrap_or_default();
        assert_eq!(
            (patched.gc_grace_secs, patched.gc_interval_secs),
            (Some(5), Some(7))
        );
        assert!(changed(&cur, &req(serde_json::json!({"nope": 1})), false).is_err());
    }
}
