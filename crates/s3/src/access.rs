//! Authorization of every S3 request (s3s's `S3Access` hook, run after the signature is
//! verified and before the body is read): which permission the operation needs on which
//! bucket, decided by the one rule set every front end shares (`cairn_meta::access`).
//!
//! Read: Get*/Head*/List* on a bucket or object. Write: every other object operation, and
//! DeleteObjects. Owner: every other bucket operation (delete, settings). CreateBucket needs a
//! key that may create buckets; CopyObject/UploadPartCopy also need Read on the source bucket.
//! ListBuckets is open to any active key and lists only the buckets the key can see.
//!
//! Bucket policies (`policy.rs`) are evaluated on every bucket request together with the
//! grants: an explicit Deny refuses; otherwise the request is allowed when the key's grants
//! allow it or a policy statement does (AWS's same-account rule). Anonymous requests are
//! allowed only by a policy statement whose principal is `*`, and not while the bucket's
//! `RestrictPublicBuckets` is on. Root keys are not bound by grants, but a policy's explicit
//! Deny applies to them too — except on Get/Put/DeleteBucketPolicy, so an operator can always
//! repair a policy that locks everyone out.
//!
//! ACL headers (`x-amz-acl`, `x-amz-grant-*`) are checked here, where the bucket's ownership
//! controls are known: under `BucketOwnerEnforced` only `private` and
//! `bucket-owner-full-control` pass (they change nothing), other ACLs are
//! AccessControlListNotSupported; with ACLs enabled a public ACL is AccessDenied while
//! BlockPublicAcls is on. Stored ACLs (`acl.rs`) are evaluated as Allow statements after the
//! policy and the key's grants, while ACLs are enabled and IgnorePublicAcls is off: the
//! bucket's ACL, then the ACL of the object version a read or ACL request names.
//!
//! A request that names a version (`?versionId=`, or a copy source with one) is authorized
//! as AWS names it: `s3:GetObjectVersion`, `s3:DeleteObjectVersion`,
//! `s3:Get/Put/DeleteObjectVersionTagging`, `s3:Get/PutObjectVersionAcl`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use cairn_meta::access;
use cairn_meta::model::{AccessKeyRecord, BucketRecord, KeyStatus, Permission};
use cairn_meta::secrets::Keys;
use cairn_meta::versions::VersionEntry;
use cairn_object::{ObjectError, ObjectService, ReadConsistency};
use s3s::access::{S3Access, S3AccessContext};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};

use crate::bucket_access::{AccessCache, BucketAccess};
use crate::policy::{self, Decision, Who};

/// The connection a request came on, left in its extensions by the listener.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// The authenticated key of a request, left in its extensions for the operations that filter
/// what they return (ListBuckets).
#[derive(Clone)]
pub(crate) struct Principal(pub(crate) Arc<AccessKeyRecord>);

/// Whether the request's key may see `bucket` in a listing. Without a principal (no key
/// directory: the configured root key only) everything is visible.
pub(crate) fn visible(ext: &http::Extensions, bucket: &BucketRecord) -> bool {
    ext.get::<Principal>()
        .is_none_or(|p| access::sees(&p.0, bucket))
}

/// The access key that signed a request, to record as the owner of a bucket it creates.
pub(crate) fn owner_of(req_credentials: Option<&s3s::auth::Credentials>) -> Option<&str> {
    req_credentials.map(|c| c.access_key.as_str())
}

/// The permission an operation needs on its bucket.
pub(crate) fn needed(op: &str, on_object: bool) -> Permission {
    if op.starts_with("Get") || op.starts_with("Head") || op.starts_with("List") {
        Permission::Read
    } else if on_object || op == "DeleteObjects" || op == "PostObject" {
        Permission::Write
    } else {
        Permission::Owner
    }
}

/// The bucket named by an `x-amz-copy-source` header (`[/]bucket/key[?versionId=..]`).
pub(crate) fn copy_source_bucket(header: &str) -> Option<String> {
    let s = header.trim_start_matches('/');
    let bucket = s.split('/').next()?;
    (!bucket.is_empty()).then(|| bucket.to_string())
}

/// The (decoded) key named by an `x-amz-copy-source` header.
fn copy_source_key(header: &str) -> Option<String> {
    let s = header.trim_start_matches('/');
    let (_, rest) = s.split_once('/')?;
    let key = rest.split('?').next().unwrap_or(rest);
    Some(
        percent_encoding::percent_decode_str(key)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// The (decoded) `versionId` of a query string, if it names one.
fn version_param(query: &str) -> Option<String> {
    query.split('&').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k == "versionId").then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Canned ACLs that change nothing: the bucket's owner holds every object anyway.
fn harmless_acl(v: &str) -> bool {
    v.eq_ignore_ascii_case("private") || v.eq_ignore_ascii_case("bucket-owner-full-control")
}

fn public_acl(v: &str) -> bool {
    v.starts_with("public-") || v == "authenticated-read"
}

/// Checks the ACL headers of a request against the bucket's ownership controls and public
/// access block: under `BucketOwnerEnforced` only ACLs that change nothing pass
/// (AccessControlListNotSupported); a public ACL is AccessDenied under BlockPublicAcls. The
/// operation parses and stores the ACL (and refuses grantees Cairn cannot enforce).
fn check_acl_headers(headers: &http::HeaderMap, access: &BucketAccess) -> S3Result<()> {
    let canned = headers
        .get("x-amz-acl")
        .map(|v| v.to_str().unwrap_or("").trim().to_string());
    let grants = headers
        .keys()
        .any(|n| n.as_str().starts_with("x-amz-grant-"));
    if canned.as_deref().is_none_or(harmless_acl) && !grants {
        return Ok(());
    }
    if access.acls_disabled() {
        return Err(s3_error!(
            AccessControlListNotSupported,
            "The bucket does not allow ACLs"
        ));
    }
    if access.block().block_public_acls && public_acl_headers(headers) {
        return Err(denied());
    }
    Ok(())
}

/// Whether a request's ACL headers grant anything to a group (public in AWS's sense).
fn public_acl_headers(headers: &http::HeaderMap) -> bool {
    let canned = headers
        .get("x-amz-acl")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| public_acl(v.trim()));
    let groups = headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("x-amz-grant-"))
        .any(|(_, v)| {
            let v = v.to_str().unwrap_or("");
            v.contains(crate::acl::ALL_USERS_URI) || v.contains(crate::acl::AUTHENTICATED_USERS_URI)
        });
    canned || groups
}

/// The condition keys of a request (`policy.rs` names them in lower case).
fn condition_context(cx: &S3AccessContext<'_>, conn: Option<ConnInfo>) -> BTreeMap<String, String> {
    let mut c = BTreeMap::new();
    let now = time::OffsetDateTime::now_utc();
    if let Ok(t) = now.format(&time::format_description::well_known::Rfc3339) {
        c.insert("aws:currenttime".into(), t);
    }
    c.insert("aws:epochtime".into(), now.unix_timestamp().to_string());
    if let Some(conn) = conn {
        c.insert(
            "aws:sourceip".into(),
            conn.peer.ip().to_canonical().to_string(),
        );
        c.insert("aws:securetransport".into(), conn.tls.to_string());
    }
    match cx.credentials() {
        Some(cred) => {
            c.insert("aws:username".into(), cred.access_key.clone());
            c.insert("aws:principaltype".into(), "User".into());
        }
        None => {
            c.insert("aws:principaltype".into(), "Anonymous".into());
        }
    }
    for (header, key) in [
        ("user-agent", "aws:useragent"),
        ("referer", "aws:referer"),
        ("x-amz-acl", "s3:x-amz-acl"),
        ("x-amz-content-sha256", "s3:x-amz-content-sha256"),
    ] {
        if let Some(v) = cx.headers().get(header).and_then(|v| v.to_str().ok()) {
            c.insert(key.into(), v.to_string());
        }
    }
    let query = cx.uri().query().unwrap_or("");
    let is_list = cx.s3_op().name().starts_with("List");
    if is_list {
        // AWS evaluates a listing without a prefix as the empty prefix.
        c.insert("s3:prefix".into(), String::new());
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        let key = match k {
            "prefix" if is_list => "s3:prefix",
            "delimiter" if is_list => "s3:delimiter",
            "max-keys" if is_list => "s3:max-keys",
            "versionId" => "s3:versionid",
            _ => continue,
        };
        c.insert(key.into(), v);
    }
    let presigned = query.contains("X-Amz-Signature=");
    c.insert(
        "s3:authtype".into(),
        if presigned {
            "REST-QUERY-STRING"
        } else {
            "REST-HEADER"
        }
        .into(),
    );
    c
}

fn denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

/// What an ACL is asked about: the request's bucket, object and version, and its action.
struct AclTarget<'a> {
    bucket: &'a str,
    object: Option<&'a str>,
    version: Option<&'a str>,
    action: &'a str,
}

/// The S3 access hook: `inner` (the metrics recorder) runs first, then the key's permissions
/// and the bucket's policy are checked.
pub(crate) struct KeyAccess<A> {
    inner: A,
    keys: Option<Keys>,
    objects: ObjectService,
    cache: Arc<AccessCache>,
}

impl<A> KeyAccess<A> {
    pub(crate) fn new(
        inner: A,
        keys: Option<Keys>,
        objects: ObjectService,
        cache: Arc<AccessCache>,
    ) -> Self {
        Self {
            inner,
            keys,
            objects,
            cache,
        }
    }

    async fn bucket_access(&self, bucket: &str) -> S3Result<Arc<BucketAccess>> {
        self.cache.get(bucket).await.map_err(|e| {
            tracing::warn!(bucket, error = %e, "bucket settings unavailable for the access check");
            s3_error!(
                ServiceUnavailable,
                "Please try again: bucket settings are unavailable"
            )
        })
    }

    /// The whole decision for `key` (None: anonymous) doing `action` on `bucket[/object]`.
    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        key: Option<&AccessKeyRecord>,
        access: &BucketAccess,
        bucket: &str,
        object: Option<&str>,
        version: Option<&str>,
        action: &str,
        need: Permission,
        context: &BTreeMap<String, String>,
    ) -> S3Result<()> {
        let root = key.is_some_and(|k| k.root);
        // An operator can always repair a policy that locks everyone out.
        let policy_op = matches!(
            action,
            "s3:GetBucketPolicy" | "s3:PutBucketPolicy" | "s3:DeleteBucketPolicy"
        );
        if access.broken && !root {
            return Err(denied());
        }
        let resource = policy::resource_of(bucket, object);
        let who = key.map_or(Who::Anonymous, |k| Who::Key(k.access_key.as_str()));
        let decision = match &access.policy {
            Some(p) if !(root && policy_op) => p.evaluate(&policy::Request {
                who,
                action,
                resource: &resource,
                context,
            }),
            _ => Decision::Silent,
        };
        let target = AclTarget {
            bucket,
            object,
            version,
            action,
        };
        match (decision, key) {
            (Decision::Deny, _) => {
                tracing::info!(bucket, action, who = ?who, "request refused by the bucket policy");
                Err(denied())
            }
            (Decision::Allow, Some(_)) => Ok(()),
            (Decision::Allow, None) if !access.block().restrict_public_buckets => Ok(()),
            (_, None) => match self.acl_allows(access, who, &target, context).await? {
                true => Ok(()),
                false => Err(denied()),
            },
            (Decision::Silent, Some(k)) => match self.check_bucket(k, bucket, need).await {
                Ok(()) => Ok(()),
                Err(e) => match self.acl_allows(access, who, &target, context).await? {
                    true => Ok(()),
                    false => Err(e),
                },
            },
        }
    }

    /// Whether the ACLs allow `who` the request: the bucket's ACL, then (for the actions an
    /// object ACL can allow) the ACL of the object version it names. Only consulted when
    /// neither the policy nor the key's grants allow it, so allowed requests pay no lookup.
    async fn acl_allows(
        &self,
        access: &BucketAccess,
        who: Who<'_>,
        t: &AclTarget<'_>,
        context: &BTreeMap<String, String>,
    ) -> S3Result<bool> {
        if !access.acls_in_effect() {
            return Ok(false);
        }
        let resource = policy::resource_of(t.bucket, t.object);
        let allows = |p: &policy::Policy| {
            p.evaluate(&policy::Request {
                who,
                action: t.action,
                resource: &resource,
                context,
            }) == Decision::Allow
        };
        if access.acl.as_deref().is_some_and(allows) {
            return Ok(true);
        }
        let Some(object) = t.object else {
            return Ok(false);
        };
        if !crate::acl::object_acl_applies(t.action) {
            return Ok(false);
        }
        let record = match t.version {
            None => self.objects.head_object(t.bucket, object).await,
            Some(v) => self
                .objects
                .get_version(t.bucket, object, v, ReadConsistency::Linearizable)
                .await
                .and_then(|e| match e {
                    VersionEntry::Object(r) => Ok(r),
                    VersionEntry::Marker(_) => Err(ObjectError::NoSuchVersion),
                }),
        };
        let record = match record {
            Ok(r) => r,
            // Nothing to grant: refused like any request without a permission (an anonymous
            // caller learns nothing about which keys exist).
            Err(
                ObjectError::NoSuchKey | ObjectError::NoSuchVersion | ObjectError::NoSuchBucket,
            ) => return Ok(false),
            Err(e) => {
                tracing::warn!(bucket = t.bucket, error = %e, "object ACL unavailable for the access check");
                return Err(s3_error!(
                    ServiceUnavailable,
                    "Please try again: the object's ACL is unavailable"
                ));
            }
        };
        Ok(!record.headers.acl.is_empty()
            && allows(&crate::acl::to_policy(
                t.bucket,
                Some(object),
                &record.headers.acl,
            )))
    }

    /// `need` on `bucket`: by the key's grants, else as the bucket's owner (read from the
    /// system group only when the grants do not already decide).
    async fn check_bucket(
        &self,
        key: &AccessKeyRecord,
        bucket: &str,
        need: Permission,
    ) -> S3Result<()> {
        if !access::needs_owner_lookup(key, bucket, need) {
            return Ok(());
        }
        let owner = self
            .objects
            .head_bucket(bucket)
            .await
            .ok()
            .and_then(|b| b.owner);
        if access::allows(key, bucket, need, owner.as_deref()) {
            Ok(())
        } else {
            tracing::info!(access_key = %key.access_key, bucket, need = need.as_str(), "request refused: no grant");
            Err(denied())
        }
    }
}

#[async_trait::async_trait]
impl<A: S3Access> S3Access for KeyAccess<A> {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        self.inner.check(cx).await?;
        let op = cx.s3_op().name().to_owned();
        let op = op.as_str();
        let (bucket, object) = match cx.s3_path() {
            S3Path::Root => (None, None),
            S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
            S3Path::Object { bucket, key } => (Some(bucket.to_string()), Some(key.to_string())),
        };
        if op == "CreateBucket" {
            let acl = cx.headers().get("x-amz-acl").and_then(|v| v.to_str().ok());
            let grants = cx
                .headers()
                .keys()
                .any(|n| n.as_str().starts_with("x-amz-grant-"));
            // ACLs need ownership other than the default BucketOwnerEnforced, and a new bucket
            // blocks public ACLs (AWS: set the ACL after removing the block).
            let enforced = cx
                .headers()
                .get("x-amz-object-ownership")
                .and_then(|v| v.to_str().ok())
                .is_none_or(|o| o.trim() == "BucketOwnerEnforced");
            if grants || acl.is_some_and(|a| !harmless_acl(a.trim())) {
                if enforced {
                    return Err(s3_error!(
                        InvalidBucketAclWithObjectOwnership,
                        "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
                    ));
                }
                if public_acl_headers(cx.headers()) {
                    return Err(crate::error::custom_error(
                        "InvalidBucketAclWithBlockPublicAccessError",
                        "Bucket cannot have public ACLs set with BlockPublicAccess enabled",
                        http::StatusCode::BAD_REQUEST,
                    ));
                }
            }
        }
        // Settings of the bucket the request acts on (not for CreateBucket: none yet).
        let access = match &bucket {
            Some(b) if op != "CreateBucket" => {
                let a = self.bucket_access(b).await?;
                check_acl_headers(cx.headers(), &a)?;
                Some(a)
            }
            _ => None,
        };
        let Some(keys) = &self.keys else {
            // Only the configured root key can have signed: it may do everything.
            return match cx.credentials() {
                Some(_) => {
                    cx.extensions_mut().insert(crate::lock::BypassAllowed(true));
                    Ok(())
                }
                None => Err(s3_error!(AccessDenied, "Signature is required")),
            };
        };
        let key = match cx.credentials() {
            None => None,
            Some(c) => {
                let key = match keys.resolve(&c.access_key) {
                    Some(k) => Arc::new(k.record),
                    None => {
                        return Err(s3_error!(
                            InvalidAccessKeyId,
                            "The AWS Access Key Id you provided does not exist in our records."
                        ))
                    }
                };
                match key.status {
                    KeyStatus::Active => {}
                    KeyStatus::Disabled => {
                        return Err(s3_error!(AccessDenied, "The access key is disabled"))
                    }
                    KeyStatus::Deleted => {
                        return Err(s3_error!(
                            InvalidAccessKeyId,
                            "The AWS Access Key Id you provided does not exist in our records."
                        ))
                    }
                }
                cx.extensions_mut().insert(Principal(key.clone()));
                Some(key)
            }
        };
        let copy_source = cx
            .headers()
            .get("x-amz-copy-source")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (Some(bucket), Some(access)) = (bucket, access) else {
            // The service root (ListBuckets) or CreateBucket: keys only, never anonymous.
            let Some(key) = key else {
                return Err(s3_error!(AccessDenied, "Signature is required"));
            };
            if op == "CreateBucket" {
                let bucket = match cx.s3_path() {
                    S3Path::Bucket { bucket } => bucket.to_string(),
                    _ => return Err(denied()),
                };
                return if access::may_create_bucket(&key, &bucket) {
                    Ok(())
                } else {
                    tracing::info!(access_key = %key.access_key, %bucket, "bucket creation refused");
                    Err(denied())
                };
            }
            return if op == "ListBuckets" || key.root {
                Ok(())
            } else {
                Err(denied())
            };
        };
        let conn = cx.extensions_mut().get::<ConnInfo>().copied();
        let context = condition_context(cx, conn);
        // A request naming a version is authorized as AWS names it (s3:GetObjectVersion...).
        let version = object
            .as_ref()
            .and_then(|_| version_param(cx.uri().query().unwrap_or("")));
        let action = match version {
            Some(_) => policy::versioned_action(&policy::action_of(op)),
            None => policy::action_of(op),
        };
        self.decide(
            key.as_deref(),
            &access,
            &bucket,
            object.as_deref(),
            version.as_deref(),
            &action,
            needed(op, object.is_some()),
            &context,
        )
        .await?;
        // Object lock: a request that asks to bypass GOVERNANCE retention learns here whether
        // it may (`s3:BypassGovernanceRetention`: root, the bucket's owner or an owner grant,
        // or a policy Allow; a policy Deny wins). Not refused here: AWS refuses only when a
        // GOVERNANCE-locked version is actually in the way, which the state machine decides.
        if matches!(op, "DeleteObject" | "DeleteObjects" | "PutObjectRetention")
            && cx
                .headers()
                .get("x-amz-bypass-governance-retention")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        {
            let allowed = self
                .decide(
                    key.as_deref(),
                    &access,
                    &bucket,
                    object.as_deref(),
                    version.as_deref(),
                    "s3:BypassGovernanceRetention",
                    Permission::Owner,
                    &context,
                )
                .await
                .is_ok();
            cx.extensions_mut()
                .insert(crate::lock::BypassAllowed(allowed));
        }
        if matches!(op, "CopyObject" | "UploadPartCopy") {
            if let Some(header) = copy_source {
                if let Some(src) = copy_source_bucket(&header) {
                    let src_key = copy_source_key(&header);
                    let src_access = self.bucket_access(&src).await?;
                    let src_version = header.split_once('?').and_then(|(_, q)| version_param(q));
                    let src_action = match src_version {
                        Some(_) => "s3:GetObjectVersion",
                        None => "s3:GetObject",
                    };
                    self.decide(
                        key.as_deref(),
                        &src_access,
                        &src,
                        src_key.as_deref(),
                        src_version.as_deref(),
                        src_action,
                        Permission::Read,
                        &context,
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_permissions() {
        assert_eq!(needed("GetObject", true), Permission::Read);
        assert_eq!(needed("HeadObject", true), Permission::Read);
        assert_eq!(needed("ListObjectsV2", false), Permission::Read);
        assert_eq!(needed("HeadBucket", false), Permission::Read);
        assert_eq!(needed("PutObject", true), Permission::Write);
        assert_eq!(needed("DeleteObject", true), Permission::Write);
        assert_eq!(needed("CompleteMultipartUpload", true), Permission::Write);
        assert_eq!(needed("DeleteObjects", false), Permission::Write);
        assert_eq!(needed("DeleteBucket", false), Permission::Owner);
        assert_eq!(needed("PutBucketPolicy", false), Permission::Owner);
    }

    #[test]
    fn copy_sources_name_their_bucket() {
        assert_eq!(copy_source_bucket("/src/a/b.txt").as_deref(), Some("src"));
        assert_eq!(
            copy_source_bucket("src/k?versionId=1").as_deref(),
            Some("src")
        );
        assert_eq!(copy_source_bucket("/"), None);
        assert_eq!(version_param("versionId=1&x=2").as_deref(), Some("1"));
        assert_eq!(version_param("x-id=GetObject"), None);
        assert_eq!(
            copy_source_key("/src/a%20b.txt?versionId=1").as_deref(),
            Some("a b.txt")
        );
    }

    #[test]
    fn acl_headers_follow_the_ownership_controls() {
        use cairn_meta::bucket_config::{ObjectOwnership, PublicAccessBlock};
        let mut h = http::HeaderMap::new();
        let enforced = BucketAccess {
            ownership: Some(ObjectOwnership::BucketOwnerEnforced),
            block: Some(PublicAccessBlock::all()),
            ..BucketAccess::default()
        };
        assert!(check_acl_headers(&h, &enforced).is_ok());
        h.insert("x-amz-acl", "bucket-owner-full-control".parse().unwrap());
        assert!(check_acl_headers(&h, &enforced).is_ok());
        h.insert("x-amz-acl", "public-read".parse().unwrap());
        let e = check_acl_headers(&h, &enforced).unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::AccessControlListNotSupported);
        let writer = BucketAccess {
            ownership: Some(ObjectOwnership::ObjectWriter),
            block: Some(PublicAccessBlock::all()),
            ..BucketAccess::default()
        };
        let e = check_acl_headers(&h, &writer).unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::AccessDenied);
        let open = BucketAccess {
            ownership: Some(ObjectOwnership::ObjectWriter),
            block: None,
            ..BucketAccess::default()
        };
        assert!(check_acl_headers(&h, &open).is_ok());
        // IgnorePublicAcls alone lets the ACL be stored (it then has no effect).
        let ignored = BucketAccess {
            ownership: Some(ObjectOwnership::BucketOwnerPreferred),
            block: Some(PublicAccessBlock {
                ignore_public_acls: true,
                ..PublicAccessBlock::default()
            }),
            ..BucketAccess::default()
        };
        assert!(check_acl_headers(&h, &ignored).is_ok());
        assert!(!ignored.acls_in_effect());
        assert!(open.acls_in_effect());
        assert!(!enforced.acls_in_effect());
        let mut g = http::HeaderMap::new();
        g.insert(
            "x-amz-grant-read",
            format!("uri=\"{}\"", crate::acl::AUTHENTICATED_USERS_URI)
                .parse()
                .unwrap(),
        );
        assert!(public_acl_headers(&g));
        let e = check_acl_headers(&g, &writer).unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::AccessDenied);
    }
}
