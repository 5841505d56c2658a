//! The cluster master key and what it protects: access-key secrets are sealed with it before
//! they are proposed, so the Raft log, the state machine and snapshots never hold a secret in
//! plaintext. Every node of a cluster holds the same key: `<data>/master.key` (64 hex chars,
//! mode 0600; created by the node that forms the cluster or runs alone, delivered to joining
//! nodes by the join) or `ENCRYPTION_KEY`, which overrides the file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::model::{AccessKeyRecord, KeyStatus, SealedSecret};
use crate::placement::SYSTEM_GROUP;
use crate::MetaStore;

pub const MASTER_KEY_FILE: &str = "master.key";
const FINGERPRINT_CONTEXT: &str = "cairn 2026 access key fingerprint v1";
const CHECK_CONTEXT: &str = "cairn 2026 master key check v1";

/// Why the master key could not be loaded or a secret not sealed/opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{source_name} must be 64 hex characters (32 bytes)")]
    BadKey { source_name: String },
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the secret of access key {0} cannot be opened with this node's master key (is master.key / ENCRYPTION_KEY the same on every node?)")]
    Open(String),
    #[error("sealing a secret failed")]
    Seal,
}

/// The 32-byte cluster master key.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str, source_name: &str) -> Result<Self, SecretError> {
        let mut k = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut k).map_err(|_| SecretError::BadKey {
            source_name: source_name.to_string(),
        })?;
        Ok(Self(k))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self(ChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    /// `ENCRYPTION_KEY` if given, else `<dir>/master.key` if it exists; None when neither.
    pub fn load(dir: &Path, configured: Option<&str>) -> Result<Option<Self>, SecretError> {
        if let Some(k) = configured {
            return Self::from_hex(k, "ENCRYPTION_KEY").map(Some);
        }
        let path = dir.join(MASTER_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_hex(&text, &path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecretError::Io { path, source }),
        }
    }

    /// `load`, or a new key written to `<dir>/master.key` when there is none: for the node that
    /// bootstraps a cluster, so the file exists before any join asks for it.
    pub fn load_or_create(dir: &Path, configured: Option<&str>) -> Result<Self, SecretError> {
        if let Some(k) = Self::load(dir, configured)? {
            return Ok(k);
        }
        let k = Self::generate();
        k.store(dir)?;
        Ok(k)
    }

    /// Writes the key to `<dir>/master.key` (64 hex + newline, 0600, fsynced, atomic rename).
    pub fn store(&self, dir: &Path) -> Result<(), SecretError> {
        let path = dir.join(MASTER_KEY_FILE);
        let tmp = dir.join(format!("{MASTER_KEY_FILE}.tmp"));
        let io = |source| SecretError::Io {
            path: path.clone(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(format!("{}\n", hex::encode(self.0)).as_bytes())
            .map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    /// A 32-byte key for one purpose, derived from the master key (BLAKE3 `derive_key` with
    /// `context`): e.g. the SSE-S3 key that wraps object data keys.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }

    /// A value that identifies the key without revealing it, recorded in the system group so
    /// a node with another key is refused at start instead of failing every request.
    pub fn check_value(&self) -> String {
        hex::encode(
            blake3::keyed_hash(&blake3::derive_key(CHECK_CONTEXT, &self.0), b"check").as_bytes(),
        )
    }

    /// Seals `secret` for `access_key` (random 96-bit nonce; the key id is associated data).
    pub fn seal(&self, access_key: &str, secret: &str) -> Result<SealedSecret, SecretError> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: access_key.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Seal)?;
        Ok(SealedSecret {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens a sealed secret of `access_key`.
    pub fn open(&self, access_key: &str, sealed: &SealedSecret) -> Result<String, SecretError> {
        if sealed.nonce.len() != 12 {
            return Err(SecretError::Open(access_key.to_string()));
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: access_key.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open(access_key.to_string()))?;
        String::from_utf8(plain).map_err(|_| SecretError::Open(access_key.to_string()))
    }

    /// Keyed hash of (access key, secret): equal for equal secrets, useless without the key.
    pub fn fingerprint(&self, access_key: &str, secret: &str) -> String {
        let k = blake3::derive_key(FINGERPRINT_CONTEXT, &self.0);
        let mut h = blake3::Hasher::new_keyed(&k);
        h.update(access_key.as_bytes());
        h.update(&[0]);
        h.update(secret.as_bytes());
        h.finalize().to_hex().to_string()
    }

    /// A new access-key record for `access_key`/`secret`, sealed, with no grants.
    pub fn new_record(
        &self,
        access_key: &str,
        secret: &str,
        description: &str,
        created_ms: i64,
    ) -> Result<AccessKeyRecord, SecretError> {
        Ok(AccessKeyRecord {
            access_key: access_key.to_string(),
            secret_key: String::new(),
            description: description.to_string(),
            created_ms,
            sealed: Some(self.seal(access_key, secret)?),
            fingerprint: self.fingerprint(access_key, secret),
            root: false,
            root_nodes: Vec::new(),
            status: KeyStatus::Active,
            allow_create_bucket: false,
            grants: Vec::new(),
            revoked_fingerprints: Vec::new(),
        })
    }
}

/// A key as the front ends see it: its record and, while it can sign requests, its secret.
#[derive(Clone, Debug)]
pub struct ResolvedKey {
    pub record: AccessKeyRecord,
    /// The plaintext secret (kept in memory only for signature checks); None when the key
    /// cannot sign (deleted, or sealed under another master key).
    pub secret: Option<String>,
}

/// Resolves access keys from this node's replica of the system group (so a key created,
/// disabled or deleted anywhere takes effect here as soon as the change is applied here), and
/// this node's configured root key until the system group has settled it.
pub struct KeyDirectory {
    store: MetaStore,
    master: MasterKey,
    local_root: Option<(String, String)>,
    /// True until this node's root key has been recorded (or refused) in the system group.
    root_pending: AtomicBool,
}

impl KeyDirectory {
    pub fn new(store: MetaStore, master: MasterKey, local_root: Option<(String, String)>) -> Self {
        Self {
            store,
            master,
            local_root,
            root_pending: AtomicBool::new(true),
        }
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The state machines this directory reads (this node's replica).
    pub fn store(&self) -> &MetaStore {
        &self.store
    }

    /// From now on only the system group decides about this node's root key too.
    pub fn root_settled(&self) {
        self.root_pending.store(false, Ordering::SeqCst);
    }

    /// The key named `access_key`, if the cluster (or, at start, this node's configuration)
    /// knows it. Deleted keys resolve too (so callers can tell "revoked" from "unknown") but
    /// never carry a secret.
    pub fn resolve(&self, access_key: &str) -> Option<ResolvedKey> {
        let stored = match self.store.access_key(SYSTEM_GROUP, access_key) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading the access key table");
                None
            }
        };
        if let Some(record) = stored {
            let secret = match (&record.status, &record.sealed) {
                (KeyStatus::Deleted, _) => None,
                (_, Some(sealed)) => match self.master.open(access_key, sealed) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::error!(error = %e, "access key refused");
                        None
                    }
                },
                // A record written by an older release: accepted on read until it is resealed.
                (_, None) if !record.secret_key.is_empty() => Some(record.secret_key.clone()),
                (_, None) => None,
            };
            return Some(ResolvedKey { record, secret });
        }
        match &self.local_root {
            Some((ak, secret)) if ak == access_key && self.root_pending.load(Ordering::SeqCst) => {
                let mut record = self
                    .master
                    .new_record(ak, secret, "root key of this node", 0)
                    .ok()?;
                record.root = true;
                Some(ResolvedKey {
                    record,
                    secret: Some(secret.clone()),
                })
            }
            _ => None,
        }
    }
}

/// Shared handle.
pub type Keys = Arc<KeyDirectory>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_access_key() {
        let k = MasterKey::generate();
        let sealed = k.seal("AK1", "very-secret").unwrap();
        assert_eq!(k.open("AK1", &sealed).unwrap(), "very-secret");
        assert!(!sealed
            .ciphertext
            .windows(b"very-secret".len())
            .any(|w| w == b"very-secret"));
        // Moved to another key id, or opened with another master key: refused.
        assert!(k.open("AK2", &sealed).is_err());
        assert!(MasterKey::generate().open("AK1", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(k.open("AK1", &tampered).is_err());
        // Two seals of one secret differ (random nonce); fingerprints do not.
        assert_ne!(k.seal("AK1", "very-secret").unwrap(), sealed);
        assert_eq!(
            k.fingerprint("AK1", "very-secret"),
            k.fingerprint("AK1", "very-secret")
        );
        assert_ne!(
            k.fingerprint("AK1", "very-secret"),
            k.fingerprint("AK1", "other")
        );
    }

    #[test]
    fn master_key_file_round_trips_and_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert!(MasterKey::load(dir.path(), None).unwrap().is_none());
        let k = MasterKey::generate();
        k.store(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(MASTER_KEY_FILE)).unwrap();
        assert_eq!(text.len(), 65);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(MASTER_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = MasterKey::load(dir.path(), None).unwrap().unwrap();
        assert_eq!(loaded.check_value(), k.check_value());
        let env = "11".repeat(32);
        let from_env = MasterKey::load(dir.path(), Some(&env)).unwrap().unwrap();
        assert_ne!(from_env.check_value(), k.check_value());
        assert!(MasterKey::load(dir.path(), Some("abc")).is_err());
        let other = tempfile::tempdir().unwrap();
        let created = MasterKey::load_or_create(other.path(), None).unwrap();
        let again = MasterKey::load_or_create(other.path(), None).unwrap();
        assert_eq!(created.check_value(), again.check_value());
    }

    #[test]
    fn legacy_plaintext_records_still_load_and_resolve() {
        // A record as the last release wrote it: positional msgpack, four fields, plaintext.
        let legacy =
            rmp_serde::to_vec(&("OLDROOT", "old-plain-secret", "root key of node n1", 5i64))
                .unwrap();
        let rec: AccessKeyRecord = rmp_serde::from_slice(&legacy).unwrap();
        assert!(rec.root);
        assert_eq!(rec.status, KeyStatus::Active);
        assert_eq!(rec.secret_key, "old-plain-secret");
        assert!(rec.sealed.is_none());

        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
        let store = MetaStore::new(db.clone(), 4).unwrap();
        let txn = db.begin_write().unwrap();
        store
            .apply(
                &txn,
                SYSTEM_GROUP,
                &crate::Command::PutAccessKey { record: rec },
            )
            .unwrap();
        txn.commit().unwrap();
        let keys = KeyDirectory::new(store, MasterKey::generate(), None);
        let r = keys.resolve("OLDROOT").unwrap();
        assert_eq!(r.secret.as_deref(), Some("old-plain-secret"));
        assert!(keys.resolve("nobody").is_none());
    }

    #[test]
    fn local_root_is_accepted_only_until_settled() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
        let store = MetaStore::new(db, 4).unwrap();
        let keys = KeyDirectory::new(
            store,
            MasterKey::generate(),
            Some(("ROOT".into(), "rootsecret".into())),
        );
        assert!(keys.resolve("ROOT").unwrap().record.root);
        keys.root_settled();
        assert!(keys.resolve("ROOT").is_none());
    }
}
