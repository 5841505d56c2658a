//! Bucket lifecycle in the partition state machine: the scan the worker reads (every key with
//! its latest and noncurrent versions, paged) and `LifecycleExpire`, which applies the wrapped
//! delete only while the scanned version is still where the scan saw it — so a decision taken
//! twice, or after the key changed, applies at most once.

use std::sync::Arc;

use cairn_meta::lifecycle::{decide, Decision, Expiration, LifecycleRule, NoncurrentExpiration};
use cairn_meta::lifecycle_sm::LifecycleTarget;
use cairn_meta::model::{ObjectData, ObjectHeaders, ObjectRecord};
use cairn_meta::versions::{encode_version_id, DeleteMarker, VersionEntry};
use cairn_meta::{Command, CommandError, Condition, MetaStore, Response};

const G: u64 = 1;
const DAY: i64 = 1000;

fn store() -> (tempfile::TempDir, Arc<redb::Database>, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    (dir, db, meta)
}

fn apply(db: &redb::Database, meta: &MetaStore, cmd: Command) -> Response {
    let txn = db.begin_write().unwrap();
    let r = meta.apply(&txn, G, &cmd).unwrap();
    txn.commit().unwrap();
    r
}

fn record(t: u64, versioned: bool) -> ObjectRecord {
    ObjectRecord {
        encryption: None,
        part_checksums: None,
        version: encode_version_id(t, 7),
        size: 10,
        etag: format!("e{t}"),
        last_modified_ms: t as i64,
        headers: ObjectHeaders::default(),
        checksum: None,
        parts: None,
        data: ObjectData::Inline(vec![1; 10]),
        versioned,
        lock: None,
    }
}

fn put(db: &redb::Database, meta: &MetaStore, key: &str, r: &ObjectRecord) {
    let cmd = Command::PutObject {
        bucket: "b".into(),
        key: key.into(),
        record: r.clone(),
        condition: Condition::None,
    };
    assert_eq!(apply(db, meta, cmd), Response::Done);
}

fn marker_cmd(key: &str, t: u64) -> Command {
    Command::PutDeleteMarker {
        bucket: "b".into(),
        key: key.into(),
        marker: DeleteMarker {
            version: encode_version_id(t, 9),
            versioned: true,
            last_modified_ms: t as i64,
        },
    }
}

fn expire(key: &str, target: LifecycleTarget, command: Command) -> Command {
    Command::LifecycleExpire {
        bucket: "b".into(),
        key: key.into(),
        target,
        command: Box::new(command),
    }
}

fn delete_version(key: &str, id: &str) -> Command {
    Command::DeleteVersion {
        bucket: "b".into(),
        key: key.into(),
        version_id: id.into(),
        at_ms: 1,
        bypass_governance: false,
    }
}

#[test]
fn the_scan_pages_through_keys_with_their_versions() {
    let (_d, db, meta) = store();
    for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
        put(&db, &meta, k, &record(i as u64 * 10 + 1, true));
        put(&db, &meta, k, &record(i as u64 * 10 + 2, true));
    }
    // `c` ends hidden by a marker; `e` is only a marker.
    assert_eq!(apply(&db, &meta, marker_cmd("c", 50)), Response::Done);
    assert_eq!(apply(&db, &meta, marker_cmd("e", 60)), Response::Done);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, more) = meta.lifecycle_keys(G, "b", after.as_deref(), 2).unwrap();
        assert!(page.len() <= 2);
        after = page.last().map(|k| k.key.clone());
        seen.extend(page);
        if !more {
            break;
        }
    }
    let keys: Vec<_> = seen.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c", "d", "e"]);
    let c = &seen[2];
    assert!(matches!(c.latest, Some(VersionEntry::Marker(_))));
    assert_eq!(c.noncurrent.len(), 2);
    assert_eq!(seen[0].noncurrent.len(), 1);
    assert!(matches!(&seen[0].latest, Some(VersionEntry::Object(r)) if r.last_modified_ms == 2));
    assert!(seen[4].noncurrent.is_empty());
}

#[test]
fn an_expiry_applies_once_and_never_to_a_newer_write() {
    let (_d, db, meta) = store();
    let v1 = record(1, true);
    put(&db, &meta, "k", &v1);
    let current = LifecycleTarget::Current {
        version: v1.version.clone(),
    };
    assert_eq!(
        apply(&db, &meta, expire("k", current.clone(), marker_cmd("k", 5))),
        Response::Done
    );
    // The same decision again (another leader, a retry): refused, no second marker.
    assert_eq!(
        apply(&db, &meta, expire("k", current.clone(), marker_cmd("k", 6))),
        Response::Refused(CommandError::PreconditionFailed)
    );
    let (keys, _) = meta.lifecycle_keys(G, "b", None, 10).unwrap();
    assert_eq!(keys[0].noncurrent.len(), 1, "one marker over one version");
    // A write after the scan is not expired by the stale decision.
    let v2 = record(7, true);
    put(&db, &meta, "k", &v2);
    assert_eq!(
        apply(&db, &meta, expire("k", current, marker_cmd("k", 8))),
        Response::Refused(CommandError::PreconditionFailed)
    );
    // On an unversioned key the wrapped command is the plain delete.
    let u = record(9, false);
    put(&db, &meta, "u", &u);
    let del = Command::DeleteObject {
        bucket: "b".into(),
        key: "u".into(),
        at_ms: 1,
        bypass_governance: false,
    };
    let t = LifecycleTarget::Current {
        version: u.version.clone(),
    };
    assert_eq!(
        apply(&db, &meta, expire("u", t.clone(), del.clone())),
        Response::Deleted(true)
    );
    assert_eq!(
        apply(&db, &meta, expire("u", t, del)),
        Response::Refused(CommandError::PreconditionFailed)
    );
    // A wrapped command for another key is refused outright.
    let other = Command::DeleteObject {
        bucket: "b".into(),
        key: "other".into(),
        at_ms: 1,
        bypass_governance: false,
    };
    let t = LifecycleTarget::Current {
        version: v2.version.clone(),
    };
    assert!(matches!(
        apply(&db, &meta, expire("k", t, other)),
        Response::Refused(CommandError::Invalid(_))
    ));
}

#[test]
fn noncurrent_and_marker_removals_follow_the_decisions() {
    let (_d, db, meta) = store();
    let (v1, v2) = (record(1, true), record(2, true));
    put(&db, &meta, "k", &v1);
    put(&db, &meta, "k", &v2);
    assert_eq!(apply(&db, &meta, marker_cmd("k", 3)), Response::Done);
    let rules = vec![LifecycleRule {
        id: "r".into(),
        enabled: true,
        expiration: Some(Expiration {
            expired_object_delete_marker: true,
            ..Expiration::default()
        }),
        noncurrent_expiration: Some(NoncurrentExpiration {
            days: 1,
            newer_versions: None,
        }),
        ..LifecycleRule::default()
    }];
    let (keys, _) = meta.lifecycle_keys(G, "b", None, 10).unwrap();
    let decisions = decide(&rules, &keys[0], 10 * DAY, DAY);
    assert_eq!(decisions.len(), 3, "{decisions:?}");
    // A noncurrent target never hits the latest version.
    let latest = keys[0].latest.as_ref().unwrap().version().to_owned();
    assert_eq!(
        apply(
            &db,
            &meta,
            expire(
                "k",
                LifecycleTarget::Noncurrent { version: latest },
                delete_version("k", "x")
            )
        ),
        Response::Refused(CommandError::PreconditionFailed)
    );
    // The lone-marker removal before the versions go is refused; in order, all apply.
    let last = decisions.last().cloned().unwrap();
    let (lm_version, lm_id) = match &last {
        Decision::RemoveLoneMarker {
            version,
            version_id,
        } => (version.clone(), version_id.clone()),
        other => panic!("{other:?}"),
    };
    let lone = || {
        expire(
            "k",
            LifecycleTarget::LoneMarker {
                version: lm_version.clone(),
            },
            delete_version("k", &lm_id),
        )
    };
    assert_eq!(
        apply(&db, &meta, lone()),
        Response::Refused(CommandError::PreconditionFailed)
    );
    for d in &decisions[..2] {
        let Decision::RemoveNoncurrent {
            version,
            version_id,
        } = d
        else {
            panic!("{d:?}")
        };
        let cmd = expire(
            "k",
            LifecycleTarget::Noncurrent {
                version: version.clone(),
            },
            delete_version("k", version_id),
        );
        assert!(matches!(
            apply(&db, &meta, cmd.clone()),
            Response::DeletedVersion { found: true, .. }
        ));
        assert_eq!(
            apply(&db, &meta, cmd),
            Response::Refused(CommandError::PreconditionFailed)
        );
    }
    assert!(matches!(
        apply(&db, &meta, lone()),
        Response::DeletedVersion {
            found: true,
            marker: true
        }
    ));
    let (keys, more) = meta.lifecycle_keys(G, "b", None, 10).unwrap();
    assert!(keys.is_empty() && !more);
}

#[test]
fn a_lifecycle_removal_of_a_locked_version_is_refused_until_its_date() {
    use cairn_meta::lock::{LockMode, Retention, VersionLock};
    let (_d, db, meta) = store();
    let mut v1 = record(1, true);
    v1.lock = Some(VersionLock {
        retention: Some(Retention {
            mode: LockMode::Governance,
            until_ms: 1_000,
        }),
        legal_hold: false,
    });
    put(&db, &meta, "k", &v1);
    put(&db, &meta, "k", &record(2, true));
    let target = LifecycleTarget::Noncurrent {
        version: v1.version.clone(),
    };
    let id = v1.version_id().to_string();
    let at = |at_ms: i64| Command::DeleteVersion {
        bucket: "b".into(),
        key: "k".into(),
        version_id: id.clone(),
        at_ms,
        bypass_governance: false,
    };
    // The wrapped delete goes through the same apply as a user's, object lock included.
    assert!(matches!(
        apply(&db, &meta, expire("k", target.clone(), at(999))),
        Response::Refused(CommandError::ObjectLocked(_))
    ));
    let (keys, _) = meta.lifecycle_keys(G, "b", None, 10).unwrap();
    assert_eq!(keys[0].noncurrent.len(), 1, "the locked version stays");
    assert!(matches!(
        apply(&db, &meta, expire("k", target, at(1_000))),
        Response::DeletedVersion { found: true, .. }
    ));
}
