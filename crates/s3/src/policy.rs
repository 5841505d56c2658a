//! Bucket policies, the pure part: parsing and checking a policy document as PutBucketPolicy
//! does, and evaluating it for one request. No I/O here; `policy_http.rs` holds the S3
//! operations and `access.rs` calls [`Policy::evaluate`] on every request.
//!
//! Evaluation rules, in priority order:
//! 1. A statement applies when its principal, action, resource and every condition match.
//! 2. An applying `Deny` statement decides: the request is refused, whatever else allows it.
//! 3. Otherwise an applying `Allow` statement allows the request.
//! 4. Otherwise the policy says nothing and the key's own grants decide (`access.rs`).
//!
//! Principals: `"*"` (or `{"AWS": "*"}`) is everyone, anonymous requests included; an access
//! key id, or `arn:aws:iam::<any account>:user/<access-key-id>`, is that key;
//! `arn:aws:iam::<any account>:root` (or a 12-digit account id) is every key of the cluster.
//! Wildcards `*` (any run of characters) and `?` (one character) work in actions (case
//! insensitive), resources and `StringLike` values. A condition key missing from the request
//! makes a positive operator false and a negated one true; `...IfExists` makes it true.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;
use time::OffsetDateTime;

/// The largest policy AWS accepts (20 KiB).
pub(crate) const MAX_POLICY_BYTES: usize = 20 * 1024;

/// Why a policy is refused: MalformedPolicy with this message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct PolicyError(pub String);

fn bad(msg: impl Into<String>) -> PolicyError {
    PolicyError(msg.into())
}

/// What a policy says about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Deny,
    Allow,
    /// No statement applies.
    Silent,
}

/// Who sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who<'a> {
    Anonymous,
    Key(&'a str),
}

/// One request as a policy sees it. Condition keys are lower-case (`aws:sourceip`).
#[derive(Clone, Debug)]
pub(crate) struct Request<'a> {
    pub who: Who<'a>,
    /// The IAM action, e.g. `s3:GetObject`.
    pub action: &'a str,
    /// `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`.
    pub resource: &'a str,
    pub context: &'a BTreeMap<String, String>,
}

/// A checked, compiled policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    statements: Vec<Statement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Statement {
    allow: bool,
    /// Negated: `NotPrincipal`.
    principals: (bool, Vec<Principal>),
    actions: (bool, Vec<String>),
    resources: (bool, Vec<String>),
    conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Principal {
    Everyone,
    /// Every key of the cluster (an account ARN or id).
    AnyKey,
    Key(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Condition {
    op: Op,
    if_exists: bool,
    key: String,
    values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    IpAddress,
    NotIpAddress,
    Null,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        use Op::*;
        Some(match s {
            "StringEquals" => StringEquals,
            "StringNotEquals" => StringNotEquals,
            "StringEqualsIgnoreCase" => StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => StringNotEqualsIgnoreCase,
            "StringLike" => StringLike,
            "StringNotLike" => StringNotLike,
            "NumericEquals" => NumericEquals,
            "NumericNotEquals" => NumericNotEquals,
            "NumericLessThan" => NumericLessThan,
            "NumericLessThanEquals" => NumericLessThanEquals,
            "NumericGreaterThan" => NumericGreaterThan,
            "NumericGreaterThanEquals" => NumericGreaterThanEquals,
            "DateEquals" => DateEquals,
            "DateNotEquals" => DateNotEquals,
            "DateLessThan" => DateLessThan,
            "DateLessThanEquals" => DateLessThanEquals,
            "DateGreaterThan" => DateGreaterThan,
            "DateGreaterThanEquals" => DateGreaterThanEquals,
            "Bool" => Bool,
            "IpAddress" => IpAddress,
            "NotIpAddress" => NotIpAddress,
            "Null" => Null,
            _ => return None,
        })
    }

    fn negated(self) -> bool {
        use Op::*;
        matches!(
            self,
            StringNotEquals
                | StringNotEqualsIgnoreCase
                | StringNotLike
                | NumericNotEquals
                | DateNotEquals
                | NotIpAddress
        )
    }
}

/// The S3 actions a policy may name (validated when it has no wildcard).
const ACTIONS: &[&str] = &[
    "AbortMultipartUpload",
    "CreateBucket",
    "DeleteBucket",
    "DeleteBucketPolicy",
    "DeleteObject",
    "DeleteObjectTagging",
    "DeleteObjectVersion",
    "DeleteObjectVersionTagging",
    "GetBucketAcl",
    "GetBucketCORS",
    "GetBucketLocation",
    "GetBucketOwnershipControls",
    "GetBucketPolicy",
    "GetBucketPolicyStatus",
    "GetBucketPublicAccessBlock",
    "GetBucketTagging",
    "GetBucketVersioning",
    "GetObject",
    "GetObjectAcl",
    "GetObjectAttributes",
    "GetObjectTagging",
    "GetObjectVersion",
    "GetObjectVersionAcl",
    "GetObjectVersionAttributes",
    "GetObjectVersionTagging",
    "ListAllMyBuckets",
    "ListBucket",
    "ListBucketMultipartUploads",
    "ListBucketVersions",
    "ListMultipartUploadParts",
    "PutBucketAcl",
    "PutBucketCORS",
    "PutBucketOwnershipControls",
    "PutBucketPolicy",
    "PutBucketPublicAccessBlock",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutObject",
    "PutObjectAcl",
    "PutObjectTagging",
    "PutObjectVersionAcl",
    "PutObjectVersionTagging",
    "PutLifecycleConfiguration",
    "GetLifecycleConfiguration",
    "PutEncryptionConfiguration",
    "GetEncryptionConfiguration",
    "PutBucketObjectLockConfiguration",
    "GetBucketObjectLockConfiguration",
    "PutObjectRetention",
    "GetObjectRetention",
    "PutObjectLegalHold",
    "GetObjectLegalHold",
    "BypassGovernanceRetention",
];

/// The IAM action an s3s operation needs (`ListObjectsV2` → `s3:ListBucket`).
pub(crate) fn action_of(op: &str) -> String {
    let name = match op {
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => "ListBucket",
        "ListObjectVersions" => "ListBucketVersions",
        "HeadObject" => "GetObject",
        "ListBuckets" => "ListAllMyBuckets",
        "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload"
        | "CopyObject"
        | "PostObject" => "PutObject",
        "ListParts" => "ListMultipartUploadParts",
        "ListMultipartUploads" => "ListBucketMultipartUploads",
        "DeleteObjects" => "DeleteObject",
        "PutBucketCors" | "DeleteBucketCors" => "PutBucketCORS",
        "GetBucketCors" => "GetBucketCORS",
        "DeleteBucketTagging" => "PutBucketTagging",
        "PutPublicAccessBlock" | "DeletePublicAccessBlock" => "PutBucketPublicAccessBlock",
        "GetPublicAccessBlock" => "GetBucketPublicAccessBlock",
        "DeleteBucketOwnershipControls" => "PutBucketOwnershipControls",
        "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => "PutLifecycleConfiguration",
        "GetBucketLifecycleConfiguration" => "GetLifecycleConfiguration",
        "PutObjectLockConfiguration" => "PutBucketObjectLockConfiguration",
        "GetObjectLockConfiguration" => "GetBucketObjectLockConfiguration",
        other => other,
    };
    format!("s3:{name}")
}

/// The action AWS names for an object request that names a version (`?versionId=`, or a copy
/// source with one): `s3:GetObject` becomes `s3:GetObjectVersion`, and so on. Actions without a
/// version form (PutObject, bucket actions) are returned unchanged.
pub(crate) fn versioned_action(action: &str) -> String {
    let name = action.strip_prefix("s3:").unwrap_or(action);
    let versioned = match name {
        "GetObject" => "GetObjectVersion",
        "DeleteObject" => "DeleteObjectVersion",
        "GetObjectTagging" => "GetObjectVersionTagging",
        "PutObjectTagging" => "PutObjectVersionTagging",
        "DeleteObjectTagging" => "DeleteObjectVersionTagging",
        "GetObjectAcl" => "GetObjectVersionAcl",
        "PutObjectAcl" => "PutObjectVersionAcl",
        "GetObjectAttributes" => "GetObjectVersionAttributes",
        _ => return action.to_owned(),
    };
    format!("s3:{versioned}")
}

/// The resource ARN of a bucket, or of an object in it.
pub(crate) fn resource_of(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("arn:aws:s3:::{bucket}/{k}"),
        None => format!("arn:aws:s3:::{bucket}"),
    }
}

/// Whether `value` matches `pattern`, where `*` stands for any run of characters (possibly
/// empty) and `?` for exactly one. Linear in practice: greedy with one backtrack point.
pub(crate) fn wildcard(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    // The last `*` seen and the value position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == v[vi])) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            // Let the star swallow one more character and retry.
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A JSON string or list of strings.
fn strings(v: &Value, what: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Bool(b) => Ok(b.to_string()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(bad(format!("Invalid {what} in policy"))),
            })
            .collect(),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        Value::Number(n) => Ok(vec![n.to_string()]),
        _ => Err(bad(format!("Invalid {what} in policy"))),
    }
}

fn principal(s: &str) -> Result<Principal, PolicyError> {
    if s == "*" {
        return Ok(Principal::Everyone);
    }
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Principal::AnyKey);
    }
    if let Some(rest) = s.strip_prefix("arn:aws:iam::") {
        let (_, res) = rest
            .split_once(':')
            .ok_or_else(|| bad("Invalid principal in policy"))?;
        if res == "root" {
            return Ok(Principal::AnyKey);
        }
        if let Some(k) = res.strip_prefix("user/") {
            // A path (`user/team/AK`) ends in the key id.
            let k = k.rsplit('/').next().unwrap_or(k);
            if !k.is_empty() {
                return Ok(Principal::Key(k.to_string()));
            }
        }
        return Err(bad("Invalid principal in policy"));
    }
    if !s.is_empty() && !s.contains([':', '/', '*']) {
        return Ok(Principal::Key(s.to_string()));
    }
    Err(bad("Invalid principal in policy"))
}

fn principals(v: &Value) -> Result<Vec<Principal>, PolicyError> {
    match v {
        Value::String(s) if s == "*" => Ok(vec![Principal::Everyone]),
        Value::Object(m) => {
            let mut out = Vec::new();
            for (k, v) in m {
                if k != "AWS" {
                    return Err(bad("Invalid principal in policy"));
                }
                for s in strings(v, "principal")? {
                    out.push(principal(&s)?);
                }
            }
            if out.is_empty() {
                return Err(bad("Invalid principal in policy"));
            }
            Ok(out)
        }
        _ => Err(bad("Invalid principal in policy")),
    }
}

fn check_action(a: &str) -> Result<String, PolicyError> {
    if a == "*" {
        return Ok("*".into());
    }
    let Some((svc, name)) = a.split_once(':') else {
        return Err(bad("Policy has invalid action"));
    };
    if !svc.eq_ignore_ascii_case("s3") || name.is_empty() {
        return Err(bad("Policy has invalid action"));
    }
    if !name.contains(['*', '?']) && !ACTIONS.iter().any(|k| k.eq_ignore_ascii_case(name)) {
        return Err(bad("Policy has invalid action"));
    }
    Ok(a.to_ascii_lowercase())
}

fn check_resource(r: &str, bucket: &str) -> Result<(), PolicyError> {
    let invalid = || bad("Policy has invalid resource");
    let rest = r.strip_prefix("arn:aws:s3:::").ok_or_else(invalid)?;
    let bucket_part = rest.split('/').next().unwrap_or(rest);
    // The resource must be in this bucket: its bucket part names it, possibly by wildcard.
    if bucket_part.is_empty() || !wildcard(bucket_part, bucket) {
        return Err(invalid());
    }
    Ok(())
}

const CONDITION_KEYS: &[&str] = &[
    "aws:sourceip",
    "aws:securetransport",
    "aws:currenttime",
    "aws:epochtime",
    "aws:username",
    "aws:principaltype",
    "aws:useragent",
    "aws:referer",
    "s3:prefix",
    "s3:delimiter",
    "s3:max-keys",
    "s3:x-amz-acl",
    "s3:x-amz-content-sha256",
    "s3:versionid",
    "s3:signatureversion",
    "s3:authtype",
];

fn condition(op_name: &str, key: &str, v: &Value) -> Result<Condition, PolicyError> {
    let (base, if_exists) = match op_name.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (op_name, false),
    };
    let op = Op::parse(base).ok_or_else(|| bad(format!("Invalid Condition type : {op_name}")))?;
    let lower = key.to_ascii_lowercase();
    if !CONDITION_KEYS.contains(&lower.as_str()) {
        return Err(bad(format!("Policy has an invalid condition key: {key}")));
    }
    let values = strings(v, "condition value")?;
    for val in &values {
        let ok = match op {
            Op::IpAddress | Op::NotIpAddress => parse_cidr(val).is_some(),
            Op::Bool | Op::Null => val == "true" || val == "false",
            Op::NumericEquals
            | Op::NumericNotEquals
            | Op::NumericLessThan
            | Op::NumericLessThanEquals
            | Op::NumericGreaterThan
            | Op::NumericGreaterThanEquals => val.parse::<f64>().is_ok(),
            Op::DateEquals
            | Op::DateNotEquals
            | Op::DateLessThan
            | Op::DateLessThanEquals
            | Op::DateGreaterThan
            | Op::DateGreaterThanEquals => parse_date(val).is_some(),
            _ => true,
        };
        if !ok {
            return Err(bad(format!(
                "Invalid value {val:?} for condition {op_name} on {key}"
            )));
        }
    }
    Ok(Condition {
        op,
        if_exists,
        key: lower,
        values,
    })
}

/// A CIDR block (or a single address), as (network, prefix length).
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((addr, len))
}

fn in_cidr(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// An ISO 8601 date (`2026-01-01T00:00:00Z`, or a date alone) or epoch seconds.
fn parse_date(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(d) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(d);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp(secs).ok();
    }
    let date =
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(date.midnight().assume_utc())
}

impl Policy {
    /// Parses and checks a PutBucketPolicy document for `bucket`.
    pub(crate) fn parse(text: &str, bucket: &str) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(bad("Policy exceeds the maximum allowed document size."));
        }
        let doc: Value =
            serde_json::from_str(text).map_err(|_| bad("This policy contains invalid Json"))?;
        let Value::Object(doc) = doc else {
            return Err(bad("This policy contains invalid Json"));
        };
        for k in doc.keys() {
            if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
                return Err(bad(format!("Unknown field {k}")));
            }
        }
        match doc.get("Version") {
            None => {}
            Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
            Some(_) => return Err(bad("Policy has an invalid version")),
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(a)) if !a.is_empty() => a.iter().collect::<Vec<_>>(),
            Some(s @ Value::Object(_)) => vec![s],
            _ => return Err(bad("Missing required field Statement")),
        };
        let statements = statements
            .into_iter()
            .map(|s| statement(s, bucket))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { statements })
    }

    /// A policy of Allow statements only, one per `(everyone, actions, resource)`: for
    /// `everyone` anonymous requests and every key, else every key of the cluster. This is
    /// how ACL grants are evaluated (`acl.rs` maps each grant onto such a statement).
    pub(crate) fn from_allows(allows: Vec<(bool, Vec<&str>, String)>) -> Self {
        let statements = allows
            .into_iter()
            .map(|(everyone, actions, resource)| Statement {
                allow: true,
                principals: (
                    false,
                    vec![if everyone {
                        Principal::Everyone
                    } else {
                        Principal::AnyKey
                    }],
                ),
                actions: (
                    false,
                    actions.iter().map(|a| a.to_ascii_lowercase()).collect(),
                ),
                resources: (false, vec![resource]),
                conditions: Vec::new(),
            })
            .collect();
        Self { statements }
    }

    /// What the policy says about `req`.
    pub(crate) fn evaluate(&self, req: &Request<'_>) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            if s.applies(req) {
                if !s.allow {
                    return Decision::Deny;
                }
                allowed = true;
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::Silent
        }
    }

    /// Whether the policy grants anything to everyone (AWS's "public" test): an Allow
    /// statement whose principal includes anonymous requests, not narrowed by a source
    /// address condition.
    pub(crate) fn is_public(&self) -> bool {
        self.statements.iter().any(|s| {
            s.allow
                && s.matches_principal(Who::Anonymous)
                && !s.conditions.iter().any(|c| {
                    c.key == "aws:sourceip"
                        && c.op == Op::IpAddress
                        && c.values
                            .iter()
                            .all(|v| parse_cidr(v).is_some_and(|(_, len)| len >= 8))
                })
        })
    }
}

fn statement(v: &Value, bucket: &str) -> Result<Statement, PolicyError> {
    let Value::Object(m) = v else {
        return Err(bad("Statement is not an object"));
    };
    for k in m.keys() {
        if !matches!(
            k.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(bad(format!("Unknown field {k}")));
        }
    }
    if let Some(sid) = m.get("Sid") {
        if !sid.is_string() {
            return Err(bad("Statement IDs (SID) must be strings"));
        }
    }
    let allow = match m.get("Effect").and_then(Value::as_str) {
        Some("Allow") => true,
        Some("Deny") => false,
        Some(_) => return Err(bad("Invalid effect")),
        None => return Err(bad("Missing required field Effect")),
    };
    let principals = match (m.get("Principal"), m.get("NotPrincipal")) {
        (Some(p), None) => (false, principals(p)?),
        (None, Some(p)) => (true, principals(p)?),
        (None, None) => return Err(bad("Missing required field Principal")),
        (Some(_), Some(_)) => return Err(bad("Statement has both Principal and NotPrincipal")),
    };
    let actions = match (m.get("Action"), m.get("NotAction")) {
        (Some(a), None) => (false, a),
        (None, Some(a)) => (true, a),
        (None, None) => return Err(bad("Missing required field Action")),
        (Some(_), Some(_)) => return Err(bad("Statement has both Action and NotAction")),
    };
    let actions = (
        actions.0,
        strings(actions.1, "action")?
            .iter()
            .map(|a| check_action(a))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let resources = match (m.get("Resource"), m.get("NotResource")) {
        (Some(r), None) => (false, strings(r, "resource")?),
        (None, Some(r)) => (true, strings(r, "resource")?),
        (None, None) => return Err(bad("Missing required field Resource")),
        (Some(_), Some(_)) => return Err(bad("Statement has both Resource and NotResource")),
    };
    for r in &resources.1 {
        check_resource(r, bucket)?;
    }
    let mut conditions = Vec::new();
    if let Some(c) = m.get("Condition") {
        let Value::Object(ops) = c else {
            return Err(bad("Invalid Condition block"));
        };
        for (op, keys) in ops {
            let Value::Object(keys) = keys else {
                return Err(bad(format!("Invalid Condition block for {op}")));
            };
            for (key, values) in keys {
                conditions.push(condition(op, key, values)?);
            }
        }
    }
    Ok(Statement {
        allow,
        principals,
        actions,
        resources,
        conditions,
    })
}

impl Statement {
    fn matches_principal(&self, who: Who<'_>) -> bool {
        let hit = self.principals.1.iter().any(|p| match (p, who) {
            (Principal::Everyone, _) => true,
            (Principal::AnyKey, Who::Key(_)) => true,
            (Principal::Key(k), Who::Key(w)) => k == w,
            _ => false,
        });
        hit != self.principals.0
    }

    fn applies(&self, req: &Request<'_>) -> bool {
        let action = req.action.to_ascii_lowercase();
        let action_hit = self.actions.1.iter().any(|a| wildcard(a, &action));
        let resource_hit = self.resources.1.iter().any(|r| wildcard(r, req.resource));
        self.matches_principal(req.who)
            && action_hit != self.actions.0
            && resource_hit != self.resources.0
            && self.conditions.iter().all(|c| c.holds(req.context))
    }
}

impl Condition {
    fn holds(&self, ctx: &BTreeMap<String, String>) -> bool {
        if self.op == Op::Null {
            let want_missing = self.values.iter().any(|v| v == "true");
            return ctx.contains_key(&self.key) != want_missing;
        }
        let Some(value) = ctx.get(&self.key) else {
            return self.if_exists || self.op.negated();
        };
        use Op::*;
        let any = |f: &dyn Fn(&str) -> bool| self.values.iter().any(|v| f(v));
        match self.op {
            StringEquals => any(&|v| v == value),
            StringNotEquals => !any(&|v| v == value),
            StringEqualsIgnoreCase => any(&|v| v.eq_ignore_ascii_case(value)),
            StringNotEqualsIgnoreCase => !any(&|v| v.eq_ignore_ascii_case(value)),
            StringLike => any(&|v| wildcard(v, value)),
            StringNotLike => !any(&|v| wildcard(v, value)),
            Bool => any(&|v| v.eq_ignore_ascii_case(value)),
            IpAddress | NotIpAddress => {
                let hit = value
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| any(&|v| parse_cidr(v).is_some_and(|c| in_cidr(ip, c))));
                hit == (self.op == IpAddress)
            }
            NumericEquals
            | NumericNotEquals
            | NumericLessThan
            | NumericLessThanEquals
            | NumericGreaterThan
            | NumericGreaterThanEquals => {
                let Ok(x) = value.parse::<f64>() else {
                    return false;
                };
                let hit = any(&|v| {
                    v.parse::<f64>().is_ok_and(|y| match self.op {
                        NumericEquals | NumericNotEquals => x == y,
                        NumericLessThan => x < y,
                        NumericLessThanEquals => x <= y,
                        NumericGreaterThan => x > y,
                        _ => x >= y,
                    })
                });
                hit != (self.op == NumericNotEquals)
            }
            DateEquals
            | DateNotEquals
            | DateLessThan
            | DateLessThanEquals
            | DateGreaterThan
            | DateGreaterThanEquals => {
                let Some(x) = parse_date(value) else {
                    return false;
                };
                let hit = any(&|v| {
                    parse_date(v).is_some_and(|y| match self.op {
                        DateEquals | DateNotEquals => x == y,
                        DateLessThan => x < y,
                        DateLessThanEquals => x <= y,
                        DateGreaterThan => x > y,
                        _ => x >= y,
                    })
                });
                hit != (self.op == DateNotEquals)
            }
            Null => unreachable_null(),
        }
    }
}

/// `Null` is answered before the value lookup.
fn unreachable_null() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference matcher: plain recursion.
    fn reference(p: &[char], v: &[char]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some('*'), _) => reference(&p[1..], v) || (!v.is_empty() && reference(p, &v[1..])),
            (Some('?'), Some(_)) => reference(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a == b => reference(&p[1..], &v[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn wildcard_agrees_with_the_reference(p in "[ab*?]{0,8}", v in "[ab]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let vc: Vec<char> = v.chars().collect();
            prop_assert_eq!(wildcard(&p, &v), reference(&pc, &vc));
        }

        #[test]
        fn a_literal_matches_itself(v in "[a-z/._-]{0,20}") {
            prop_assert!(wildcard(&v, &v));
            prop_assert!(wildcard("*", &v));
        }

        #[test]
        fn deny_always_wins(key in "[A-Z]{4}", action in prop::sample::select(vec!["s3:GetObject", "s3:PutObject", "s3:ListBucket"])) {
            let p = Policy::parse(&format!(r#"{{"Statement":[
                {{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}},
                {{"Effect":"Deny","Principal":{{"AWS":"{key}"}},"Action":"{action}","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}}]}}"#), "b").unwrap();
            let ctx = BTreeMap::new();
            let req = Request { who: Who::Key(&key), action, resource: "arn:aws:s3:::b/x", context: &ctx };
            prop_assert_eq!(p.evaluate(&req), Decision::Deny);
            let other = Request { who: Who::Key("OTHER1"), ..req.clone() };
            prop_assert_eq!(p.evaluate(&other), Decision::Allow);
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("arn:aws:s3:::b/data/*", "arn:aws:s3:::b/data/x/y"));
        assert!(!wildcard("arn:aws:s3:::b/data/*", "arn:aws:s3:::b/other"));
        assert!(wildcard("s3:get*", "s3:getobject"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "ac"));
        assert!(wildcard("*a*b*", "xxaxxbxx"));
    }

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const READ_PREFIX: &str = r#"{
        "Version": "2012-10-17",
        "Statement": [
          {"Sid": "list", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::000000000000:user/DATA"]},
           "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
           "Condition": {"StringLike": {"s3:prefix": ["team/*"]}}},
          {"Sid": "read", "Effect": "Allow", "Principal": {"AWS": "DATA"},
           "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/team/*"}
        ]}"#;

    #[test]
    fn read_only_prefix() {
        let p = Policy::parse(READ_PREFIX, "b").unwrap();
        assert!(!p.is_public());
        let c = ctx(&[("s3:prefix", "team/a")]);
        let r = |who, action, resource, c| Request {
            who,
            action,
            resource,
            context: c,
        };
        let data = Who::Key("DATA");
        assert_eq!(
            p.evaluate(&r(data, "s3:GetObject", "arn:aws:s3:::b/team/x", &c)),
            Decision::Allow
        );
        assert_eq!(
            p.evaluate(&r(data, "s3:GetObject", "arn:aws:s3:::b/other", &c)),
            Decision::Silent
        );
        assert_eq!(
            p.evaluate(&r(data, "s3:PutObject", "arn:aws:s3:::b/team/x", &c)),
            Decision::Silent
        );
        assert_eq!(
            p.evaluate(&r(data, "s3:ListBucket", "arn:aws:s3:::b", &c)),
            Decision::Allow
        );
        let none = ctx(&[]);
        assert_eq!(
            p.evaluate(&r(data, "s3:ListBucket", "arn:aws:s3:::b", &none)),
            Decision::Silent
        );
        assert_eq!(
            p.evaluate(&r(
                Who::Anonymous,
                "s3:GetObject",
                "arn:aws:s3:::b/team/x",
                &c
            )),
            Decision::Silent
        );
    }

    #[test]
    fn conditions() {
        let p = Policy::parse(
            r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*",
              "Condition":{"NotIpAddress":{"aws:SourceIp":["10.0.0.0/8","::1"]}}}}"#,
            "b",
        )
        .unwrap();
        let req = |ip: &str| {
            let c = ctx(&[("aws:sourceip", ip)]);
            p.evaluate(&Request {
                who: Who::Key("K"),
                action: "s3:GetObject",
                resource: "arn:aws:s3:::b/x",
                context: &c,
            })
        };
        assert_eq!(req("10.1.2.3"), Decision::Silent);
        assert_eq!(req("::1"), Decision::Silent);
        assert_eq!(req("::ffff:10.0.0.1"), Decision::Silent);
        assert_eq!(req("192.168.1.1"), Decision::Deny);

        let p = Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*",
              "Condition":{"Bool":{"aws:SecureTransport":"true"},"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}}]}"#,
            "b",
        )
        .unwrap();
        assert!(p.is_public());
        let eval = |c: &BTreeMap<String, String>| {
            p.evaluate(&Request {
                who: Who::Anonymous,
                action: "s3:GetObject",
                resource: "arn:aws:s3:::b/x",
                context: c,
            })
        };
        let now = "2026-11-30T00:00:00Z";
        assert_eq!(
            eval(&ctx(&[
                ("aws:securetransport", "true"),
                ("aws:currenttime", now)
            ])),
            Decision::Allow
        );
        assert_eq!(
            eval(&ctx(&[
                ("aws:securetransport", "false"),
                ("aws:currenttime", now)
            ])),
            Decision::Silent
        );
        assert_eq!(
            eval(&ctx(&[
                ("aws:securetransport", "true"),
                ("aws:currenttime", "2031-01-01T00:00:00Z")
            ])),
            Decision::Silent
        );
    }

    #[test]
    fn malformed_policies() {
        let cases = [
            ("not json", "This policy contains invalid Json"),
            (r#"{"Statement":[]}"#, "Missing required field Statement"),
            (
                r#"{"Version":"2020-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
                "Policy has an invalid version",
            ),
            (
                r#"{"Statement":{"Effect":"Maybe","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
                "Invalid effect",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:Fly","Resource":"arn:aws:s3:::b/*"}}"#,
                "Policy has invalid action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}}"#,
                "Policy has invalid resource",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"x"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
                "Invalid principal in policy",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
                "Missing required field Principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"nope"}}}}"#,
                "Invalid value \"nope\" for condition IpAddress on aws:SourceIp",
            ),
        ];
        for (text, msg) in cases {
            assert_eq!(Policy::parse(text, "b").unwrap_err().0, msg, "{text}");
        }
    }

    #[test]
    fn actions_of_operations() {
        assert_eq!(action_of("ListObjectsV2"), "s3:ListBucket");
        assert_eq!(action_of("GetObject"), "s3:GetObject");
        assert_eq!(action_of("HeadObject"), "s3:GetObject");
        assert_eq!(action_of("UploadPart"), "s3:PutObject");
        assert_eq!(action_of("PutBucketPolicy"), "s3:PutBucketPolicy");
        // Every operation maps onto a known action name.
        for op in [
            "ListObjects",
            "ListObjectVersions",
            "DeleteObjects",
            "GetBucketCors",
            "DeletePublicAccessBlock",
            "GetBucketOwnershipControls",
            "GetObjectAcl",
            "ListMultipartUploads",
            "ListParts",
        ] {
            let a = action_of(op);
            assert!(check_action(&a).is_ok(), "{op} -> {a}");
            let v = versioned_action(&a);
            assert!(check_action(&v).is_ok(), "{op} -> {v}");
        }
    }

    #[test]
    fn requests_naming_a_version_need_the_version_actions() {
        for (op, want) in [
            ("GetObject", "s3:GetObjectVersion"),
            ("HeadObject", "s3:GetObjectVersion"),
            ("DeleteObject", "s3:DeleteObjectVersion"),
            ("GetObjectTagging", "s3:GetObjectVersionTagging"),
            ("PutObjectTagging", "s3:PutObjectVersionTagging"),
            ("DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
            ("GetObjectAcl", "s3:GetObjectVersionAcl"),
            ("PutObjectAcl", "s3:PutObjectVersionAcl"),
            ("GetObjectAttributes", "s3:GetObjectVersionAttributes"),
            ("PutObject", "s3:PutObject"),
            ("ListObjectVersions", "s3:ListBucketVersions"),
        ] {
            assert_eq!(versioned_action(&action_of(op)), want, "{op}");
        }
        // A policy allowing GetObject does not allow GetObjectVersion.
        let p = Policy::parse(
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
            "b",
        )
        .unwrap();
        let ctx = BTreeMap::new();
        let req = |action| Request {
            who: Who::Key("K"),
            action,
            resource: "arn:aws:s3:::b/x",
            context: &ctx,
        };
        assert_eq!(p.evaluate(&req("s3:GetObject")), Decision::Allow);
        assert_eq!(p.evaluate(&req("s3:GetObjectVersion")), Decision::Silent);
    }
}
