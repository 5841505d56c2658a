//! Bucket default encryption: Put/Get/DeleteBucketEncryption. The configuration lives in the
//! bucket's settings row (`cairn_meta::bucket_config`); writes without SSE headers pick it up
//! through `sse::with_bucket_default`.

use cairn_meta::bucket_config::BucketEncryption;
use cairn_meta::model::SseAlgorithm;
use cairn_object::ReadConsistency;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use crate::error::{custom_error, ObjectResultExt};
use crate::CairnS3;

/// The one rule of a PutBucketEncryption body, checked as AWS does.
fn from_dto(config: ServerSideEncryptionConfiguration) -> S3Result<BucketEncryption> {
    let [rule] = <[ServerSideEncryptionRule; 1]>::try_from(config.rules).map_err(|_| {
        s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        )
    })?;
    let Some(by_default) = rule.apply_server_side_encryption_by_default else {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    };
    let algorithm = match by_default.sse_algorithm.as_str() {
        ServerSideEncryption::AES256 => SseAlgorithm::S3,
        ServerSideEncryption::AWS_KMS => SseAlgorithm::Kms,
        ServerSideEncryption::AWS_KMS_DSSE => {
            return Err(s3_error!(
                NotImplemented,
                "dual-layer SSE-KMS (aws:kms:dsse) is not implemented"
            ))
        }
        _ => {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ))
        }
    };
    if algorithm == SseAlgorithm::S3 && by_default.kms_master_key_id.is_some() {
        return Err(s3_error!(
            InvalidArgument,
            "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms"
        ));
    }
    Ok(BucketEncryption {
        algorithm,
        kms_key_id: by_default
            .kms_master_key_id
            .map(|k| cairn_object::kms_key_name(&k).to_string()),
        bucket_key_enabled: rule.bucket_key_enabled.unwrap_or(false),
    })
}

fn to_dto(e: BucketEncryption) -> ServerSideEncryptionConfiguration {
    let algorithm = match e.algorithm {
        SseAlgorithm::Kms => ServerSideEncryption::AWS_KMS,
        _ => ServerSideEncryption::AES256,
    };
    ServerSideEncryptionConfiguration {
        rules: vec![ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                kms_master_key_id: e.kms_key_id,
                sse_algorithm: ServerSideEncryption::from_static(algorithm),
            }),
            bucket_key_enabled: Some(e.bucket_key_enabled),
        }],
    }
}

pub(crate) async fn put_bucket_encryption(
    s3: &CairnS3,
    req: S3Request<PutBucketEncryptionInput>,
) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
    let input = req.input;
    let config = from_dto(input.server_side_encryption_configuration)?;
    s3.objects()
        .set_bucket_encryption(&input.bucket, Some(config))
        .await
        .s3()?;
    Ok(S3Response::new(PutBucketEncryptionOutput::default()))
}

pub(crate) async fn get_bucket_encryption(
    s3: &CairnS3,
    req: S3Request<GetBucketEncryptionInput>,
) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
    let config = s3
        .objects()
        .bucket_config(&req.input.bucket, ReadConsistency::Linearizable)
        .await
        .s3()?;
    let Some(e) = config.encryption else {
        return Err(custom_error(
            "ServerSideEncryptionConfigurationNotFoundError",
            "The server side encryption configuration was not found",
            http::StatusCode::NOT_FOUND,
        ));
    };
    Ok(S3Response::new(GetBucketEncryptionOutput {
        server_side_encryption_configuration: Some(to_dto(e)),
    }))
}

pub(crate) async fn delete_bucket_encryption(
    s3: &CairnS3,
    req: S3Request<DeleteBucketEncryptionInput>,
) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
    s3.objects()
        .set_bucket_encryption(&req.input.bucket, None)
        .await
        .s3()?;
    Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(algo: &'static str, key: Option<&str>) -> ServerSideEncryptionConfiguration {
        ServerSideEncryptionConfiguration {
            rules: vec![ServerSideEncryptionRule {
                apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                    kms_master_key_id: key.map(str::to_string),
                    sse_algorithm: ServerSideEncryption::from_static(algo),
                }),
                bucket_key_enabled: None,
            }],
        }
    }

    #[test]
    fn rules_are_checked_and_round_trip() {
        let e = from_dto(config("aws:kms", Some("alias/app"))).unwrap();
        assert_eq!(e.algorithm, SseAlgorithm::Kms);
        assert_eq!(e.kms_key_id.as_deref(), Some("app"));
        let back = to_dto(e.clone());
        assert_eq!(from_dto(back).unwrap(), e);
        assert_eq!(
            from_dto(config("AES256", None)).unwrap().algorithm,
            SseAlgorithm::S3
        );
        assert!(from_dto(config("AES256", Some("k"))).is_err());
        assert!(from_dto(config("aws:kms:dsse", None)).is_err());
        assert!(from_dto(ServerSideEncryptionConfiguration { rules: vec![] }).is_err());
    }
}
