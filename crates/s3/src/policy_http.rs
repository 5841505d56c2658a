//! The bucket policy, public access block, ownership controls and ACL operations. Settings
//! are stored in the bucket's `sm_bucket_config` row; each change drops this node's cached
//! copy (`bucket_access.rs`) so it is enforced here at once, and elsewhere within its TTL.
//!
//! ACLs (`acl.rs`): PutBucketAcl / PutObjectAcl take a canned ACL, grant headers or an
//! AccessControlPolicy body, and store the group grants on the bucket's settings or in the
//! object version's record (by version id too). Under `BucketOwnerEnforced` only ACLs that
//! change nothing are accepted (AccessControlListNotSupported otherwise, as AWS) and reads
//! report the owner alone; BlockPublicAcls refuses public ones with AccessDenied.

use cairn_meta::bucket_config::{ObjectOwnership as Stored, PublicAccessBlock};
use cairn_object::ReadConsistency;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use cairn_meta::acl::AclGrant;
use cairn_meta::model::ObjectRecord;

use crate::acl;
use crate::bucket_access::BucketAccess;
use crate::error::{custom_error, ObjectResultExt};
use crate::policy::Policy as Compiled;
use crate::CairnS3;

pub(crate) async fn put_bucket_policy(
    s3: &CairnS3,
    req: S3Request<PutBucketPolicyInput>,
) -> S3Result<S3Response<PutBucketPolicyOutput>> {
    let bucket = &req.input.bucket;
    let text = req.input.policy;
    let compiled =
        Compiled::parse(&text, bucket).map_err(|e| s3_error!(MalformedPolicy, "{}", e.0))?;
    let config = s3
        .objects()
        .bucket_config(bucket, ReadConsistency::Linearizable)
        .await
        .s3()?;
    if compiled.is_public()
        && config
            .public_access_block
            .is_some_and(|b| b.block_public_policy)
    {
        tracing::info!(
            bucket,
            "public bucket policy refused: BlockPublicPolicy is on"
        );
        return Err(s3_error!(AccessDenied, "Access Denied"));
    }
    s3.objects()
        .set_bucket_policy(bucket, Some(text))
        .await
        .s3()?;
    s3.inner.access_cache.invalidate(bucket);
    Ok(S3Response::new(PutBucketPolicyOutput::default()))
}

pub(crate) async fn get_bucket_policy(
    s3: &CairnS3,
    req: S3Request<GetBucketPolicyInput>,
) -> S3Result<S3Response<GetBucketPolicyOutput>> {
    let config = s3
        .objects()
        .bucket_config(&req.input.bucket, ReadConsistency::Linearizable)
        .await
        .s3()?;
    match config.policy {
        Some(policy) => Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(policy),
        })),
        None => Err(s3_error!(
            NoSuchBucketPolicy,
            "The bucket policy does not exist"
        )),
    }
}

pub(crate) async fn delete_bucket_policy(
    s3: &CairnS3,
    req: S3Request<DeleteBucketPolicyInput>,
) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
    let bucket = &req.input.bucket;
    s3.objects().set_bucket_policy(bucket, None).await.s3()?;
    s3.inner.access_cache.invalidate(bucket);
    Ok(no_content(DeleteBucketPolicyOutput::default()))
}

pub(crate) async fn get_bucket_policy_status(
    s3: &CairnS3,
    req: S3Request<GetBucketPolicyStatusInput>,
) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
    let bucket = &req.input.bucket;
    let config = s3
        .objects()
        .bucket_config(bucket, ReadConsistency::Linearizable)
        .await
        .s3()?;
    let Some(text) = config.policy else {
        return Err(s3_error!(
            NoSuchBucketPolicy,
            "The bucket policy does not exist"
        ));
    };
    let public = Compiled::parse(&text, bucket).is_ok_and(|p| p.is_public());
    Ok(S3Response::new(GetBucketPolicyStatusOutput {
        policy_status: Some(PolicyStatus {
            is_public: Some(public),
        }),
    }))
}

pub(crate) async fn put_public_access_block(
    s3: &CairnS3,
    req: S3Request<PutPublicAccessBlockInput>,
) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
    let c = &req.input.public_access_block_configuration;
    let block = PublicAccessBlock {
        block_public_acls: c.block_public_acls.unwrap_or(false),
        ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
        block_public_policy: c.block_public_policy.unwrap_or(false),
        restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
    };
    let bucket = &req.input.bucket;
    s3.objects()
        .set_public_access_block(bucket, Some(block))
        .await
        .s3()?;
    s3.inner.access_cache.invalidate(bucket);
    Ok(S3Response::new(PutPublicAccessBlockOutput::default()))
}

pub(crate) async fn get_public_access_block(
    s3: &CairnS3,
    req: S3Request<GetPublicAccessBlockInput>,
) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
    let config = s3
        .objects()
        .bucket_config(&req.input.bucket, ReadConsistency::Linearizable)
        .await
        .s3()?;
    let Some(b) = config.public_access_block else {
        return Err(custom_error(
            "NoSuchPublicAccessBlockConfiguration",
            "The public access block configuration was not found",
            http::StatusCode::NOT_FOUND,
        ));
    };
    Ok(S3Response::new(GetPublicAccessBlockOutput {
        public_access_block_configuration: Some(PublicAccessBlockConfiguration {
            block_public_acls: Some(b.block_public_acls),
            ignore_public_acls: Some(b.ignore_public_acls),
            block_public_policy: Some(b.block_public_policy),
            restrict_public_buckets: Some(b.restrict_public_buckets),
        }),
    }))
}

pub(crate) async fn delete_public_access_block(
    s3: &CairnS3,
    req: S3Request<DeletePublicAccessBlockInput>,
) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
    let bucket = &req.input.bucket;
    s3.objects()
        .set_public_access_block(bucket, None)
        .await
        .s3()?;
    s3.inner.access_cache.invalidate(bucket);
    Ok(no_content(DeletePublicAccessBlockOutput::default()))
}

pub(crate) async fn put_bucket_ownership_controls(
    s3: &CairnS3,
    req: S3Request<PutBucketOwnershipControlsInput>,
) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
    let rules = &req.input.ownership_controls.rules;
    let [rule] = rules.as_slice() else {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    };
    let Some(ownership) = Stored::parse(rule.object_ownership.as_str()) else {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    };
    let bucket = &req.input.bucket;
    s3.objects()
        .set_bucket_ownership(bucket, Some(ownership))
        .await
        .s3()?;
    s3.inner.access_cache.invalidate(bucket);
    Ok(S3Response::new(PutBucketOwnershipControlsOutput::default()))
}

pub(crate) async fn get_bucket_ownership_controls(
    s3: &CairnS3,
    req: S3Request<GetBucketOwnershipControlsInput>,
) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
    let config = s3
        .objects()
        .bucket_config(&req.input.bucket, ReadConsistency::Linearizable)
        .await
        .s3()?;
    let Some(o) = config.ownership else {
        return Err(s3_error!(
            OwnershipControlsNotFoundError,
            "The bucket ownership controls were not found"
        ));
    };
    Ok(S3Response::new(GetBucketOwnershipControlsOutput {
        ownership_controls: Some(OwnershipControls {
            rules: vec![OwnershipControlsRule {
                object_ownership: ObjectOwnership::from(o.as_str().to_owned()),
            }],
        }),
    }))
}

pub(crate) async fn delete_bucket_ownership_controls(
    s3: &CairnS3,
    req: S3Request<DeleteBucketOwnershipControlsInput>,
) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
    let bucket = &req.input.bucket;
    s3.objects().set_bucket_ownership(bucket, None).await.s3()?;
    s3.inner.access_cache.invalidate(bucket);
    Ok(no_content(DeleteBucketOwnershipControlsOutput::default()))
}

/// The ACL a PutBucketAcl / PutObjectAcl asks for, from its headers or its body (not both),
/// checked against the bucket's ownership controls and public access block. (The hook in
/// `access.rs` already checked headers the same way.)
fn requested_acl(
    s3: &CairnS3,
    headers: &http::HeaderMap,
    body: Option<&AccessControlPolicy>,
    access: &BucketAccess,
) -> S3Result<Vec<AclGrant>> {
    let owner_id = &s3.inner.owner_id;
    match (acl::from_headers(headers, owner_id)?, body) {
        (Some(_), Some(_)) => Err(custom_error(
            "UnexpectedContent",
            "This request does not support content",
            http::StatusCode::BAD_REQUEST,
        )),
        (Some(grants), None) => Ok(grants),
        (None, Some(body)) => {
            if access.acls_disabled() && acl::body_grants_others(body, owner_id) {
                return Err(s3_error!(
                    AccessControlListNotSupported,
                    "The bucket does not allow ACLs"
                ));
            }
            let grants = acl::from_body(body, owner_id)?;
            if access.block().block_public_acls && acl::is_public(&grants) {
                tracing::info!("public ACL refused: BlockPublicAcls is on");
                return Err(s3_error!(AccessDenied, "Access Denied"));
            }
            Ok(grants)
        }
        (None, None) => Err(custom_error(
            "MissingSecurityHeader",
            "Your request was missing a required header",
            http::StatusCode::BAD_REQUEST,
        )),
    }
}

/// The ACL GetBucketAcl / GetObjectAcl report: the owner's FULL_CONTROL, plus the stored
/// grants while ACLs are enabled (with `BucketOwnerEnforced` AWS reports the owner alone).
fn reported(s3: &CairnS3, access: &BucketAccess, grants: &[AclGrant]) -> (Owner, Grants) {
    let owner = s3.owner();
    let grants = if access.acls_disabled() {
        &[][..]
    } else {
        grants
    };
    let dto = acl::to_dto(&owner, grants);
    (owner, dto)
}

/// The object version an ACL request names (the current one without a version id).
async fn acl_record(
    s3: &CairnS3,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> S3Result<ObjectRecord> {
    crate::object::check_version_id(version_id)?;
    match version_id {
        None => s3.objects().head_object(bucket, key).await.s3(),
        Some(v) => crate::tagging::version_record(s3, bucket, key, v).await,
    }
}

pub(crate) async fn get_bucket_acl(
    s3: &CairnS3,
    req: S3Request<GetBucketAclInput>,
) -> S3Result<S3Response<GetBucketAclOutput>> {
    let bucket = &req.input.bucket;
    let config = s3
        .objects()
        .bucket_config(bucket, ReadConsistency::Linearizable)
        .await
        .s3()?;
    let access = s3.inner.access_cache.get(bucket).await.s3()?;
    let (owner, grants) = reported(s3, &access, &config.acl);
    Ok(S3Response::new(GetBucketAclOutput {
        owner: Some(owner),
        grants: Some(grants),
    }))
}

pub(crate) async fn put_bucket_acl(
    s3: &CairnS3,
    req: S3Request<PutBucketAclInput>,
) -> S3Result<S3Response<PutBucketAclOutput>> {
    let bucket = &req.input.bucket;
    s3.objects().head_bucket(bucket).await.s3()?;
    let access = s3.inner.access_cache.get(bucket).await.s3()?;
    let body = req.input.access_control_policy.as_ref();
    let grants = requested_acl(s3, &req.headers, body, &access)?;
    s3.objects().set_bucket_acl(bucket, grants).await.s3()?;
    s3.inner.access_cache.invalidate(bucket);
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

pub(crate) async fn get_object_acl(
    s3: &CairnS3,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    let input = &req.input;
    let version = input.version_id.as_deref();
    let record = acl_record(s3, &input.bucket, &input.key, version).await?;
    let access = s3.inner.access_cache.get(&input.bucket).await.s3()?;
    let (owner, grants) = reported(s3, &access, &record.headers.acl);
    Ok(S3Response::new(GetObjectAclOutput {
        owner: Some(owner),
        grants: Some(grants),
        request_charged: None,
    }))
}

pub(crate) async fn put_object_acl(
    s3: &CairnS3,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
    let input = &req.input;
    let (bucket, key) = (&input.bucket, &input.key);
    let version = input.version_id.as_deref();
    acl_record(s3, bucket, key, version).await?;
    let access = s3.inner.access_cache.get(bucket).await.s3()?;
    let body = input.access_control_policy.as_ref();
    let grants = requested_acl(s3, &req.headers, body, &access)?;
    s3.objects()
        .set_object_acl(bucket, key, version, grants)
        .await
        .s3()?;
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

fn no_content<T>(out: T) -> S3Response<T> {
    let mut r = S3Response::new(out);
    r.status = Some(http::StatusCode::NO_CONTENT);
    r
}
