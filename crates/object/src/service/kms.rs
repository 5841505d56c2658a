//! SSE-KMS on the object service: resolving the key a request names (or the default key,
//! created on first use) in the built-in key store of the system group (`cairn_meta::kms`),
//! and opening it. Keys are read with a linearizable query, so a key disabled anywhere stops
//! encrypting and decrypting everywhere as soon as the change commits.

use cairn_meta::kms::{KmsKeyRecord, DEFAULT_KEY};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, Query, QueryResult};

use super::{now_ms, unexpected, ObjectService};
use crate::sse;
use crate::ObjectError;

/// The key-store name in an SSE-KMS key id as clients send it: a name, `alias/<name>`, or an
/// ARN ending in `:key/<name>` or `:alias/<name>` (what the AWS CLI and SDKs accept).
pub fn kms_key_name(id: &str) -> &str {
    let id = id.trim();
    let resource = if id.starts_with("arn:") {
        // arn:partition:kms:region:account:resource
        id.splitn(6, ':').nth(5).unwrap_or(id)
    } else {
        id
    };
    resource
        .strip_prefix("alias/")
        .or_else(|| resource.strip_prefix("key/"))
        .unwrap_or(resource)
}

impl ObjectService {
    async fn kms_record(&self, name: &str) -> Result<Option<KmsKeyRecord>, ObjectError> {
        let q = Query::KmsKey {
            name: name.to_string(),
        };
        match self.query(SYSTEM_GROUP, q).await? {
            QueryResult::KmsKey(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// The wrapping key of key-store key `name`: `KmsKeyNotFound` / `KmsKeyDisabled` as AWS.
    pub(super) async fn kms_kek(&self, name: Option<&str>) -> Result<[u8; 32], ObjectError> {
        let name = name.unwrap_or(DEFAULT_KEY);
        let rec = self
            .kms_record(name)
            .await?
            .ok_or_else(|| ObjectError::KmsKeyNotFound(name.to_string()))?;
        self.open_kms(&rec)
    }

    fn open_kms(&self, rec: &KmsKeyRecord) -> Result<[u8; 32], ObjectError> {
        if !rec.enabled {
            return Err(ObjectError::KmsKeyDisabled(rec.name.clone()));
        }
        let cluster = self.sse_s3_kek()?;
        sse::open_kms_key(cluster, &rec.name, &rec.wrapped)
            .map(|k| *k.bytes())
            .map_err(|_| {
                ObjectError::DataLoss(format!(
                    "KMS key {} cannot be opened with this cluster's master key",
                    rec.name
                ))
            })
    }

    /// The key a PUT with SSE-KMS uses, and its wrapping key: the named one (which must
    /// exist and be enabled), or the default key `aws/s3`, created on first use.
    pub(super) async fn kms_key_for_write(
        &self,
        key_id: Option<&str>,
    ) -> Result<(String, [u8; 32]), ObjectError> {
        let name = key_id.map(kms_key_name).unwrap_or(DEFAULT_KEY).to_string();
        let rec = match self.kms_record(&name).await? {
            Some(r) => r,
            None if name == DEFAULT_KEY => {
                let cluster = self.sse_s3_kek()?;
                let record = KmsKeyRecord {
                    v: 1,
                    name: name.clone(),
                    created_ms: now_ms(),
                    enabled: true,
                    wrapped: sse::new_kms_key(cluster, &name).map_err(super::sse_error)?,
                    description: "default key of SSE-KMS, created on first use".into(),
                };
                // `if_absent`: a concurrent first use elsewhere wins; both then read it back.
                self.propose_ok(
                    SYSTEM_GROUP,
                    Command::CreateKmsKey {
                        record,
                        if_absent: true,
                    },
                )
                .await?;
                self.kms_record(&name)
                    .await?
                    .ok_or_else(|| ObjectError::KmsKeyNotFound(name.clone()))?
            }
            None => return Err(ObjectError::KmsKeyNotFound(name)),
        };
        Ok((name, self.open_kms(&rec)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_in_every_form_name_the_same_key() {
        for id in [
            "app",
            "alias/app",
            "key/app",
            "arn:aws:kms:us-east-1:000000000000:key/app",
            "arn:aws:kms:us-east-1:000000000000:alias/app",
        ] {
            assert_eq!(kms_key_name(id), "app", "{id}");
        }
        assert_eq!(kms_key_name("alias/aws/s3"), "aws/s3");
    }
}
