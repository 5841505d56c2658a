//! Request authentication: SigV4 verification is s3s's; we supply the secret for an access key.

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

/// The root credentials. An unknown access key is `InvalidAccessKeyId` (403), as S3 answers.
pub(crate) struct RootAuth {
    access_key: String,
    secret_key: SecretKey,
}

impl RootAuth {
    pub(crate) fn new(access_key: &str, secret_key: &str) -> Self {
        Self {
            access_key: access_key.to_string(),
            secret_key: SecretKey::from(secret_key),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for RootAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.access_key {
            Ok(self.secret_key.clone())
        } else {
            Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_key_is_invalid_access_key_id() {
        let a = RootAuth::new("root", "secret123");
        assert!(a.get_secret_key("root").await.is_ok());
        let e = a.get_secret_key("nobody").await.unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::InvalidAccessKeyId);
    }
}
