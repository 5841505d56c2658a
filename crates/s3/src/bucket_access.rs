//! The settings of each bucket that every request needs: the compiled policy, the public
//! access block, the ownership controls and ACL (access), and the lifecycle rules (the
//! `x-amz-expiration` header), cached per bucket.
//!
//! Staleness bound: an entry is read from this node's replica of the system group (no leader
//! round trip) and kept for [`TTL`]; a change made through this node drops the entry at once.
//! A change made through another node is therefore enforced here within `TTL` plus this
//! replica's apply lag (milliseconds in a healthy cluster). A policy is compiled only when its
//! text changed, so refreshing costs one local read per bucket per `TTL`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_meta::bucket_config::{BucketConfig, ObjectOwnership, PublicAccessBlock};
use cairn_object::{ObjectError, ObjectService, ReadConsistency};
use parking_lot::Mutex;

use crate::policy::Policy;

/// How long a cached entry is trusted.
pub(crate) const TTL: Duration = Duration::from_secs(1);
/// Entries kept before the cache is cleared (bounded memory with many buckets).
const MAX_ENTRIES: usize = 10_000;

/// One bucket's access settings.
#[derive(Debug, Default)]
pub(crate) struct BucketAccess {
    pub policy_text: Option<String>,
    pub policy: Option<Arc<Policy>>,
    /// The stored policy no longer compiles (a stricter parser after an upgrade): requests
    /// other than a root key's are refused rather than evaluated without it.
    pub broken: bool,
    pub block: Option<PublicAccessBlock>,
    pub ownership: Option<ObjectOwnership>,
    /// The bucket's ACL as allow statements (`acl.rs`); empty when it is private.
    pub acl: Option<Arc<Policy>>,
    /// Lifecycle rules, for the advisory `x-amz-expiration` header (`lifecycle.rs`).
    pub lifecycle: Option<Vec<cairn_meta::lifecycle::LifecycleRule>>,
}

impl BucketAccess {
    fn of(bucket: &str, c: BucketConfig, previous: Option<&BucketAccess>) -> Self {
        let (policy, broken) = match &c.policy {
            None => (None, false),
            // Same text as before: reuse the compiled policy.
            Some(t) if previous.is_some_and(|p| p.policy_text.as_ref() == Some(t)) => (
                previous.and_then(|p| p.policy.clone()),
                previous.is_some_and(|p| p.broken),
            ),
            Some(t) => match Policy::parse(t, bucket) {
                Ok(p) => (Some(Arc::new(p)), false),
                Err(e) => {
                    tracing::warn!(bucket, error = %e, "stored bucket policy does not compile; refusing non-root requests");
                    (None, true)
                }
            },
        };
        let acl =
            (!c.acl.is_empty()).then(|| Arc::new(crate::acl::to_policy(bucket, None, &c.acl)));
        Self {
            policy_text: c.policy,
            policy,
            broken,
            block: c.public_access_block,
            ownership: c.ownership,
            acl,
            lifecycle: c.lifecycle,
        }
    }

    /// Whether object ACLs are disabled (ownership `BucketOwnerEnforced`).
    pub(crate) fn acls_disabled(&self) -> bool {
        self.ownership == Some(ObjectOwnership::BucketOwnerEnforced)
    }

    /// Whether ACL grants take part in access decisions: ACLs are enabled and public ones
    /// (every grant Cairn stores is to a group, so public) are not ignored.
    pub(crate) fn acls_in_effect(&self) -> bool {
        !self.acls_disabled() && !self.block().ignore_public_acls
    }

    pub(crate) fn block(&self) -> PublicAccessBlock {
        self.block.unwrap_or_default()
    }
}

/// The per-bucket cache, shared by the access hook and the operations that change it.
pub(crate) struct AccessCache {
    objects: ObjectService,
    entries: Mutex<HashMap<String, (Instant, Arc<BucketAccess>)>>,
}

impl AccessCache {
    pub(crate) fn new(objects: ObjectService) -> Self {
        Self {
            objects,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `bucket`'s settings (the defaults for a bucket that does not exist: the operation
    /// itself answers NoSuchBucket).
    pub(crate) async fn get(&self, bucket: &str) -> Result<Arc<BucketAccess>, ObjectError> {
        let previous = {
            let entries = self.entries.lock();
            match entries.get(bucket) {
                Some((at, a)) if at.elapsed() < TTL => return Ok(a.clone()),
                Some((_, a)) => Some(a.clone()),
                None => None,
            }
        };
        let config = match self
            .objects
            .bucket_config(bucket, ReadConsistency::Stale)
            .await
        {
            Ok(c) => c,
            Err(ObjectError::NoSuchBucket) => BucketConfig::default(),
            Err(e) => return Err(e),
        };
        let access = Arc::new(BucketAccess::of(bucket, config, previous.as_deref()));
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(bucket.to_string(), (Instant::now(), access.clone()));
        Ok(access)
    }

    /// Drops `bucket`'s entry after a change made through this node.
    pub(crate) fn invalidate(&self, bucket: &str) {
        self.entries.lock().remove(bucket);
    }
}
