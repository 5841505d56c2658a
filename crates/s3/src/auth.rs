//! Request authentication: SigV4 verification is s3s's; we supply the secret for an access key.

use std::sync::Arc;

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

/// Finds the secret of an access key known cluster-wide (the system group's key table).
pub type KeyLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// This node's root credentials, then the cluster's access keys. An unknown access key is
/// `InvalidAccessKeyId` (403), as S3 answers.
pub(crate) struct RootAuth {
    access_key: String,
    secret_key: SecretKey,
    cluster: Option<KeyLookup>,
}

impl RootAuth {
    pub(crate) fn new(access_key: &str, secret_key: &str, cluster: Option<KeyLookup>) -> Self {
        Self {
            access_key: access_key.to_string(),
            secret_key: SecretKey::from(secret_key),
            cluster,
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for RootAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.access_key {
            Ok(self.secret_key.clone())
        } else if let Some(secret) = self.cluster.as_ref().and_then(|f| f(access_key)) {
            Ok(SecretKey::from(secret))
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
        let a = RootAuth::new("root", "secret123", None);
        assert!(a.get_secret_key("root").await.is_ok());
        let e = a.get_secret_key("nobody").await.unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::InvalidAccessKeyId);
        // Keys of the cluster (other nodes' root keys) are found through the lookup.
        let cluster: KeyLookup = Arc::new(|k| (k == "other").then(|| "s3cret-other".to_string()));
        let a = RootAuth::new("root", "secret123", Some(cluster));
        assert!(a.get_secret_key("other").await.is_ok());
        assert!(a.get_secret_key("root").await.is_ok());
        assert!(a.get_secret_key("nobody").await.is_err());
    }
}
