//! Bucket operations: Create, Delete, Head, List, GetBucketLocation, GetBucketVersioning.
//! (s3s validates bucket names before we are called.)

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use crate::consistency;
use crate::error::ObjectResultExt;
use crate::list::{decode_token, encode_token};
use crate::object::ts;
use crate::CairnS3;
use cairn_meta::model::Versioning;

/// The region whose LocationConstraint is empty, for historical reasons.
const US_EAST_1: &str = "us-east-1";

/// A LocationConstraint we accept: none, empty, or our own region.
fn check_location(constraint: Option<&str>, region: &str) -> S3Result<()> {
    match constraint {
        None | Some("") => Ok(()),
        Some(c) if c == region => Ok(()),
        Some(c) => Err(s3_error!(
            IllegalLocationConstraintException,
            "The {c} location constraint is incompatible for the region specific endpoint this request was sent to."
        )),
    }
}

pub(crate) async fn create_bucket(
    s3: &CairnS3,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let owner = crate::access::owner_of(req.credentials.as_ref()).map(str::to_string);
    let input = req.input;
    let constraint = input
        .create_bucket_configuration
        .as_ref()
        .and_then(|c| c.location_constraint.as_ref())
        .map(BucketLocationConstraint::as_str);
    check_location(constraint, s3.region())?;
    check_reserved_name(&input.bucket)?;
    let write_consistency = consistency::write(&req.headers)?;
    // `x-amz-object-ownership` (ACLs stay disabled by default). A new bucket blocks public
    // ACLs, and every ACL Cairn stores is public, so the ACL headers can only be checked here
    // (the access hook refused the public ones): nothing is left to store.
    let ownership = match input.object_ownership.as_ref() {
        None => None,
        Some(o) => Some(
            cairn_meta::bucket_config::ObjectOwnership::parse(o.as_str()).ok_or_else(|| {
                s3_error!(InvalidArgument, "Invalid x-amz-object-ownership header")
            })?,
        ),
    };
    crate::acl::from_headers(&req.headers, &s3.inner.owner_id)?;
    // `x-amz-bucket-object-lock-enabled: true`: lock on from the start (versioning Enabled).
    if input.object_lock_enabled_for_bucket == Some(true) {
        s3.objects()
            .create_bucket_with_lock(&input.bucket, write_consistency, owner.as_deref())
            .await
            .s3()?;
    } else {
        s3.objects()
            .create_bucket_owned(&input.bucket, write_consistency, owner.as_deref())
            .await
            .s3()?;
    }
    if let Some(o) =
        ownership.filter(|o| *o != cairn_meta::bucket_config::ObjectOwnership::BucketOwnerEnforced)
    {
        s3.objects()
            .set_bucket_ownership(&input.bucket, Some(o))
            .await
            .s3()?;
        s3.inner.access_cache.invalidate(&input.bucket);
    }
    let output = CreateBucketOutput {
        location: Some(format!("/{}", input.bucket)),
    };
    Ok(S3Response::new(output))
}

pub(crate) async fn delete_bucket(
    s3: &CairnS3,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    s3.objects().delete_bucket(&req.input.bucket).await.s3()?;
    Ok(S3Response::new(DeleteBucketOutput::default()))
}

pub(crate) async fn head_bucket(
    s3: &CairnS3,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    let read = consistency::read(&req.headers)?;
    let bucket = s3
        .objects()
        .head_bucket_with(&req.input.bucket, read)
        .await
        .s3()?;
    let output = HeadBucketOutput {
        bucket_region: Some(s3.region().to_owned()),
        ..Default::default()
    };
    let mut resp = S3Response::new(output);
    if let Some(c) = bucket.write_consistency {
        resp.headers.insert(
            consistency::WRITE_HEADER,
            http::HeaderValue::from_static(c.as_str()),
        );
    }
    Ok(resp)
}

pub(crate) async fn list_buckets(
    s3: &CairnS3,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let input = req.input;
    let max = match input.max_buckets {
        None => usize::MAX,
        Some(n) if (1..=10_000).contains(&n) => usize::try_from(n).unwrap_or(usize::MAX),
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "max-buckets must be between 1 and 10000"
            ))
        }
    };
    let after = input
        .continuation_token
        .as_deref()
        .map(decode_token)
        .transpose()?;
    let prefix = input.prefix.clone().unwrap_or_default();

    let all = s3.objects().list_buckets().await.s3()?;
    let mut matching = all
        .into_iter()
        .filter(|b| b.name.starts_with(&prefix))
        .filter(|b| crate::access::visible(&req.extensions, b))
        .filter(|b| after.as_ref().is_none_or(|a| b.name.as_str() > a.as_str()));
    let page: Vec<_> = matching.by_ref().take(max).collect();
    let more = matching.next().is_some();
    let next = if more {
        page.last().map(|b| encode_token(&b.name))
    } else {
        None
    };

    let buckets = page
        .into_iter()
        .map(|b| Bucket {
            name: Some(b.name),
            creation_date: Some(ts(b.created_ms)),
            bucket_region: Some(s3.region().to_owned()),
        })
        .collect();
    let output = ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(s3.owner()),
        continuation_token: next,
        prefix: input.prefix,
    };
    Ok(S3Response::new(output))
}

pub(crate) async fn get_bucket_location(
    s3: &CairnS3,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    s3.objects().head_bucket(&req.input.bucket).await.s3()?;
    let region = s3.region();
    let output = GetBucketLocationOutput {
        location_constraint: (region != US_EAST_1)
            .then(|| BucketLocationConstraint::from(region.to_owned())),
    };
    Ok(S3Response::new(output))
}

/// No Status for a bucket that never had versioning enabled, as S3 answers.
pub(crate) async fn get_bucket_versioning(
    s3: &CairnS3,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let b = s3.objects().head_bucket(&req.input.bucket).await.s3()?;
    let status = b.versioning.map(|v| match v {
        Versioning::Enabled => BucketVersioningStatus::from_static(BucketVersioningStatus::ENABLED),
        Versioning::Suspended => {
            BucketVersioningStatus::from_static(BucketVersioningStatus::SUSPENDED)
        }
    });
    Ok(S3Response::new(GetBucketVersioningOutput {
        status,
        ..Default::default()
    }))
}

/// Enabled or Suspended; MFA Delete is not supported (501).
pub(crate) async fn put_bucket_versioning(
    s3: &CairnS3,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let input = req.input;
    let conf = input.versioning_configuration;
    if input.mfa.is_some()
        || conf
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str().eq_ignore_ascii_case(MFADelete::ENABLED))
    {
        return Err(s3_error!(NotImplemented, "MFA Delete is not supported"));
    }
    let state = match conf.status.as_ref().map(BucketVersioningStatus::as_str) {
        Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
        Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
        _ => {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ))
        }
    };
    s3.objects()
        .set_bucket_versioning(&input.bucket, state)
        .await
        .s3()?;
    Ok(S3Response::new(PutBucketVersioningOutput::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_constraints() {
        assert!(check_location(None, "us-east-1").is_ok());
        assert!(check_location(Some(""), "eu-west-1").is_ok());
        assert!(check_location(Some("eu-west-1"), "eu-west-1").is_ok());
        let e = check_location(Some("ap-south-1"), "eu-west-1").unwrap_err();
        assert_eq!(e.status_code(), Some(http::StatusCode::BAD_REQUEST));
    }
}

/// Names S3 reserves beyond the basic syntax rules (which s3s enforces).
fn check_reserved_name(name: &str) -> S3Result<()> {
    let reserved = name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
        || name.ends_with(".mrap")
        || name.ends_with("--x-s3");
    if reserved {
        return Err(s3s::s3_error!(
            InvalidBucketName,
            "The specified bucket is not valid."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod reserved_tests {
    use super::check_reserved_name;

    #[test]
    fn reserved_prefixes_and_suffixes_are_refused() {
        for bad in [
            "xn--abc",
            "sthree-x",
            "foo-s3alias",
            "foo--ol-s3",
            "a.mrap",
            "b--x-s3",
        ] {
            assert!(check_reserved_name(bad).is_err(), "{bad}");
        }
        assert!(check_reserved_name("photos").is_ok());
    }
}
