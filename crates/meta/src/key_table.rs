//! Access keys, operator tokens and the master-key check in the system group's state machine:
//! the apply side of the key and token commands, and their reads. Secrets arrive sealed
//! (`crate::secrets`); nothing here ever sees or audits one.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use crate::access::valid_pattern;
use crate::command::{Command, CommandError, KeyChange, Response};
use crate::keys;
use crate::model::{AccessKeyRecord, KeyStatus, TokenRecord};
use crate::store::{decode, encode_named, KEYS, SM_META, TOKENS};
use crate::{MetaError, MetaStore};

const MASTER_KEY_CHECK: &str = "master_key_check";

/// Turns a key into a tombstone: no secret, no grants, its fingerprint never accepted again.
fn tombstone(rec: &mut AccessKeyRecord) {
    if !rec.fingerprint.is_empty() {
        rec.revoked_fingerprints
            .push(std::mem::take(&mut rec.fingerprint));
    }
    rec.status = KeyStatus::Deleted;
    rec.sealed = None;
    rec.secret_key.clear();
    rec.grants.clear();
    rec.root_nodes.clear();
    rec.allow_create_bucket = false;
}

/// A legacy (pre-grants) root record of `node_id`: no node list, named after the node.
fn legacy_root_of(rec: &AccessKeyRecord, node_id: &str) -> bool {
    rec.root
        && rec.root_nodes.is_empty()
        && rec.description == format!("root key of node {node_id}")
}

impl MetaStore {
    pub(crate) fn apply_key_command(
        &self,
        txn: &WriteTransaction,
        group: u64,
        cmd: &Command,
    ) -> Result<Response, MetaError> {
        match cmd {
            Command::SetRootKey { node_id, record } => {
                self.set_root_key(txn, group, node_id, record)
            }
            Command::CreateAccessKey { record } => {
                for g in &record.grants {
                    if let Err(e) = valid_pattern(&g.bucket) {
                        return Ok(Response::Refused(CommandError::Invalid(e)));
                    }
                }
                if record.sealed.is_none() || !record.secret_key.is_empty() {
                    return Ok(Response::Refused(CommandError::Invalid(
                        "a new access key must carry a sealed secret".into(),
                    )));
                }
                let mut t = txn.open_table(KEYS)?;
                let k = keys::bucket(group, &record.access_key);
                if t.get(k.as_slice())?.is_some() {
                    return Ok(Response::Refused(CommandError::AccessKeyExists));
                }
                t.insert(k.as_slice(), encode_named(record)?.as_slice())?;
                drop(t);
                let grants: Vec<String> = record
                    .grants
                    .iter()
                    .map(|g| format!("{}={}", g.bucket, g.permission.as_str()))
                    .collect();
                self.audit(
                    txn,
                    group,
                    record.created_ms,
                    format!(
                        "create access key {} ({}) grants [{}]{}",
                        record.access_key,
                        record.description,
                        grants.join(", "),
                        if record.allow_create_bucket {
                            " may create buckets"
                        } else {
                            ""
                        }
                    ),
                )?;
                Ok(Response::Done)
            }
            Command::UpdateAccessKey {
                access_key,
                change,
                at_ms,
            } => {
                let mut t = txn.open_table(KEYS)?;
                let k = keys::bucket(group, access_key);
                let mut rec: AccessKeyRecord = match t.get(k.as_slice())? {
                    Some(v) => decode(v.value())?,
                    None => {
                        return Ok(Response::Refused(CommandError::NoSuchAccessKey(
                            access_key.clone(),
                        )))
                    }
                };
                if rec.status == KeyStatus::Deleted {
                    return Ok(Response::Refused(CommandError::NoSuchAccessKey(
                        access_key.clone(),
                    )));
                }
                let what = match change {
                    KeyChange::Status(KeyStatus::Deleted) => {
                        return Ok(Response::Refused(CommandError::Invalid(
                            "delete a key with DeleteAccessKey".into(),
                        )))
                    }
                    KeyChange::Status(s) => {
                        rec.status = *s;
                        format!("access key {access_key} {}", s.as_str())
                    }
                    KeyChange::Grant(g) => {
                        if let Err(e) = valid_pattern(&g.bucket) {
                            return Ok(Response::Refused(CommandError::Invalid(e)));
                        }
                        rec.grants.retain(|o| o.bucket != g.bucket);
                        rec.grants.push(g.clone());
                        format!(
                            "grant access key {access_key} {} on {}",
                            g.permission.as_str(),
                            g.bucket
                        )
                    }
                    KeyChange::RemoveGrant(bucket) => {
                        let before = rec.grants.len();
                        rec.grants.retain(|o| o.bucket != *bucket);
                        if rec.grants.len() == before {
                            return Ok(Response::Refused(CommandError::Invalid(format!(
                                "access key {access_key} has no grant on {bucket}"
                            ))));
                        }
                        format!("remove grant of access key {access_key} on {bucket}")
                    }
                    KeyChange::AllowCreateBucket(allow) => {
                        rec.allow_create_bucket = *allow;
                        format!("access key {access_key} may create buckets: {allow}")
                    }
                    KeyChange::Rotate {
                        sealed,
                        fingerprint,
                    } => {
                        if rec.revoked_fingerprints.contains(fingerprint) {
                            return Ok(Response::Refused(CommandError::AccessKeyRevoked(
                                access_key.clone(),
                            )));
                        }
                        if !rec.fingerprint.is_empty() {
                            rec.revoked_fingerprints
                                .push(std::mem::take(&mut rec.fingerprint));
                        }
                        rec.fingerprint = fingerprint.clone();
                        rec.sealed = Some(sealed.clone());
                        rec.secret_key.clear();
                        format!("rotate the secret of access key {access_key}")
                    }
                    KeyChange::Seal {
                        sealed,
                        fingerprint,
                    } => {
                        if rec.sealed.is_some() || rec.secret_key.is_empty() {
                            return Ok(Response::Refused(CommandError::Invalid(format!(
                                "access key {access_key} has no plaintext secret to seal"
                            ))));
                        }
                        rec.secret_key.clear();
                        rec.sealed = Some(sealed.clone());
                        rec.fingerprint = fingerprint.clone();
                        format!("seal the plaintext secret of access key {access_key}")
                    }
                };
                t.insert(k.as_slice(), encode_named(&rec)?.as_slice())?;
                drop(t);
                self.audit(txn, group, *at_ms, what)?;
                Ok(Response::Done)
            }
            Command::DeleteAccessKey { access_key, at_ms } => {
                let mut t = txn.open_table(KEYS)?;
                let k = keys::bucket(group, access_key);
                let mut rec: AccessKeyRecord = match t.get(k.as_slice())? {
                    Some(v) => decode(v.value())?,
                    None => {
                        return Ok(Response::Refused(CommandError::NoSuchAccessKey(
                            access_key.clone(),
                        )))
                    }
                };
                if rec.status == KeyStatus::Deleted {
                    return Ok(Response::Refused(CommandError::NoSuchAccessKey(
                        access_key.clone(),
                    )));
                }
                tombstone(&mut rec);
                t.insert(k.as_slice(), encode_named(&rec)?.as_slice())?;
                drop(t);
                self.audit(
                    txn,
                    group,
                    *at_ms,
                    format!("delete access key {access_key}"),
                )?;
                Ok(Response::Done)
            }
            Command::SetMasterKeyCheck { check } => {
                let mut meta = txn.open_table(SM_META)?;
                let k = keys::sm_meta(group, MASTER_KEY_CHECK);
                if let Some(v) = meta.get(k.as_slice())? {
                    let existing: String = decode(v.value())?;
                    return Ok(if existing == *check {
                        Response::Done
                    } else {
                        Response::Refused(CommandError::MasterKeyMismatch)
                    });
                }
                meta.insert(k.as_slice(), encode_named(check)?.as_slice())?;
                drop(meta);
                self.audit(txn, group, 0, "record the master key check value".into())?;
                Ok(Response::Done)
            }
            Command::CreateToken { record } => {
                let mut t = txn.open_table(TOKENS)?;
                let (s, e) = (keys::group_start(group), keys::group_end(group));
                for item in t.range(s.as_slice()..e.as_slice())? {
                    let (_, v) = item?;
                    let other: TokenRecord = decode(v.value())?;
                    if other.name == record.name && other.revoked_ms.is_none() {
                        return Ok(Response::Refused(CommandError::TokenExists(
                            record.name.clone(),
                        )));
                    }
                }
                let k = keys::bucket(group, &record.hash);
                t.insert(k.as_slice(), encode_named(record)?.as_slice())?;
                drop(t);
                let expiry = match record.expires_ms {
                    Some(ms) => format!("expires at {ms}"),
                    None => "never expires".into(),
                };
                self.audit(
                    txn,
                    group,
                    record.created_ms,
                    format!(
                        "create token {} scope {} by {} ({expiry})",
                        record.name,
                        record.scope.as_str(),
                        record.creator
                    ),
                )?;
                Ok(Response::Done)
            }
            Command::RevokeToken { name, at_ms } => {
                let mut t = txn.open_table(TOKENS)?;
                let (s, e) = (keys::group_start(group), keys::group_end(group));
                let mut hits: Vec<(Vec<u8>, TokenRecord)> = Vec::new();
                for item in t.range(s.as_slice()..e.as_slice())? {
                    let (k, v) = item?;
                    let rec: TokenRecord = decode(v.value())?;
                    if rec.name == *name && rec.revoked_ms.is_none() {
                        hits.push((k.value().to_vec(), rec));
                    }
                }
                if hits.is_empty() {
                    return Ok(Response::Refused(CommandError::NoSuchToken(name.clone())));
                }
                for (k, mut rec) in hits {
                    rec.revoked_ms = Some(*at_ms);
                    t.insert(k.as_slice(), encode_named(&rec)?.as_slice())?;
                }
                drop(t);
                self.audit(txn, group, *at_ms, format!("revoke token {name}"))?;
                Ok(Response::Done)
            }
            other => Ok(Response::Refused(CommandError::Invalid(format!(
                "not a key command: {other:?}"
            )))),
        }
    }

    fn set_root_key(
        &self,
        txn: &WriteTransaction,
        group: u64,
        node_id: &str,
        record: &AccessKeyRecord,
    ) -> Result<Response, MetaError> {
        let mut t = txn.open_table(KEYS)?;
        let k = keys::bucket(group, &record.access_key);
        let existing: Option<AccessKeyRecord> = match t.get(k.as_slice())? {
            Some(v) => Some(decode(v.value())?),
            None => None,
        };
        // Decide about this key first: a refusal changes nothing.
        let mut audits = Vec::new();
        let stored = match existing {
            None => {
                let mut r = record.clone();
                r.root = true;
                r.root_nodes = vec![node_id.to_string()];
                r.status = KeyStatus::Active;
                audits.push(format!(
                    "add root key {} of node {node_id}",
                    record.access_key
                ));
                Some(r)
            }
            Some(e) => {
                if e.status == KeyStatus::Deleted
                    || e.revoked_fingerprints.contains(&record.fingerprint)
                {
                    return Ok(Response::Refused(CommandError::AccessKeyRevoked(
                        record.access_key.clone(),
                    )));
                }
                if !e.root {
                    return Ok(Response::Refused(CommandError::AccessKeyExists));
                }
                let mut r = e.clone();
                if r.sealed.is_none() {
                    // Written by an older release in plaintext: seal it now.
                    r.secret_key.clear();
                    r.sealed = record.sealed.clone();
                    r.fingerprint = record.fingerprint.clone();
                    audits.push(format!("seal legacy root key {}", record.access_key));
                } else if r.fingerprint != record.fingerprint {
                    r.revoked_fingerprints
                        .push(std::mem::take(&mut r.fingerprint));
                    r.sealed = record.sealed.clone();
                    r.fingerprint = record.fingerprint.clone();
                    audits.push(format!(
                        "rotate the secret of root key {} (node {node_id})",
                        record.access_key
                    ));
                }
                if !r.root_nodes.iter().any(|n| n == node_id) {
                    r.root_nodes.push(node_id.to_string());
                    r.root_nodes.sort();
                    audits.push(format!(
                        "node {node_id} uses root key {}",
                        record.access_key
                    ));
                }
                (r != e).then_some(r)
            }
        };
        // This node no longer vouches for its other root keys; one nobody vouches for is revoked.
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        let mut others: Vec<(Vec<u8>, AccessKeyRecord)> = Vec::new();
        for item in t.range(s.as_slice()..e.as_slice())? {
            let (key, v) = item?;
            let rec: AccessKeyRecord = decode(v.value())?;
            if rec.access_key != record.access_key
                && rec.status != KeyStatus::Deleted
                && rec.root
                && (rec.root_nodes.iter().any(|n| n == node_id) || legacy_root_of(&rec, node_id))
            {
                others.push((key.value().to_vec(), rec));
            }
        }
        for (key, mut rec) in others {
            rec.root_nodes.retain(|n| n != node_id);
            if rec.root_nodes.is_empty() {
                tombstone(&mut rec);
                audits.push(format!(
                    "revoke root key {} (node {node_id} now uses {}; no node uses it)",
                    rec.access_key, record.access_key
                ));
            } else {
                audits.push(format!(
                    "node {node_id} no longer uses root key {}",
                    rec.access_key
                ));
            }
            t.insert(key.as_slice(), encode_named(&rec)?.as_slice())?;
        }
        if let Some(r) = stored {
            t.insert(k.as_slice(), encode_named(&r)?.as_slice())?;
        }
        drop(t);
        for what in audits {
            self.audit(txn, group, record.created_ms, what)?;
        }
        Ok(Response::Done)
    }

    // ---- reads ----

    /// Every access key record (tombstones included), by id.
    pub fn list_access_keys(&self, group: u64) -> Result<Vec<AccessKeyRecord>, MetaError> {
        self.scan(KEYS, group)
    }

    /// Every token record (revoked ones included).
    pub fn list_tokens(&self, group: u64) -> Result<Vec<TokenRecord>, MetaError> {
        self.scan(TOKENS, group)
    }

    /// The token whose hash is `hash` (hex BLAKE3).
    pub fn token(&self, group: u64, hash: &str) -> Result<Option<TokenRecord>, MetaError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(TOKENS)?;
        let v = t.get(keys::bucket(group, hash).as_slice())?;
        match v {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// The master key check value recorded at formation.
    pub fn master_key_check(&self, group: u64) -> Result<Option<String>, MetaError> {
        self.get_sm_meta(group, MASTER_KEY_CHECK)
    }

    fn scan<T: serde::de::DeserializeOwned>(
        &self,
        def: redb::TableDefinition<&[u8], &[u8]>,
        group: u64,
    ) -> Result<Vec<T>, MetaError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(def)?;
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        let mut out = Vec::new();
        for item in t.range(s.as_slice()..e.as_slice())? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}
