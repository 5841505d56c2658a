//! Authentication of the management API: operator tokens (`Authorization: Bearer TOKEN`,
//! stored hashed in the system group, scoped read < operator < admin, expiring, revocable) and
//! requests signed with a root key (admin; how `cairn token create` bootstraps the first token).
//! A middleware reads the credentials once per request; handlers state the scope they need
//! with the [`RequireScope`] extractor. Failures are 401 (missing, invalid, expired, revoked)
//! or 403 (scope too low) with a JSON error body.

// Handlers return ready-made axum responses as their error: they are built once per refused
// request, so boxing them would buy nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_meta::model::{KeyStatus, TokenScope};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::secrets::KeyDirectory;

/// Largest management request body (key and token requests are tiny).
const MAX_BODY: usize = 1 << 20;
/// Prefix of every operator token (helps secret scanners recognise a leaked one).
pub const TOKEN_PREFIX: &str = "cairn_";

/// A JSON error `{"error":{"code":"...","message":"..."}}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// Who is calling, and with which scope.
#[derive(Clone, Debug)]
pub struct Actor {
    /// `token NAME` or `root key AK`: what the audit log records.
    pub name: String,
    pub scope: TokenScope,
}

/// What the middleware found in a request.
#[derive(Clone)]
enum Outcome {
    Authenticated(Actor),
    /// Credentials were sent but refused: (code, message).
    Refused(&'static str, String),
    Missing,
}

/// The hex BLAKE3 hash a token is stored under.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// The canonical string of a signed management request, as FileService signs calls
/// (`cairn_files::Credentials`): method `admin <HTTP method>`, the path with its query in the
/// bucket slot and the hex BLAKE3 of the body in the key slot.
pub fn signed_parts(method: &str, path_and_query: &str, body: &[u8]) -> (String, String, String) {
    (
        format!("admin {method}"),
        path_and_query.to_string(),
        blake3::hash(body).to_hex().to_string(),
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn bearer(headers: &HeaderMap, keys: &KeyDirectory) -> Option<Outcome> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?;
    let token = match value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
        Some(t) => t.trim(),
        None => {
            return Some(Outcome::Refused(
                "InvalidToken",
                "Authorization must be `Bearer <token>`".into(),
            ))
        }
    };
    let rec = match keys.store().token(SYSTEM_GROUP, &token_hash(token)) {
        Ok(Some(r)) => r,
        Ok(None) => return Some(Outcome::Refused("InvalidToken", "unknown token".into())),
        Err(e) => {
            tracing::warn!(error = %e, "reading tokens");
            return Some(Outcome::Refused(
                "InvalidToken",
                "token lookup failed".into(),
            ));
        }
    };
    if rec.revoked_ms.is_some() {
        return Some(Outcome::Refused(
            "TokenRevoked",
            format!("token {} was revoked", rec.name),
        ));
    }
    if rec.expires_ms.is_some_and(|e| e <= now_ms()) {
        return Some(Outcome::Refused(
            "TokenExpired",
            format!("token {} has expired", rec.name),
        ));
    }
    Some(Outcome::Authenticated(Actor {
        name: format!("token {}", rec.name),
        scope: rec.scope,
    }))
}

/// A request signed with a root key (headers as FileService: access key, date, signature).
fn root_signature(parts: &Parts, body: &[u8], keys: &KeyDirectory) -> Option<Outcome> {
    use cairn_files::auth::{ACCESS_KEY_HEADER, DATE_HEADER, SIGNATURE_HEADER};
    let ak = parts
        .headers
        .get(ACCESS_KEY_HEADER)?
        .to_str()
        .ok()?
        .to_string();
    let refused = |m: String| Some(Outcome::Refused("InvalidSignature", m));
    let Some(resolved) = keys.resolve(&ak) else {
        return refused(format!("unknown access key {ak}"));
    };
    if !resolved.record.root || resolved.record.status != KeyStatus::Active {
        return refused(format!("access key {ak} is not an active root key"));
    }
    let Some(secret) = resolved.secret else {
        return refused(format!("access key {ak} cannot sign"));
    };
    let mut md = tonic::metadata::MetadataMap::new();
    for h in [ACCESS_KEY_HEADER, DATE_HEADER, SIGNATURE_HEADER] {
        if let Some(v) = parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            md.insert(h, v);
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let (method, target, body_hash) = signed_parts(parts.method.as_str(), path, body);
    let verified = cairn_files::Credentials::new(&ak, &secret).and_then(|c| {
        c.verify(
            &md,
            &method,
            &target,
            &body_hash,
            std::time::SystemTime::now(),
        )
    });
    match verified {
        Ok(()) => Some(Outcome::Authenticated(Actor {
            name: format!("root key {ak}"),
            scope: TokenScope::Admin,
        })),
        Err(e) => refused(e.to_string()),
    }
}

/// Middleware: reads the request's credentials (the body only for signed requests, at most
/// 1 MiB) and leaves the outcome for [`RequireScope`].
pub async fn authenticate(
    State(keys): State<Arc<KeyDirectory>>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let (outcome, body) = if let Some(o) = bearer(&parts.headers, &keys) {
        (o, body)
    } else if parts
        .headers
        .contains_key(cairn_files::auth::ACCESS_KEY_HEADER)
    {
        let bytes = match to_bytes(body, MAX_BODY).await {
            Ok(b) => b,
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestTooLarge",
                    "management requests are limited to 1 MiB",
                )
            }
        };
        let o = root_signature(&parts, &bytes, &keys).unwrap_or(Outcome::Missing);
        (o, Body::from(bytes))
    } else {
        (Outcome::Missing, body)
    };
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(outcome);
    next.run(req).await
}

/// Extractor: the caller, who must hold at least scope `LEVEL` (0 read, 1 operator, 2 admin).
pub struct RequireScope<const LEVEL: u8>(pub Actor);

pub type ReadScope = RequireScope<0>;
pub type AdminScope = RequireScope<2>;

fn level(scope: TokenScope) -> u8 {
    match scope {
        TokenScope::Read => 0,
        TokenScope::Operator => 1,
        TokenScope::Admin => 2,
    }
}

fn scope_name(level: u8) -> &'static str {
    match level {
        0 => "read",
        1 => "operator",
        _ => "admin",
    }
}

impl<S: Send + Sync, const LEVEL: u8> FromRequestParts<S> for RequireScope<LEVEL> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path().to_string();
        match parts.extensions.get::<Outcome>().cloned() {
            Some(Outcome::Authenticated(actor)) if level(actor.scope) >= LEVEL => {
                tracing::info!(actor = %actor.name, method = %parts.method, %path, "management API call");
                Ok(Self(actor))
            }
            Some(Outcome::Authenticated(actor)) => {
                tracing::warn!(actor = %actor.name, %path, "management API call refused: scope too low");
                Err(error(
                    StatusCode::FORBIDDEN,
                    "InsufficientScope",
                    format!(
                        "{} has scope {}; {path} needs {}",
                        actor.name,
                        actor.scope.as_str(),
                        scope_name(LEVEL)
                    ),
                ))
            }
            Some(Outcome::Refused(code, message)) => {
                tracing::warn!(%path, code, %message, "management API call refused");
                Err(error(StatusCode::UNAUTHORIZED, code, message))
            }
            Some(Outcome::Missing) | None => Err(error(
                StatusCode::UNAUTHORIZED,
                "MissingToken",
                format!("{path} needs an operator token: send `Authorization: Bearer <token>` (create one with `cairn token create`)"),
            )),
        }
    }
}

/// Whether the request carries credentials valid for `read` (for endpoints that are open by
/// configuration, like `/metrics`).
pub fn read_allowed(extensions: &axum::http::Extensions) -> Result<(), Response> {
    match extensions.get::<Outcome>() {
        Some(Outcome::Authenticated(_)) => Ok(()),
        Some(Outcome::Refused(code, m)) => Err(error(StatusCode::UNAUTHORIZED, code, m.clone())),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "MissingToken",
            "/metrics needs an operator token (METRICS_REQUIRE_TOKEN=true)",
        )),
    }
}
