//! CORS, the pure part: checking a PutBucketCors configuration, and matching a request against
//! a bucket's rules as AWS does. No I/O here; `cors_http.rs` wires it to the listener and the
//! S3 operations.
//!
//! Matching rules, in priority order:
//! 1. Rules are tried in the order they were configured; the first that matches applies.
//! 2. A rule matches when one of its `AllowedOrigin`s matches the `Origin` header (exactly, or
//!    with its one `*` standing for any run of characters; case-sensitive), its
//!    `AllowedMethod`s include the method (`Access-Control-Request-Method` for a preflight,
//!    the request's own method otherwise), and — for a preflight — every header named in
//!    `Access-Control-Request-Headers` matches one of its `AllowedHeader`s (case-insensitive,
//!    `*` wildcard likewise).
//! 3. The answer echoes the origin (and allows credentials), except for a rule whose origin
//!    is the lone `*`, which answers `*` without credentials. It lists the rule's methods,
//!    echoes the requested headers (lower-cased), and adds the rule's `ExposeHeader`s and
//!    `MaxAgeSeconds`, and `Vary` naming the three request headers the answer depends on.

use cairn_meta::bucket_config::CorsRule;

/// AWS's limit of rules in one configuration.
pub(crate) const MAX_RULES: usize = 100;
/// The methods a rule may allow.
pub(crate) const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];
/// The request headers a CORS answer depends on.
pub(crate) const VARY: &str =
    "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";

/// Why a configuration is refused (each maps to AWS's error in `cors_http.rs`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConfigError {
    /// No rule, or a rule without an origin or a method.
    #[error(
        "The XML you provided was not well-formed or did not validate against our published schema"
    )]
    Malformed,
    #[error("The number of CORS rules should not exceed allowed limit of {MAX_RULES} rules.")]
    TooManyRules,
    #[error("Found unsupported HTTP method in CORS config. Unsupported method is {0}")]
    UnsupportedMethod(String),
    #[error("AllowedOrigin \"{0}\" can not have more than one wildcard.")]
    OriginWildcards(String),
    #[error("AllowedHeader \"{0}\" can not have more than one wildcard.")]
    HeaderWildcards(String),
}

/// Checks a configuration as PutBucketCors does.
pub(crate) fn validate(rules: &[CorsRule]) -> Result<(), ConfigError> {
    if rules.is_empty() {
        return Err(ConfigError::Malformed);
    }
    if rules.len() > MAX_RULES {
        return Err(ConfigError::TooManyRules);
    }
    for r in rules {
        if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
            return Err(ConfigError::Malformed);
        }
        if let Some(m) = r
            .allowed_methods
            .iter()
            .find(|m| !METHODS.contains(&m.as_str()))
        {
            return Err(ConfigError::UnsupportedMethod(m.clone()));
        }
        if let Some(o) = r
            .allowed_origins
            .iter()
            .find(|o| o.matches('*').count() > 1)
        {
            return Err(ConfigError::OriginWildcards(o.clone()));
        }
        if let Some(h) = r
            .allowed_headers
            .iter()
            .find(|h| h.matches('*').count() > 1)
        {
            return Err(ConfigError::HeaderWildcards(h.clone()));
        }
    }
    Ok(())
}

/// Whether `value` matches `pattern`, whose (at most one) `*` stands for any run of
/// characters, possibly empty.
pub(crate) fn wildcard_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((prefix, suffix)) => {
            value.len() >= prefix.len() + suffix.len()
                && value.starts_with(prefix)
                && value.ends_with(suffix)
        }
    }
}

/// [`wildcard_match`] ignoring ASCII case (header names).
fn wildcard_match_ci(pattern: &str, value: &str) -> bool {
    wildcard_match(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
}

/// Header names listed in an `Access-Control-Request-Headers` value, trimmed and lower-cased.
pub(crate) fn requested_headers(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// The CORS response headers for a matched request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Allowed {
    /// The request's origin, or `*` for a rule allowing every origin.
    pub allow_origin: String,
    /// Whether `Access-Control-Allow-Credentials: true` is sent (not with `*`).
    pub credentials: bool,
    /// The rule's methods, `, `-separated.
    pub allow_methods: String,
    /// The requested headers (preflight only), `, `-separated; None when none were asked for.
    pub allow_headers: Option<String>,
    pub expose_headers: Option<String>,
    pub max_age: Option<i32>,
}

impl Allowed {
    fn of(rule: &CorsRule, origin: &str, headers: &[String]) -> Self {
        let any_origin = rule.allowed_origins.iter().any(|o| o == "*");
        Self {
            allow_origin: if any_origin {
                "*".to_owned()
            } else {
                origin.to_owned()
            },
            credentials: !any_origin,
            allow_methods: rule.allowed_methods.join(", "),
            allow_headers: (!headers.is_empty()).then(|| headers.join(", ")),
            expose_headers: (!rule.expose_headers.is_empty())
                .then(|| rule.expose_headers.join(", ")),
            max_age: rule.max_age_seconds,
        }
    }

    /// The response headers, as (name, value) pairs, `Vary` included.
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("access-control-allow-origin", self.allow_origin.clone()),
            ("access-control-allow-methods", self.allow_methods.clone()),
        ];
        if self.credentials {
            out.push(("access-control-allow-credentials", "true".to_owned()));
        }
        if let Some(h) = &self.allow_headers {
            out.push(("access-control-allow-headers", h.clone()));
        }
        if let Some(h) = &self.expose_headers {
            out.push(("access-control-expose-headers", h.clone()));
        }
        if let Some(a) = self.max_age {
            out.push(("access-control-max-age", a.to_string()));
        }
        out.push(("vary", VARY.to_owned()));
        out
    }
}

fn origin_and_method(rule: &CorsRule, origin: &str, method: &str) -> bool {
    rule.allowed_origins
        .iter()
        .any(|o| wildcard_match(o, origin))
        && rule.allowed_methods.iter().any(|m| m == method)
}

/// The first rule allowing a preflight from `origin` for `method` with `headers` (from
/// [`requested_headers`]), as the answer to give; None: refuse it.
pub(crate) fn match_preflight(
    rules: &[CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<Allowed> {
    rules
        .iter()
        .find(|r| {
            origin_and_method(r, origin, method)
                && headers.iter().all(|h| {
                    r.allowed_headers
                        .iter()
                        .any(|pattern| wildcard_match_ci(pattern, h))
                })
        })
        .map(|r| Allowed::of(r, origin, headers))
}

/// The first rule allowing an actual request from `origin` with `method`; None: the response
/// gets no CORS headers.
pub(crate) fn match_actual(rules: &[CorsRule], origin: &str, method: &str) -> Option<Allowed> {
    rules
        .iter()
        .find(|r| origin_and_method(r, origin, method))
        .map(|r| Allowed::of(r, origin, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            ..CorsRule::default()
        }
    }

    #[test]
    fn validation() {
        assert_eq!(validate(&[]), Err(ConfigError::Malformed));
        assert!(validate(&[rule(&["*"], &["GET", "HEAD"], &["*"])]).is_ok());
        assert_eq!(
            validate(&[rule(&["*"], &["PATCH"], &[])]),
            Err(ConfigError::UnsupportedMethod("PATCH".into()))
        );
        assert_eq!(
            validate(&[rule(&["http://*.*.com"], &["GET"], &[])]),
            Err(ConfigError::OriginWildcards("http://*.*.com".into()))
        );
        assert_eq!(
            validate(&[rule(&["*"], &["GET"], &["x-*-*"])]),
            Err(ConfigError::HeaderWildcards("x-*-*".into()))
        );
        assert_eq!(
            validate(&[rule(&[], &["GET"], &[])]),
            Err(ConfigError::Malformed)
        );
        let many = vec![rule(&["*"], &["GET"], &[]); 101];
        assert_eq!(validate(&many), Err(ConfigError::TooManyRules));
        assert!(validate(&many[..100]).is_ok());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*", "http://a.com"));
        assert!(wildcard_match(
            "http://*.example.com",
            "http://www.example.com"
        ));
        assert!(!wildcard_match(
            "http://*.example.com",
            "http://example.com"
        ));
        assert!(!wildcard_match(
            "http://*.example.com",
            "https://www.example.com"
        ));
        assert!(wildcard_match("http://a.com", "http://a.com"));
        assert!(!wildcard_match("http://a.com", "http://A.com"));
        // prefix and suffix must not overlap
        assert!(!wildcard_match("ab*ba", "aba"));
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = vec![
            rule(&["http://a.com"], &["PUT"], &[]),
            rule(
                &["http://a.com", "http://*.b.com"],
                &["GET", "PUT"],
                &["X-Amz-*", "content-type"],
            ),
            rule(&["*"], &["GET"], &[]),
        ];
        // first rule: PUT without headers
        let a = match_preflight(&rules, "http://a.com", "PUT", &[]).unwrap();
        assert_eq!(a.allow_methods, "PUT");
        assert!(a.credentials);
        // headers only allowed by the second rule, case-insensitively
        let h = requested_headers("Content-Type, x-amz-meta-Color");
        let a = match_preflight(&rules, "http://a.com", "PUT", &h).unwrap();
        assert_eq!(a.allow_methods, "GET, PUT");
        assert_eq!(
            a.allow_headers.as_deref(),
            Some("content-type, x-amz-meta-color")
        );
        let a = match_preflight(&rules, "http://x.b.com", "GET", &[]).unwrap();
        assert_eq!(a.allow_origin, "http://x.b.com");
        // any origin, GET: the third rule answers '*' without credentials
        let a = match_preflight(&rules, "http://elsewhere", "GET", &[]).unwrap();
        assert_eq!(a.allow_origin, "*");
        assert!(!a.credentials);
        assert!(!a
            .headers()
            .iter()
            .any(|(n, _)| *n == "access-control-allow-credentials"));
        // refused: method, header
        assert!(match_preflight(&rules, "http://elsewhere", "PUT", &[]).is_none());
        assert!(match_preflight(&rules, "http://elsewhere", "GET", &["x-other".into()]).is_none());
        assert!(match_preflight(&[], "http://a.com", "GET", &[]).is_none());
        // actual requests ignore headers
        assert_eq!(
            match_actual(&rules, "http://x.b.com", "GET")
                .unwrap()
                .allow_origin,
            "http://x.b.com"
        );
        assert!(match_actual(&rules, "http://x.b.com", "DELETE").is_none());
    }

    #[test]
    fn response_headers() {
        let mut r = rule(&["http://a.com"], &["GET", "HEAD"], &["*"]);
        r.expose_headers = vec!["ETag".into(), "x-amz-request-id".into()];
        r.max_age_seconds = Some(3000);
        let a = match_preflight(&[r], "http://a.com", "GET", &["x-a".into()]).unwrap();
        let h: std::collections::HashMap<_, _> = a.headers().into_iter().collect();
        assert_eq!(h["access-control-allow-origin"], "http://a.com");
        assert_eq!(h["access-control-allow-methods"], "GET, HEAD");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-headers"], "x-a");
        assert_eq!(h["access-control-expose-headers"], "ETag, x-amz-request-id");
        assert_eq!(h["access-control-max-age"], "3000");
        assert_eq!(h["vary"], VARY);
    }

    proptest! {
        /// A pattern `prefix*suffix` matches exactly the strings made of the prefix, anything,
        /// and the suffix.
        #[test]
        fn wildcard_is_prefix_any_suffix(p in "[a-z.:/]{0,8}", mid in "[a-z.:/]{0,8}", s in "[a-z.:/]{0,8}", other in "[a-z.:/]{0,20}") {
            let pattern = format!("{p}*{s}");
            let inside = format!("{p}{mid}{s}");
            prop_assert!(wildcard_match(&pattern, &inside));
            let expected = other.len() >= p.len() + s.len() && other.starts_with(&p) && other.ends_with(&s);
            prop_assert_eq!(wildcard_match(&pattern, &other), expected);
        }

        /// Whatever the rules, a preflight is allowed only by a rule that allows its origin,
        /// method and every header, and the answer is the first such rule's.
        #[test]
        fn preflight_answer_is_the_first_allowing_rule(
            rules in proptest::collection::vec(
                (proptest::sample::subsequence(vec!["*", "http://a.com", "http://*.a.com", "http://b.org"], 1..=2),
                 proptest::sample::subsequence(METHODS.to_vec(), 1..=3),
                 proptest::sample::subsequence(vec!["*", "x-amz-*", "Content-Type"], 0..=2)),
                0..5),
            origin in proptest::sample::select(vec!["http://a.com", "http://w.a.com", "http://b.org", "http://c.net"]),
            method in proptest::sample::select(METHODS.to_vec()),
            headers in proptest::sample::subsequence(vec!["content-type", "x-amz-date", "x-other"], 0..=2),
        ) {
            let rules: Vec<CorsRule> = rules.iter().map(|(o, m, h)| rule(o, m, h)).collect();
            let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
            let got = match_preflight(&rules, origin, method, &headers);
            let first = rules.iter().find(|r| {
                r.allowed_origins.iter().any(|o| wildcard_match(o, origin))
                    && r.allowed_methods.iter().any(|m| m == method)
                    && headers.iter().all(|h| r.allowed_headers.iter().any(|a| wildcard_match(&a.to_ascii_lowercase(), h)))
            });
            prop_assert_eq!(got.map(|a| a.allow_methods), first.map(|r| r.allowed_methods.join(", ")));
        }
    }
}
