//! S3 Object Lock in the state machines: every command that removes a version refuses a
//! protected one inside its apply (at the command's own time), retention changes follow the
//! GOVERNANCE/COMPLIANCE rules, and the bucket's lock needs versioning Enabled for good.

use std::sync::Arc;

use cairn_meta::lock::{BucketLock, LockChange, LockMode, Retention, VersionLock};
use cairn_meta::model::{BucketRecord, ObjectData, ObjectHeaders, ObjectRecord, Versioning};
use cairn_meta::versions::{encode_version_id, VersionEntry};
use cairn_meta::{Command, CommandError, Condition, MetaStore, Response};

const G: u64 = 1;

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

fn record(t: u64, versioned: bool, lock: Option<VersionLock>) -> ObjectRecord {
    ObjectRecord {
        encryption: None,
        lock,
        part_checksums: None,
        version: encode_version_id(t, 7),
        size: 1,
        etag: format!("e{t}"),
        last_modified_ms: t as i64,
        headers: ObjectHeaders::default(),
        checksum: None,
        parts: None,
        data: ObjectData::Inline(vec![1]),
        versioned,
    }
}

fn retained(mode: LockMode, until_ms: i64) -> Option<VersionLock> {
    Some(VersionLock {
        retention: Some(Retention { mode, until_ms }),
        legal_hold: false,
    })
}

fn put(db: &redb::Database, meta: &MetaStore, r: &ObjectRecord) -> Response {
    apply(
        db,
        meta,
        Command::PutObject {
            bucket: "b".into(),
            key: "k".into(),
            record: r.clone(),
            condition: Condition::None,
        },
    )
}

fn delete_version(
    db: &redb::Database,
    meta: &MetaStore,
    id: &str,
    at_ms: i64,
    bypass_governance: bool,
) -> Response {
    apply(
        db,
        meta,
        Command::DeleteVersion {
            bucket: "b".into(),
            key: "k".into(),
            version_id: id.into(),
            at_ms,
            bypass_governance,
        },
    )
}

fn locked(r: Response) -> bool {
    matches!(r, Response::Refused(CommandError::ObjectLocked(_)))
}

#[test]
fn delete_version_is_refused_until_the_commands_time_passes_the_date() {
    let (_d, db, meta) = store();
    let v = record(10, true, retained(LockMode::Compliance, 1_000));
    assert_eq!(put(&db, &meta, &v), Response::Done);
    let id = v.version_id().to_owned();
    assert!(locked(delete_version(&db, &meta, &id, 999, true)));
    // Refused: nothing changed.
    assert!(meta.get_version(G, "b", "k", &id).unwrap().is_some());
    // The command's time decides, not the applying node's clock.
    assert_eq!(
        delete_version(&db, &meta, &id, 1_000, false),
        Response::DeletedVersion {
            found: true,
            marker: false
        }
    );
    assert_eq!(meta.get_version(G, "b", "k", &id).unwrap(), None);
}

#[test]
fn governance_yields_to_the_bypass_and_legal_hold_to_nothing() {
    let (_d, db, meta) = store();
    let v = record(10, true, retained(LockMode::Governance, 1_000));
    put(&db, &meta, &v);
    let id = v.version_id().to_owned();
    // Noncurrent now: the check covers versions in `sm_versions` too.
    put(&db, &meta, &record(20, true, None));
    assert!(locked(delete_version(&db, &meta, &id, 500, false)));
    let hold = Command::SetObjectLock {
        bucket: "b".into(),
        key: "k".into(),
        version_id: Some(id.clone()),
        change: LockChange::LegalHold(true),
        bypass_governance: false,
        at_ms: 500,
    };
    assert_eq!(apply(&db, &meta, hold), Response::Done);
    assert!(locked(delete_version(&db, &meta, &id, 500, true)));
    assert!(locked(delete_version(&db, &meta, &id, 5_000, true)));
    let release = Command::SetObjectLock {
        bucket: "b".into(),
        key: "k".into(),
        version_id: Some(id.clone()),
        change: LockChange::LegalHold(false),
        bypass_governance: false,
        at_ms: 500,
    };
    assert_eq!(apply(&db, &meta, release), Response::Done);
    match meta.get_version(G, "b", "k", &id).unwrap() {
        Some(VersionEntry::Object(r)) => assert_eq!(r.lock.map(|l| l.legal_hold), Some(false)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        delete_version(&db, &meta, &id, 500, true),
        Response::DeletedVersion { found: true, .. }
    ));
}

#[test]
fn delete_object_and_null_replacement_respect_the_lock() {
    let (_d, db, meta) = store();
    // A `null` version under a legal hold (locked after lock was enabled on a bucket that
    // had unversioned objects).
    let hold = Some(VersionLock {
        retention: None,
        legal_hold: true,
    });
    assert_eq!(put(&db, &meta, &record(10, false, hold)), Response::Done);
    let del = Command::DeleteObject {
        bucket: "b".into(),
        key: "k".into(),
        at_ms: 20,
        bypass_governance: true,
    };
    assert!(locked(apply(&db, &meta, del)));
    // A `null` write or `null` marker would replace it: refused too.
    assert!(locked(put(&db, &meta, &record(20, false, None))));
    let marker = Command::PutDeleteMarker {
        bucket: "b".into(),
        key: "k".into(),
        marker: cairn_meta::versions::DeleteMarker {
            version: encode_version_id(30, 1),
            versioned: false,
            last_modified_ms: 30,
        },
    };
    assert!(locked(apply(&db, &meta, marker)));
    // A versioned write keeps it as a noncurrent version: allowed.
    assert_eq!(put(&db, &meta, &record(40, true, None)), Response::Done);
    assert!(meta.get_version(G, "b", "k", "null").unwrap().is_some());
}

#[test]
fn retention_changes_follow_the_modes() {
    let (_d, db, meta) = store();
    let v = record(10, true, retained(LockMode::Compliance, 1_000));
    put(&db, &meta, &v);
    let set = |until: Option<(LockMode, i64)>, bypass: bool| Command::SetObjectLock {
        bucket: "b".into(),
        key: "k".into(),
        version_id: None,
        change: LockChange::Retention(until.map(|(mode, until_ms)| Retention { mode, until_ms })),
        bypass_governance: bypass,
        at_ms: 100,
    };
    assert!(locked(apply(
        &db,
        &meta,
        set(Some((LockMode::Compliance, 900)), true)
    )));
    assert!(locked(apply(&db, &meta, set(None, true))));
    assert!(locked(apply(
        &db,
        &meta,
        set(Some((LockMode::Governance, 2_000)), true)
    )));
    assert_eq!(
        apply(&db, &meta, set(Some((LockMode::Compliance, 2_000)), false)),
        Response::Done
    );
    let missing = Command::SetObjectLock {
        bucket: "b".into(),
        key: "nope".into(),
        version_id: None,
        change: LockChange::LegalHold(true),
        bypass_governance: false,
        at_ms: 0,
    };
    assert_eq!(
        apply(&db, &meta, missing),
        Response::Refused(CommandError::NoSuchKey)
    );
}

#[test]
fn bucket_lock_needs_versioning_enabled_for_good() {
    let (_d, db, meta) = store();
    let create = Command::CreateBucket {
        record: BucketRecord {
            name: "b".into(),
            created_ms: 0,
            write_consistency: None,
            owner: None,
            versioning: None,
            object_lock: None,
        },
    };
    assert_eq!(apply(&db, &meta, create), Response::Done);
    let lock = || Command::SetBucketObjectLock {
        name: "b".into(),
        lock: BucketLock::default(),
    };
    assert!(matches!(
        apply(&db, &meta, lock()),
        Response::Refused(CommandError::InvalidBucketState(_))
    ));
    let versioning = |state| Command::SetBucketVersioning {
        name: "b".into(),
        state,
    };
    assert_eq!(
        apply(&db, &meta, versioning(Versioning::Enabled)),
        Response::Done
    );
    assert_eq!(apply(&db, &meta, lock()), Response::Done);
    assert!(matches!(
        apply(&db, &meta, versioning(Versioning::Suspended)),
        Response::Refused(CommandError::InvalidBucketState(_))
    ));
    assert_eq!(
        apply(&db, &meta, versioning(Versioning::Enabled)),
        Response::Done
    );
}
