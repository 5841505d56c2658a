//! CORS over HTTP: Put/Get/DeleteBucketCors, the preflight (`OPTIONS`) answer, and the CORS
//! headers added to actual requests that carry an `Origin`. The matching itself is `cors.rs`.
//!
//! Preflights carry no signature (browsers never sign them), so the listener answers them
//! before s3s and its authentication (`serve.rs`), from the bucket's rules read linearizably
//! from the system group: a rule just written through any node applies at once. They do pass
//! the listener's connection and in-flight caps like every request.

use std::sync::Arc;

use cairn_meta::bucket_config::CorsRule;
use cairn_object::{ObjectError, ObjectService, ReadConsistency};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::cors::{self, ConfigError};
use crate::error::ObjectResultExt;
use crate::guard::Refusal;
use crate::host::CairnHost;
use crate::{CairnS3, S3Settings, S3SetupError};

// ---------------------------------------------------------------- the S3 operations

fn config_error(e: ConfigError) -> S3Error {
    let code = match e {
        ConfigError::Malformed => S3ErrorCode::MalformedXML,
        _ => S3ErrorCode::InvalidRequest,
    };
    S3Error::with_message(code, e.to_string())
}

fn from_dto(rules: CORSRules) -> Vec<CorsRule> {
    rules
        .into_iter()
        .map(|r| CorsRule {
            id: r.id,
            allowed_origins: r.allowed_origins,
            allowed_methods: r.allowed_methods,
            allowed_headers: r.allowed_headers.unwrap_or_default(),
            expose_headers: r.expose_headers.unwrap_or_default(),
            max_age_seconds: r.max_age_seconds,
        })
        .collect()
}

fn to_dto(rules: Vec<CorsRule>) -> CORSRules {
    rules
        .into_iter()
        .map(|r| CORSRule {
            id: r.id,
            allowed_origins: r.allowed_origins,
            allowed_methods: r.allowed_methods,
            allowed_headers: (!r.allowed_headers.is_empty()).then_some(r.allowed_headers),
            expose_headers: (!r.expose_headers.is_empty()).then_some(r.expose_headers),
            max_age_seconds: r.max_age_seconds,
        })
        .collect()
}

pub(crate) async fn put_bucket_cors(
    s3: &CairnS3,
    req: S3Request<PutBucketCorsInput>,
) -> S3Result<S3Response<PutBucketCorsOutput>> {
    let input = req.input;
    let rules = from_dto(input.cors_configuration.cors_rules);
    cors::validate(&rules).map_err(config_error)?;
    s3.objects()
        .set_bucket_cors(&input.bucket, Some(rules))
        .await
        .s3()?;
    Ok(S3Response::new(PutBucketCorsOutput::default()))
}

pub(crate) async fn get_bucket_cors(
    s3: &CairnS3,
    req: S3Request<GetBucketCorsInput>,
) -> S3Result<S3Response<GetBucketCorsOutput>> {
    let config = s3
        .objects()
        .bucket_config(&req.input.bucket, ReadConsistency::Linearizable)
        .await
        .s3()?;
    match config.cors {
        Some(rules) => Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(to_dto(rules)),
        })),
        None => Err(s3_error!(
            NoSuchCORSConfiguration,
            "The CORS configuration does not exist"
        )),
    }
}

/// Removes the CORS configuration (204, also when there was none).
pub(crate) async fn delete_bucket_cors(
    s3: &CairnS3,
    req: S3Request<DeleteBucketCorsInput>,
) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
    s3.objects()
        .set_bucket_cors(&req.input.bucket, None)
        .await
        .s3()?;
    Ok(S3Response::new(DeleteBucketCorsOutput::default()))
}

// ---------------------------------------------------------------- the listener's side

/// What the listener needs to answer preflights and decorate responses: the bucket settings
/// and the virtual-host domains (to find the bucket a request names). Cheap to clone.
#[derive(Clone)]
pub struct Cors {
    objects: ObjectService,
    host: Option<Arc<CairnHost>>,
}

/// An actual (non-preflight) request with an `Origin`, remembered until its response.
pub(crate) struct CorsRequest {
    bucket: String,
    origin: String,
    method: Method,
}

const NOT_ALLOWED: &str = "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.";

fn forbidden(message: &str, reason: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        code: "AccessForbidden",
        message: message.to_owned(),
        reason,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Cors {
    /// Built from the same settings as the S3 service (its virtual-host domains).
    pub fn new(objects: ObjectService, settings: &S3Settings) -> Result<Self, S3SetupError> {
        let host = match settings.domains.is_empty() {
            true => None,
            false => Some(Arc::new(CairnHost::new(&settings.domains)?)),
        };
        Ok(Self { objects, host })
    }

    /// The bucket a request names: `<bucket>.<domain>` in the Host, else the first path
    /// segment (path-style). None for the service root.
    fn bucket_of(&self, uri: &Uri, headers: &HeaderMap) -> Option<String> {
        let host = header_str(headers, "host").or_else(|| uri.host());
        if let (Some(h), Some(host)) = (&self.host, host) {
            if let Some(b) = h.bucket_of(host) {
                return Some(b);
            }
        }
        let first = uri.path().trim_start_matches('/').split('/').next()?;
        (!first.is_empty()).then(|| first.to_owned())
    }

    /// Answers a preflight: 200 with the CORS headers of the first matching rule, or the
    /// refusal AWS gives (400 without `Origin`, 403 otherwise).
    pub(crate) async fn preflight(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<http::Response<s3s::Body>, Refusal> {
        let Some(origin) = header_str(headers, "origin") else {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                code: "BadRequest",
                message: "Insufficient information. Origin request header needed.".into(),
                reason: "cors_no_origin",
            });
        };
        let Some(bucket) = self.bucket_of(uri, headers) else {
            return Err(forbidden(
                "CORSResponse: Bucket not found",
                "cors_no_bucket",
            ));
        };
        let rules = match self.rules(&bucket).await {
            Ok(Some(rules)) => rules,
            Ok(None) => {
                return Err(forbidden(
                    "CORSResponse: CORS is not enabled for this bucket.",
                    "cors_disabled",
                ))
            }
            Err(ObjectError::NoSuchBucket) => {
                return Err(forbidden(
                    "CORSResponse: Bucket not found",
                    "cors_no_bucket",
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "CORS preflight: bucket settings unavailable");
                return Err(Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "ServiceUnavailable",
                    message: "The service is temporarily unavailable. Please retry.".into(),
                    reason: "cors_unavailable",
                });
            }
        };
        let method = header_str(headers, "access-control-request-method").unwrap_or("");
        let requested = header_str(headers, "access-control-request-headers")
            .map(cors::requested_headers)
            .unwrap_or_default();
        let Some(allowed) = cors::match_preflight(&rules, origin, method, &requested) else {
            return Err(forbidden(NOT_ALLOWED, "cors_not_allowed"));
        };
        let mut resp = http::Response::new(s3s::Body::empty());
        add_headers(resp.headers_mut(), &allowed);
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
        Ok(resp)
    }

    /// The CORS context of an actual request, when it has an `Origin` and names a bucket.
    pub(crate) fn actual_request(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Option<CorsRequest> {
        let origin = header_str(headers, "origin")?;
        Some(CorsRequest {
            bucket: self.bucket_of(uri, headers)?,
            origin: origin.to_owned(),
            method: method.clone(),
        })
    }

    /// Adds the CORS headers of the first rule matching `req` to `resp` (nothing when no rule
    /// matches, the bucket has no CORS, or its settings cannot be read: the request itself
    /// was answered either way).
    pub(crate) async fn decorate(&self, req: CorsRequest, resp: &mut http::Response<s3s::Body>) {
        let rules = match self.rules(&req.bucket).await {
            Ok(Some(rules)) => rules,
            Ok(None) | Err(ObjectError::NoSuchBucket) => return,
            Err(e) => {
                tracing::debug!(error = %e, "CORS headers left out: bucket settings unavailable");
                return;
            }
        };
        if let Some(allowed) = cors::match_actual(&rules, &req.origin, req.method.as_str()) {
            add_headers(resp.headers_mut(), &allowed);
        }
    }

    /// The bucket's CORS rules (None: it has none).
    async fn rules(&self, bucket: &str) -> Result<Option<Vec<CorsRule>>, ObjectError> {
        Ok(self
            .objects
            .bucket_config(bucket, ReadConsistency::Linearizable)
            .await?
            .cors)
    }
}

fn add_headers(out: &mut HeaderMap, allowed: &cors::Allowed) {
    for (name, value) in allowed.headers() {
        // Values come from a validated configuration and the request's own headers; one that
        // is not a valid header value is left out rather than failing the response.
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(HeaderName::from_static(name), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_map_to_aws_codes() {
        let e = config_error(ConfigError::Malformed);
        assert_eq!(e.code(), &S3ErrorCode::MalformedXML);
        let e = config_error(ConfigError::UnsupportedMethod("PATCH".into()));
        assert_eq!(e.code(), &S3ErrorCode::InvalidRequest);
        assert_eq!(
            e.message(),
            Some("Found unsupported HTTP method in CORS config. Unsupported method is PATCH")
        );
    }

    #[test]
    fn dto_round_trip_keeps_order_and_fields() {
        let rules = vec![
            CorsRule {
                id: Some("r1".into()),
                allowed_origins: vec!["http://a.com".into()],
                allowed_methods: vec!["PUT".into(), "GET".into()],
                allowed_headers: vec!["*".into()],
                expose_headers: vec!["ETag".into()],
                max_age_seconds: Some(10),
            },
            CorsRule {
                allowed_origins: vec!["*".into()],
                allowed_methods: vec!["GET".into()],
                ..CorsRule::default()
            },
        ];
        assert_eq!(from_dto(to_dto(rules.clone())), rules);
    }
}
