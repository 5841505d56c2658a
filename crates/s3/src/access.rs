//! Authorization of every S3 request (s3s's `S3Access` hook, run after the signature is
//! verified and before the body is read): which permission the operation needs on which
//! bucket, decided by the one rule set every front end shares (`cairn_meta::access`).
//!
//! Read: Get*/Head*/List* on a bucket or object. Write: every other object operation, and
//! DeleteObjects. Owner: every other bucket operation (delete, settings). CreateBucket needs a
//! key that may create buckets; CopyObject/UploadPartCopy also need Read on the source bucket.
//! ListBuckets is open to any active key and lists only the buckets the key can see.

use std::sync::Arc;

use cairn_meta::access;
use cairn_meta::model::{AccessKeyRecord, BucketRecord, KeyStatus, Permission};
use cairn_meta::secrets::Keys;
use cairn_object::ObjectService;
use s3s::access::{S3Access, S3AccessContext};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};

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

fn denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

/// The S3 access hook: `inner` (the metrics recorder, which also requires a signature) runs
/// first, then the key's permissions are checked.
pub(crate) struct KeyAccess<A> {
    inner: A,
    keys: Option<Keys>,
    objects: ObjectService,
}

impl<A> KeyAccess<A> {
    pub(crate) fn new(inner: A, keys: Option<Keys>, objects: ObjectService) -> Self {
        Self {
            inner,
            keys,
            objects,
        }
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
        let Some(keys) = &self.keys else {
            // Only the configured root key can have signed: it may do everything.
            return Ok(());
        };
        let access_key = match cx.credentials() {
            Some(c) => c.access_key.clone(),
            None => return Err(s3_error!(AccessDenied, "Signature is required")),
        };
        let key = match keys.resolve(&access_key) {
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
        let op = cx.s3_op().name();
        let copy_source = cx
            .headers()
            .get("x-amz-copy-source")
            .and_then(|v| v.to_str().ok())
            .and_then(copy_source_bucket);
        let (bucket, on_object) = match cx.s3_path() {
            S3Path::Root => {
                return if op == "ListBuckets" || key.root {
                    Ok(())
                } else {
                    Err(denied())
                }
            }
            S3Path::Bucket { bucket } => (bucket.to_string(), false),
            S3Path::Object { bucket, .. } => (bucket.to_string(), true),
        };
        if op == "CreateBucket" {
            return if access::may_create_bucket(&key, &bucket) {
                Ok(())
            } else {
                tracing::info!(%access_key, %bucket, "bucket creation refused");
                Err(denied())
            };
        }
        self.check_bucket(&key, &bucket, needed(op, on_object))
            .await?;
        if matches!(op, "CopyObject" | "UploadPartCopy") {
            if let Some(src) = copy_source {
                self.check_bucket(&key, &src, Permission::Read).await?;
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
    }
}
