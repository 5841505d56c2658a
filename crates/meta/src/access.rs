//! The one authorization decision of Cairn, shared by every front end (S3, FileService): what
//! an access key may do to a bucket. Pure functions over the key's record and the bucket's
//! owner, so S3 and FileService can never disagree.
//!
//! Rules, in order: a key that is not active may do nothing; a root key may do everything; the
//! key that created a bucket owns it; otherwise the key's grants decide (a grant names a bucket
//! or a name prefix `logs-*`, and `owner` ⊃ `write` ⊃ `read`). A key without a matching grant
//! sees nothing: it is refused and the bucket is left out of its listings.

use crate::model::{AccessKeyRecord, BucketRecord, Grant, KeyStatus, Permission};

/// Whether a grant's bucket pattern covers `bucket`.
pub fn pattern_matches(pattern: &str, bucket: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => bucket.starts_with(prefix),
        None => pattern == bucket,
    }
}

/// Checks a grant's bucket pattern: a bucket name, or a name prefix followed by `*`.
pub fn valid_pattern(pattern: &str) -> Result<(), String> {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    if pattern.is_empty() {
        return Err("the bucket of a grant must not be empty".into());
    }
    if body.contains('*') {
        return Err(format!(
            "bucket pattern {pattern:?}: `*` is only allowed at the end (a name prefix)"
        ));
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(format!(
            "bucket pattern {pattern:?}: bucket names use lowercase letters, digits, '-' and '.'"
        ));
    }
    Ok(())
}

/// The highest permission `grants` give on `bucket`.
pub fn granted(grants: &[Grant], bucket: &str) -> Option<Permission> {
    grants
        .iter()
        .filter(|g| pattern_matches(&g.bucket, bucket))
        .map(|g| g.permission)
        .max()
}

/// Whether `key` may act with `need` on `bucket`, whose owner (the key that created it) is
/// `owner` when known.
pub fn allows(key: &AccessKeyRecord, bucket: &str, need: Permission, owner: Option<&str>) -> bool {
    if key.status != KeyStatus::Active {
        return false;
    }
    if key.root || owner == Some(key.access_key.as_str()) {
        return true;
    }
    granted(&key.grants, bucket).is_some_and(|p| p >= need)
}

/// Whether `key` may create a bucket named `bucket`: root keys, keys allowed to create
/// buckets, and keys with an `owner` grant covering the name.
pub fn may_create_bucket(key: &AccessKeyRecord, bucket: &str) -> bool {
    key.status == KeyStatus::Active
        && (key.root
            || key.allow_create_bucket
            || granted(&key.grants, bucket) == Some(Permission::Owner))
}

/// Whether `bucket` appears in `key`'s bucket listings.
pub fn sees(key: &AccessKeyRecord, bucket: &BucketRecord) -> bool {
    allows(key, &bucket.name, Permission::Read, bucket.owner.as_deref())
}

/// Whether deciding needs the bucket's owner: the key is active and neither being root nor its
/// grants allow `need` (callers skip the owner lookup otherwise).
pub fn needs_owner_lookup(key: &AccessKeyRecord, bucket: &str, need: Permission) -> bool {
    key.status == KeyStatus::Active && !allows(key, bucket, need, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(grants: &[(&str, Permission)]) -> AccessKeyRecord {
        AccessKeyRecord {
            access_key: "AK".into(),
            secret_key: String::new(),
            description: "t".into(),
            created_ms: 0,
            sealed: None,
            fingerprint: String::new(),
            root: false,
            root_nodes: vec![],
            status: KeyStatus::Active,
            allow_create_bucket: false,
            grants: grants
                .iter()
                .map(|(b, p)| Grant {
                    bucket: b.to_string(),
                    permission: *p,
                })
                .collect(),
            revoked_fingerprints: vec![],
        }
    }

    use Permission::*;

    #[test]
    fn a_key_without_grants_may_do_nothing() {
        let k = key(&[]);
        for need in [Read, Write, Owner] {
            assert!(!allows(&k, "backups", need, None));
        }
        assert!(!may_create_bucket(&k, "backups"));
        assert!(!allows(&k, "backups", Read, Some("SOMEONE")));
    }

    #[test]
    fn grants_are_levels_and_prefixes() {
        let k = key(&[("backups", Write), ("logs-*", Read), ("team-*", Owner)]);
        assert!(allows(&k, "backups", Read, None));
        assert!(allows(&k, "backups", Write, None));
        assert!(!allows(&k, "backups", Owner, None));
        assert!(!allows(&k, "backups2", Read, None));
        assert!(allows(&k, "logs-2026", Read, None));
        assert!(!allows(&k, "logs-2026", Write, None));
        assert!(!allows(&k, "logs", Read, None));
        assert!(allows(&k, "team-a", Owner, None));
        assert!(may_create_bucket(&k, "team-b"));
        assert!(!may_create_bucket(&k, "backups-new"));
        // The highest matching grant wins.
        let k = key(&[("*", Read), ("data", Write)]);
        assert!(allows(&k, "anything", Read, None));
        assert!(allows(&k, "data", Write, None));
        assert!(!allows(&k, "anything", Write, None));
    }

    #[test]
    fn owners_root_and_status() {
        let mut k = key(&[]);
        k.allow_create_bucket = true;
        assert!(may_create_bucket(&k, "mine"));
        assert!(allows(&k, "mine", Owner, Some("AK")));
        assert!(!allows(&k, "theirs", Read, Some("OTHER")));
        let mut root = key(&[]);
        root.root = true;
        assert!(allows(&root, "x", Owner, None));
        assert!(may_create_bucket(&root, "x"));
        for status in [KeyStatus::Disabled, KeyStatus::Deleted] {
            let mut r = root.clone();
            r.status = status;
            assert!(!allows(&r, "x", Read, None));
            assert!(!may_create_bucket(&r, "x"));
            let mut o = k.clone();
            o.status = status;
            assert!(!allows(&o, "mine", Read, Some("AK")));
        }
    }

    #[test]
    fn patterns_are_checked() {
        assert!(valid_pattern("backups").is_ok());
        assert!(valid_pattern("logs-*").is_ok());
        assert!(valid_pattern("*").is_ok());
        assert!(valid_pattern("").is_err());
        assert!(valid_pattern("a*b").is_err());
        assert!(valid_pattern("Upper").is_err());
    }
}
