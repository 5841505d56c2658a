//! Request authentication: SigV4 verification is s3s's; we supply the secret for an access key
//! from the cluster's key table (`cairn_meta::secrets::KeyDirectory`). What a key may do is
//! decided afterwards, in `access.rs`.

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

use cairn_meta::secrets::Keys;

/// Secrets of the cluster's access keys; without a key directory (a front end used alone, as
/// in tests) only the configured root key. An unknown or deleted access key is
/// `InvalidAccessKeyId` (403), as S3 answers. A disabled key still verifies here, so the
/// refusal can say why (AccessDenied, in `access.rs`).
pub(crate) struct KeyAuth {
    access_key: String,
    secret_key: SecretKey,
    keys: Option<Keys>,
}

impl KeyAuth {
    pub(crate) fn new(access_key: &str, secret_key: &str, keys: Option<Keys>) -> Self {
        Self {
            access_key: access_key.to_string(),
            secret_key: SecretKey::from(secret_key),
            keys,
        }
    }
}

fn unknown() -> s3s::S3Error {
    s3_error!(
        InvalidAccessKeyId,
        "The AWS Access Key Id you provided does not exist in our records."
    )
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match &self.keys {
            Some(keys) => keys
                .resolve(access_key)
                .and_then(|k| k.secret)
                .map(SecretKey::from)
                .ok_or_else(unknown),
            None if access_key == self.access_key => Ok(self.secret_key.clone()),
            None => Err(unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use cairn_meta::secrets::{KeyDirectory, MasterKey};
    use cairn_meta::{Command, MetaStore};

    #[tokio::test]
    async fn unknown_and_deleted_keys_are_invalid_access_key_id() {
        let a = KeyAuth::new("root", "secret123", None);
        assert!(a.get_secret_key("root").await.is_ok());
        let e = a.get_secret_key("nobody").await.unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::InvalidAccessKeyId);

        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
        let store = MetaStore::new(db.clone(), 4).unwrap();
        let mk = MasterKey::generate();
        let txn = db.begin_write().unwrap();
        for (ak, secret) in [("KEEP", "keep-secret"), ("GONE", "gone-secret")] {
            let record = mk.new_record(ak, secret, "t", 1).unwrap();
            store
                .apply(&txn, 0, &Command::CreateAccessKey { record })
                .unwrap();
        }
        store
            .apply(
                &txn,
                0,
                &Command::DeleteAccessKey {
                    access_key: "GONE".into(),
                    at_ms: 2,
                },
            )
            .unwrap();
        txn.commit().unwrap();
        let keys = Arc::new(KeyDirectory::new(store, mk, None));
        let a = KeyAuth::new("root", "secret123", Some(keys));
        assert_eq!(
            a.get_secret_key("KEEP").await.unwrap().expose(),
            "keep-secret"
        );
        for ak in ["GONE", "nobody", "root"] {
            let e = a.get_secret_key(ak).await.unwrap_err();
            assert_eq!(*e.code(), s3s::S3ErrorCode::InvalidAccessKeyId, "{ak}");
        }
    }
}
