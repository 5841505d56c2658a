//! The S3 API of Cairn: an [`s3s::S3`] implementation over [`cairn_object::ObjectService`],
//! and the HTTP/1.1 listener that serves it.
//!
//! Layout, one file per concept:
//! - `lib.rs` — public API and wiring: settings, [`build_service`], the trait impl that
//!   delegates each operation to its module.
//! - `serve.rs` — the TCP listener: TCP_NODELAY, request ids, error-XML fix-ups, metrics.
//! - `guard.rs` — request hygiene checked on the head before s3s: unimplemented protection
//!   headers, form uploads, SigV2, presigned expiry, unsigned sensitive headers.
//! - `sigv2.rs` — constant-time SigV2 verification ahead of s3s (when SigV2 is enabled).
//! - `host.rs` — virtual-host-style addressing.
//! - `bucket.rs`, `object.rs`, `list.rs`, `multipart.rs`, `copy.rs` — the operations.
//! - `lock.rs` — object lock: bucket configuration, retention, legal hold, lock headers.
//! - `tagging.rs` — object and bucket tags, `x-amz-tagging` and `x-amz-tagging-count`.
//! - `lifecycle.rs` — bucket lifecycle configuration checks and operations, `x-amz-expiration`.
//! - `cors.rs` — CORS configuration checks and rule matching (pure); `cors_http.rs` — the CORS
//!   operations, preflight answers and CORS response headers.
//! - `post.rs` — POST Object (browser form uploads) on top of s3s's policy checks.
//! - `checksum.rs` — `Content-MD5` and `x-amz-checksum-*` selection and verification.
//! - `attributes.rs` — GetObjectAttributes.
//! - `conditional.rs` — RFC 7232 conditional request evaluation.
//! - `policy.rs` — bucket policy parsing and evaluation (pure); `bucket_access.rs` — the
//!   per-bucket cache of policy, public access block and ownership controls;
//!   `policy_http.rs` — the policy, public access block, ownership controls and ACL
//!   operations.
//! - `error.rs` — the one place `ObjectError` becomes an S3 error.
//! - `validate.rs` — object key rules.
//! - `metrics.rs` — Prometheus metrics and the per-request operation recorder.

mod access;
mod acl;
mod attributes;
mod auth;
mod bucket;
mod bucket_access;
mod checksum;
mod conditional;
mod consistency;
mod copy;
mod cors;
mod cors_http;
mod error;
mod guard;
mod host;
mod lifecycle;
mod limit;
mod list;
mod lock;
mod metrics;
mod multipart;
mod object;
mod policy;
mod policy_http;
mod post;
mod serve;
mod sigv2;
mod sse;
mod sse_bucket;
mod tagging;
mod validate;

#[cfg(test)]
mod fuzz_tests;

use std::sync::Arc;

use cairn_object::ObjectService;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, S3};

pub use cors_http::Cors;
pub use limit::{Limit, S3Limits};
pub use metrics::S3Metrics;
pub use serve::{serve, ServeOptions};
pub use sigv2::{SecretLookup, SigV2Verifier};

/// Settings of the S3 front end.
#[derive(Clone)]
pub struct S3Settings {
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    /// base domains for virtual-host-style addressing (e.g. ["localhost", "s3.example.com"]); empty = path-style only
    pub domains: Vec<String>,
    /// The cluster's access keys and their grants; None: only `access_key` (root) is valid.
    pub keys: Option<cairn_meta::secrets::Keys>,
}

/// Why the S3 service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum S3SetupError {
    #[error("invalid virtual-host domain {domain:?}: {reason}")]
    InvalidDomain { domain: String, reason: String },
    #[error("access key and secret key must not be empty")]
    EmptyCredentials,
    #[error("region must not be empty")]
    EmptyRegion,
}

/// Builds the s3s service: SigV4 auth with the root credentials, virtual-host + path-style addressing.
pub fn build_service(
    objects: ObjectService,
    settings: &S3Settings,
    metrics: S3Metrics,
) -> Result<s3s::service::S3Service, S3SetupError> {
    if settings.access_key.is_empty() || settings.secret_key.is_empty() {
        return Err(S3SetupError::EmptyCredentials);
    }
    if settings.region.is_empty() {
        return Err(S3SetupError::EmptyRegion);
    }
    let access_objects = objects.clone();
    let access_cache = Arc::new(bucket_access::AccessCache::new(objects.clone()));
    let s3 = CairnS3 {
        inner: Arc::new(Inner {
            objects,
            region: settings.region.clone(),
            owner_id: owner_id(&settings.access_key),
            access_cache: access_cache.clone(),
        }),
    };
    let mut builder = s3s::service::S3ServiceBuilder::new(s3);
    builder.set_auth(auth::KeyAuth::new(
        &settings.access_key,
        &settings.secret_key,
        settings.keys.clone(),
    ));
    builder.set_access(access::KeyAccess::new(
        metrics::OpRecorder::new(metrics),
        settings.keys.clone(),
        access_objects,
        access_cache,
    ));
    builder.set_config(std::sync::Arc::new(s3s::config::StaticConfigProvider::new(
        std::sync::Arc::new(s3s_config()),
    )));
    if !settings.domains.is_empty() {
        builder.set_host(host::CairnHost::new(&settings.domains)?);
    }
    Ok(builder.build())
}

/// s3s limits: the form fields it buffers before checking a form upload's signature stay
/// small, and so does the file it buffers after (`post.rs`).
fn s3s_config() -> s3s::config::S3Config {
    let mut c = s3s::config::S3Config::default();
    c.form_max_field_size = 64 << 10;
    c.form_max_fields_size = 256 << 10;
    c.form_max_parts = 100;
    c.post_object_max_file_size = post::MAX_POST_FILE_SIZE;
    c
}

/// A stable, opaque owner id derived from the access key (FNV-1a, so no key material leaks).
fn owner_id(access_key: &str) -> String {
    let mut out = String::with_capacity(64);
    for round in 0u64..4 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ round;
        for b in access_key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// The s3s trait implementation. Cheap to clone.
#[derive(Clone)]
pub(crate) struct CairnS3 {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) objects: ObjectService,
    pub(crate) region: String,
    pub(crate) owner_id: String,
    /// Per-bucket policy / public access block / ownership, shared with the access hook.
    pub(crate) access_cache: Arc<bucket_access::AccessCache>,
}

impl CairnS3 {
    pub(crate) fn objects(&self) -> &ObjectService {
        &self.inner.objects
    }

    pub(crate) fn region(&self) -> &str {
        &self.inner.region
    }

    pub(crate) fn owner(&self) -> Owner {
        Owner {
            display_name: Some("cairn".to_owned()),
            id: Some(self.inner.owner_id.clone()),
        }
    }
}

#[async_trait::async_trait]
impl S3 for CairnS3 {
    // ---- buckets ----

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        bucket::create_bucket(self, req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        bucket::delete_bucket(self, req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        bucket::head_bucket(self, req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        bucket::list_buckets(self, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        bucket::get_bucket_location(self, req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        bucket::get_bucket_versioning(self, req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        bucket::put_bucket_versioning(self, req).await
    }

    // ---- listing ----

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        list::list_objects(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        list::list_objects_v2(self, req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        list::list_object_versions(self, req).await
    }

    // ---- objects ----

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        object::put_object(self, req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        object::get_object(self, req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        object::head_object(self, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        object::delete_object(self, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        object::delete_objects(self, req).await
    }

    async fn post_object(
        &self,
        req: S3Request<PostObjectInput>,
    ) -> S3Result<S3Response<PostObjectOutput>> {
        post::post_object(self, req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        attributes::get_object_attributes(self, req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        copy::copy_object(self, req).await
    }

    // ---- multipart ----

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create_multipart_upload(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        copy::upload_part_copy(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete_multipart_upload(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort_multipart_upload(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_multipart_uploads(self, req).await
    }

    // ---- tagging ----

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        tagging::put_object_tagging(self, req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        tagging::get_object_tagging(self, req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        tagging::delete_object_tagging(self, req).await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        tagging::put_bucket_tagging(self, req).await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        tagging::get_bucket_tagging(self, req).await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        tagging::delete_bucket_tagging(self, req).await
    }

    // ---- default encryption ----

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        sse_bucket::put_bucket_encryption(self, req).await
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        sse_bucket::get_bucket_encryption(self, req).await
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        sse_bucket::delete_bucket_encryption(self, req).await
    }

    // ---- CORS ----

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        cors_http::put_bucket_cors(self, req).await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        cors_http::get_bucket_cors(self, req).await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        cors_http::delete_bucket_cors(self, req).await
    }

    // ---- lifecycle ----

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        lifecycle::put_bucket_lifecycle_configuration(self, req).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        lifecycle::get_bucket_lifecycle_configuration(self, req).await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        lifecycle::delete_bucket_lifecycle(self, req).await
    }

    // ---- policy, public access block, ownership controls, ACLs ----

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        policy_http::put_bucket_policy(self, req).await
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        policy_http::get_bucket_policy(self, req).await
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        policy_http::delete_bucket_policy(self, req).await
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        policy_http::get_bucket_policy_status(self, req).await
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        policy_http::put_public_access_block(self, req).await
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        policy_http::get_public_access_block(self, req).await
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        policy_http::delete_public_access_block(self, req).await
    }

    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        policy_http::put_bucket_ownership_controls(self, req).await
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        policy_http::get_bucket_ownership_controls(self, req).await
    }

    async fn delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        policy_http::delete_bucket_ownership_controls(self, req).await
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        policy_http::get_bucket_acl(self, req).await
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        policy_http::put_bucket_acl(self, req).await
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        policy_http::get_object_acl(self, req).await
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        policy_http::put_object_acl(self, req).await
    }

    // ---- object lock ----

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        lock::put_object_lock_configuration(self, req).await
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        lock::get_object_lock_configuration(self, req).await
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        lock::put_object_retention(self, req).await
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        lock::get_object_retention(self, req).await
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        lock::put_object_legal_hold(self, req).await
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        lock::get_object_legal_hold(self, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_id_is_stable_and_opaque() {
        let a = owner_id("AKIAEXAMPLE");
        assert_eq!(a, owner_id("AKIAEXAMPLE"));
        assert_eq!(a.len(), 64);
        assert!(!a.contains("AKIA"));
        assert_ne!(a, owner_id("other"));
    }
}
