//! The OpenAPI document of the management plane, served at `GET /openapi.json` (public, like
//! `/health`). It is generated from the handlers' `#[utoipa::path]` annotations: each admin
//! module declares `#[derive(utoipa::OpenApi)] pub struct Api` listing its paths, and
//! [`document`] merges them under one root that declares the security schemes (an operator
//! token as `Authorization: Bearer`, or a request signed with a root key) and the JSON error
//! body every refusal uses.

use std::sync::OnceLock;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

/// Name of the operator-token security scheme: a protected path says
/// `security(("bearer" = []), ("root_signature" = []))`.
pub const BEARER: &str = "bearer";
/// Name of the root-key signature security scheme.
pub const ROOT_SIGNATURE: &str = "root_signature";

/// The error body of every refused management request (`admin_auth::error`).
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ApiError {
    pub error: ApiErrorDetail,
}

#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ApiErrorDetail {
    /// A stable machine-readable code, e.g. `MissingToken`, `InsufficientScope`,
    /// `InvalidArgument`, `NoSuchAccessKey`, `Unavailable`.
    pub code: String,
    pub message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn management API",
        description = "Per-node management plane and cluster API of a Cairn node (port NODE_ADMIN_PORT). \
            Reads need a token of scope read, changes operator or admin; send it as \
            `Authorization: Bearer <token>` (create one with `cairn token create`). \
            Errors are `{\"error\":{\"code\":...,\"message\":...}}`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ApiError, ApiErrorDetail)),
    tags(
        (name = "node", description = "This node: liveness, readiness, status, logs, metrics, shutdown, the API description"),
        (name = "cluster", description = "The cluster (any node answers): status, health, nodes, metrics, audit, fan-out"),
        (name = "admin", description = "Operator summaries: nodes, rebalances, capacity"),
        (name = "config", description = "The replicated cluster configuration: versions, history, rollback"),
        (name = "buckets", description = "Buckets and their usage"),
        (name = "keys", description = "S3 access keys and their bucket grants (admin scope)"),
        (name = "tokens", description = "Operator tokens of the management API (admin scope)"),
        (name = "kms", description = "The SSE-KMS key store: named keys, created, listed, disabled (admin scope)"),
    )
)]
struct Root;

/// Adds the security schemes: an operator token, or a request signed with a root key.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An operator token (`cairn token create`), scoped read, operator or admin",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            ROOT_SIGNATURE,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                cairn_files::auth::SIGNATURE_HEADER.to_string(),
                format!(
                    "A request signed with a root key (admin scope), as `cairn token create` \
                     sends it: `{}` (the access key), `{}` (Unix seconds) and `{}` (hex \
                     HMAC-SHA256 with the secret key over `cairn-files-v1`, `admin <METHOD>`, \
                     the path with its query, the hex BLAKE3 of the body and the date, joined \
                     by newlines)",
                    cairn_files::auth::ACCESS_KEY_HEADER,
                    cairn_files::auth::DATE_HEADER,
                    cairn_files::auth::SIGNATURE_HEADER,
                ),
            ))),
        );
    }
}

/// The whole management API: the root merged with every admin module's `Api`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Root::openapi();
    // One line per admin module (node_admin, admin_config, admin_cluster join here).
    for part in [
        crate::admin::Api::openapi(),
        crate::admin_keys::Api::openapi(),
        crate::admin_kms::Api::openapi(),
        crate::node_admin::Api::openapi(),
        crate::admin_config::Api::openapi(),
        crate::admin_cluster::Api::openapi(),
        crate::admin_workers::Api::openapi(),
        crate::admin_heal::Api::openapi(),
        crate::admin_rebalance::Api::openapi(),
    ] {
        doc.merge(part);
    }
    doc
}

/// The document as JSON, built once.
fn document_json() -> &'static Result<String, String> {
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().map_err(|e| e.to_string()))
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "node",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn serve() -> Response {
    match document_json() {
        Ok(json) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json.clone(),
        )
            .into_response(),
        Err(e) => crate::admin_auth::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            format!("building the OpenAPI document: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::Operation;

    fn operations(doc: &utoipa::openapi::OpenApi) -> Vec<(String, &'static str, &Operation)> {
        let mut out = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("put", &item.put),
                ("post", &item.post),
                ("delete", &item.delete),
                ("patch", &item.patch),
            ] {
                if let Some(op) = op {
                    out.push((path.clone(), method, op));
                }
            }
        }
        out
    }

    #[test]
    fn documents_the_existing_endpoints() {
        let doc = document();
        let ops: Vec<(String, &str)> = operations(&doc)
            .into_iter()
            .map(|(p, m, _)| (p, m))
            .collect();
        for (path, method) in [
            ("/health", "get"),
            ("/ready", "get"),
            ("/metrics", "get"),
            ("/openapi.json", "get"),
            ("/cluster/status", "get"),
            ("/cluster/audit", "get"),
            ("/keys", "get"),
            ("/keys", "post"),
            ("/keys/{ak}", "delete"),
            ("/keys/{ak}/disable", "post"),
            ("/keys/{ak}/enable", "post"),
            ("/keys/{ak}/rotate", "post"),
            ("/keys/{ak}/grants/{bucket}", "put"),
            ("/keys/{ak}/grants/{bucket}", "delete"),
            ("/tokens", "get"),
            ("/tokens", "post"),
            ("/tokens/{name}", "delete"),
        ] {
            assert!(
                ops.contains(&(path.to_string(), method)),
                "{method} {path} is not documented; documented: {ops:?}"
            );
        }
    }

    #[test]
    fn every_operation_is_tagged_answers_and_names_its_path_parameters() {
        let doc = document();
        for (path, method, op) in operations(&doc) {
            assert!(
                op.tags.as_ref().is_some_and(|t| !t.is_empty()),
                "{method} {path} has no tag"
            );
            assert!(
                !op.responses.responses.is_empty(),
                "{method} {path} documents no response"
            );
            let params: Vec<&str> = op
                .parameters
                .iter()
                .flatten()
                .filter(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Path)
                .map(|p| p.name.as_str())
                .collect();
            for seg in path.split('/') {
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    assert!(
                        params.contains(&name),
                        "{method} {path}: path parameter {name} is not documented"
                    );
                }
            }
        }
    }

    #[test]
    fn protected_operations_name_a_known_security_scheme() {
        let doc = document();
        let schemes = &doc
            .components
            .as_ref()
            .expect("components")
            .security_schemes;
        assert!(schemes.contains_key(BEARER));
        assert!(schemes.contains_key(ROOT_SIGNATURE));
        let json = serde_json::to_value(&doc).expect("json");
        let public = ["/health", "/ready", "/openapi.json", "/metrics"];
        for (path, item) in json["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let security = op.get("security").and_then(|s| s.as_array());
                if public.contains(&path.as_str()) && method == "get" {
                    continue;
                }
                let security =
                    security.unwrap_or_else(|| panic!("{method} {path} declares no security"));
                assert!(!security.is_empty(), "{method} {path}: empty security");
                for requirement in security {
                    for name in requirement.as_object().expect("requirement").keys() {
                        assert!(
                            schemes.contains_key(name),
                            "{method} {path}: unknown scheme {name}"
                        );
                    }
                }
            }
        }
    }

    /// Every `.route("/path", ...)` in this crate's sources names a documented path (a
    /// handler added without `#[utoipa::path]`, or a module whose `Api` is not merged in
    /// [`document`], fails here).
    #[test]
    fn every_route_in_the_sources_is_documented() {
        let doc = document();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut routes = Vec::new();
        for entry in std::fs::read_dir(&src).expect("src dir") {
            let path = entry.expect("entry").path();
            // This file only mentions `.route(` in its tests.
            if path.extension().and_then(|e| e.to_str()) != Some("rs")
                || path.file_name().and_then(|n| n.to_str()) == Some("openapi.rs")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for (i, _) in text.match_indices(".route(") {
                let rest = text[i + ".route(".len()..].trim_start();
                if let Some(rest) = rest.strip_prefix('"') {
                    if let Some(end) = rest.find('"') {
                        let route = &rest[..end];
                        let plain = route
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"/_-.{}".contains(&b));
                        if route.starts_with('/') && plain {
                            routes.push(route.to_string());
                        }
                    }
                }
            }
        }
        assert!(routes.iter().any(|r| r == "/keys"), "{routes:?}");
        let missing: Vec<_> = routes
            .iter()
            .filter(|r| !doc.paths.paths.contains_key(r.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "routes missing from the OpenAPI document: {missing:?}"
        );
    }

    #[test]
    fn error_schema_matches_the_error_body() {
        let body = serde_json::to_value(ApiError {
            error: ApiErrorDetail {
                code: "MissingToken".into(),
                message: "m".into(),
            },
        })
        .expect("json");
        let resp = crate::admin_auth::error(StatusCode::UNAUTHORIZED, "MissingToken", "m");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let bytes = rt
            .block_on(axum::body::to_bytes(resp.into_body(), 1 << 16))
            .expect("body");
        let real: serde_json::Value = serde_json::from_slice(&bytes).expect("json body");
        assert_eq!(real, body);
    }

    #[test]
    fn serves_valid_json() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let resp = rt.block_on(serve());
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = rt
            .block_on(axum::body::to_bytes(resp.into_body(), 16 << 20))
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["openapi"], "3.1.0");
        assert_eq!(v["info"]["title"], "Cairn management API");
    }
}
