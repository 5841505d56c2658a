//! The bucket policy, public access block, ownership controls and ACL operations. Settings
//! are stored in the bucket's `sm_bucket_config` row; each change drops this node's cached
//! copy (`bucket_access.rs`) so it is enforced here at once, and elsewhere within its TTL.
//!
//! ACLs: every bucket's objects belong to its owner, so GetBucketAcl / GetObjectAcl answer the
//! owner with FULL_CONTROL. PutBucketAcl / PutObjectAcl accept what changes nothing (`private`,
//! `bucket-owner-full-control`, or a body granting only the owner FULL_CONTROL); anything else
//! is AccessControlListNotSupported under `BucketOwnerEnforced` (as AWS), or NotImplemented
//! when ACLs are enabled (Cairn stores no ACLs). Canned ACL headers are checked in `access.rs`.

use cairn_meta::bucket_config::{ObjectOwnership as Stored, PublicAccessBlock};
use cairn_object::ReadConsistency;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

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

/// The only ACL Cairn has: the owner with FULL_CONTROL.
fn owner_grants(s3: &CairnS3) -> (Owner, Grants) {
    let owner = s3.owner();
    let grant = Grant {
        grantee: Some(Grantee {
            display_name: owner.display_name.clone(),
            email_address: None,
            id: owner.id.clone(),
            type_: Type::from(Type::CANONICAL_USER.to_owned()),
            uri: None,
        }),
        permission: Some(Permission::from(Permission::FULL_CONTROL.to_owned())),
    };
    (owner, vec![grant])
}

/// Checks a PutBucketAcl / PutObjectAcl body: only the owner's FULL_CONTROL changes nothing.
async fn check_acl_body(
    s3: &CairnS3,
    bucket: &str,
    body: Option<&AccessControlPolicy>,
) -> S3Result<()> {
    let Some(body) = body else {
        return Ok(());
    };
    let owner_id = s3.owner().id;
    let only_owner = body.grants.as_deref().unwrap_or_default().iter().all(|g| {
        g.permission.as_ref().map(Permission::as_str) == Some(Permission::FULL_CONTROL)
            && g.grantee
                .as_ref()
                .is_some_and(|e| e.id == owner_id && e.uri.is_none())
    });
    if only_owner {
        return Ok(());
    }
    let access = s3.inner.access_cache.get(bucket).await.s3()?;
    if access.acls_disabled() {
        Err(s3_error!(
            AccessControlListNotSupported,
            "The bucket does not allow ACLs"
        ))
    } else {
        Err(s3_error!(
            NotImplemented,
            "ACLs other than private are not implemented; nothing was stored"
        ))
    }
}

pub(crate) async fn get_bucket_acl(
    s3: &CairnS3,
    req: S3Request<GetBucketAclInput>,
) -> S3Result<S3Response<GetBucketAclOutput>> {
    s3.objects().head_bucket(&req.input.bucket).await.s3()?;
    let (owner, grants) = owner_grants(s3);
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
    check_acl_body(s3, bucket, req.input.access_control_policy.as_ref()).await?;
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

pub(crate) async fn get_object_acl(
    s3: &CairnS3,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    s3.objects()
        .head_object(&req.input.bucket, &req.input.key)
        .await
        .s3()?;
    let (owner, grants) = owner_grants(s3);
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
    let bucket = &req.input.bucket;
    s3.objects()
        .head_object(bucket, &req.input.key)
        .await
        .s3()?;
    check_acl_body(s3, bucket, req.input.access_control_policy.as_ref()).await?;
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

fn no_content<T>(out: T) -> S3Response<T> {
    let mut r = S3Response::new(out);
    r.status = Some(http::StatusCode::NO_CONTENT);
    r
}
