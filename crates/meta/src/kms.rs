//! The built-in key store of SSE-KMS, in the system group: named 256-bit keys, created and
//! disabled through the management API. A key's material arrives already wrapped by a key
//! derived from the cluster master key (`cairn_object::sse`), so the Raft log, the state
//! machine and snapshots never hold one in plaintext — the same rule as access-key secrets.
//!
//! Rows live in `sm_meta` under `kms_key/<name>` (named msgpack behind a version marker), so
//! no new table (and no change of the snapshot's table list) is needed. Names are checked
//! here too, so a key that exists is always one the API can name.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandError, Response};
use crate::keys;
use crate::store::{decode, encode_named, SM_META};
use crate::{MetaError, MetaStore};

const PREFIX: &str = "kms_key/";
/// The key SSE-KMS uses when a request names none (created on first use, as AWS's
/// `aws/s3` managed key).
pub const DEFAULT_KEY: &str = "aws/s3";

/// One key of the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsKeyRecord {
    /// Record format version (1).
    #[serde(default = "v1")]
    pub v: u32,
    pub name: String,
    pub created_ms: i64,
    /// Disabled keys neither encrypt nor decrypt (KMS.DisabledException).
    pub enabled: bool,
    /// The key material, wrapped (12-byte nonce + sealed 32 bytes; the name is associated
    /// data, so a row copied under another name does not open).
    pub wrapped: Vec<u8>,
    #[serde(default)]
    pub description: String,
}

fn v1() -> u32 {
    1
}

/// Whether `name` may name a key: 1–128 characters of `A-Z a-z 0-9 / _ - .`, not starting
/// with `/` (`aws/s3` is the default key; AWS reserves the `aws/` prefix for its own keys).
pub fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("a key name has 1 to 128 characters".into());
    }
    if name.starts_with('/')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'))
    {
        return Err(format!(
            "key name {name:?} may only hold letters, digits, '/', '_', '-', '.' and must not start with '/'"
        ));
    }
    Ok(())
}

impl MetaStore {
    pub(crate) fn apply_kms_command(
        &self,
        txn: &WriteTransaction,
        group: u64,
        cmd: &Command,
    ) -> Result<Response, MetaError> {
        match cmd {
            Command::CreateKmsKey { record, if_absent } => {
                if let Err(e) = valid_name(&record.name) {
                    return Ok(Response::Refused(CommandError::Invalid(e)));
                }
                let mut meta = txn.open_table(SM_META)?;
                let k = keys::sm_meta(group, &format!("{PREFIX}{}", record.name));
                if meta.get(k.as_slice())?.is_some() {
                    // First use of the default key may race on two nodes: the first wins,
                    // the second finds it (decided here, in the apply, so it is race-free).
                    return Ok(if *if_absent {
                        Response::Done
                    } else {
                        Response::Refused(CommandError::KmsKeyExists(record.name.clone()))
                    });
                }
                meta.insert(k.as_slice(), encode_named(record)?.as_slice())?;
                drop(meta);
                self.audit(
                    txn,
                    group,
                    record.created_ms,
                    format!("create KMS key {}", record.name),
                )?;
                Ok(Response::Done)
            }
            Command::SetKmsKeyEnabled {
                name,
                enabled,
                at_ms,
            } => {
                let mut meta = txn.open_table(SM_META)?;
                let k = keys::sm_meta(group, &format!("{PREFIX}{name}"));
                let mut rec: KmsKeyRecord = match meta.get(k.as_slice())? {
                    Some(v) => decode(v.value())?,
                    None => return Ok(Response::Refused(CommandError::NoSuchKmsKey(name.clone()))),
                };
                rec.enabled = *enabled;
                meta.insert(k.as_slice(), encode_named(&rec)?.as_slice())?;
                drop(meta);
                let what = if *enabled { "enable" } else { "disable" };
                self.audit(txn, group, *at_ms, format!("{what} KMS key {name}"))?;
                Ok(Response::Done)
            }
            _ => Err(MetaError::Codec("not a KMS command".into())),
        }
    }

    /// The key named `name` in `group` (the system group), if any.
    pub fn kms_key(&self, group: u64, name: &str) -> Result<Option<KmsKeyRecord>, MetaError> {
        self.get_sm_meta(group, &format!("{PREFIX}{name}"))
    }

    /// Every key of the store, by name.
    pub fn kms_keys(&self, group: u64) -> Result<Vec<KmsKeyRecord>, MetaError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(SM_META)?;
        let start = keys::sm_meta(group, PREFIX);
        let end = keys::prefix_end(&start).unwrap_or_else(|| keys::group_end(group));
        let mut out = Vec::new();
        for item in t.range(start.as_slice()..end.as_slice())? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn record(name: &str) -> KmsKeyRecord {
        KmsKeyRecord {
            v: 1,
            name: name.into(),
            created_ms: 1,
            enabled: true,
            wrapped: vec![1, 2, 3],
            description: String::new(),
        }
    }

    #[test]
    fn keys_are_created_once_listed_and_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
        let store = MetaStore::new(db.clone(), 4).unwrap();
        let apply = |cmd: Command| {
            let txn = db.begin_write().unwrap();
            let r = store.apply(&txn, 0, &cmd).unwrap();
            txn.commit().unwrap();
            r
        };
        let create = |name: &str, if_absent| Command::CreateKmsKey {
            record: record(name),
            if_absent,
        };
        assert_eq!(apply(create("app", false)), Response::Done);
        assert_eq!(
            apply(create("app", false)),
            Response::Refused(CommandError::KmsKeyExists("app".into()))
        );
        // The default key's create-on-first-use keeps the first one.
        let mut other = record("app");
        other.wrapped = vec![9];
        assert_eq!(
            apply(Command::CreateKmsKey {
                record: other,
                if_absent: true
            }),
            Response::Done
        );
        assert_eq!(
            store.kms_key(0, "app").unwrap().unwrap().wrapped,
            vec![1, 2, 3]
        );
        assert_eq!(apply(create(DEFAULT_KEY, true)), Response::Done);
        assert!(matches!(
            apply(create("/bad", false)),
            Response::Refused(CommandError::Invalid(_))
        ));
        let names: Vec<String> = store
            .kms_keys(0)
            .unwrap()
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, vec!["app".to_string(), DEFAULT_KEY.to_string()]);
        assert_eq!(
            apply(Command::SetKmsKeyEnabled {
                name: "app".into(),
                enabled: false,
                at_ms: 2
            }),
            Response::Done
        );
        assert!(!store.kms_key(0, "app").unwrap().unwrap().enabled);
        assert_eq!(
            apply(Command::SetKmsKeyEnabled {
                name: "nope".into(),
                enabled: false,
                at_ms: 2
            }),
            Response::Refused(CommandError::NoSuchKmsKey("nope".into()))
        );
        assert!(store.kms_key(0, "nope").unwrap().is_none());
    }
}
