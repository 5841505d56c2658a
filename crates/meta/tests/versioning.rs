//! S3 versioning in the partition state machine: version ordering, null-version replacement,
//! delete markers and undelete, chunk reference accounting, usage and snapshots.

use std::collections::BTreeSet;
use std::sync::Arc;

use cairn_meta::model::{ChunkId, ChunkRef, ObjectData, ObjectHeaders, ObjectRecord};
use cairn_meta::store::object_owner;
use cairn_meta::versions::{encode_version_id, DeleteMarker, VersionEntry, NULL_VERSION};
use cairn_meta::{Command, Condition, MetaStore, RefOp, Response};

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

/// A version written at time `t` with one chunk of its own.
fn record(t: u64, versioned: bool) -> ObjectRecord {
    ObjectRecord {
        encryption: None,
        lock: None,
        part_checksums: None,
        version: encode_version_id(t, 7),
        size: 100 + t,
        etag: format!("e{t}"),
        last_modified_ms: t as i64,
        headers: ObjectHeaders::default(),
        checksum: None,
        parts: None,
        data: ObjectData::Chunks(vec![ChunkRef {
            id: ChunkId::of(&t.to_be_bytes()),
            len: 100 + t,
        }]),
        versioned,
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

fn marker(db: &redb::Database, meta: &MetaStore, key: &str, t: u64, versioned: bool) -> String {
    let m = DeleteMarker {
        version: encode_version_id(t, 7),
        versioned,
        last_modified_ms: t as i64,
    };
    let id = m.version_id().to_owned();
    let cmd = Command::PutDeleteMarker {
        bucket: "b".into(),
        key: key.into(),
        marker: m,
    };
    assert_eq!(apply(db, meta, cmd), Response::Done);
    id
}

fn delete_version(db: &redb::Database, meta: &MetaStore, key: &str, id: &str) -> Response {
    apply(
        db,
        meta,
        Command::DeleteVersion {
            bucket: "b".into(),
            key: key.into(),
            version_id: id.into(),
            at_ms: 0,
            bypass_governance: false,
        },
    )
}

/// (key, version id, is latest, is marker) of every version, in listing order.
fn listing(meta: &MetaStore) -> Vec<(String, String, bool, bool)> {
    let l = meta
        .list_versions(G, "b", "", None, None, None, 1000)
        .unwrap();
    l.entries
        .into_iter()
        .map(|v| {
            (
                v.key,
                v.entry.version_id().to_owned(),
                v.is_latest,
                matches!(v.entry, VersionEntry::Marker(_)),
            )
        })
        .collect()
}

/// Owners whose references are live after the outbox is replayed in order.
fn live_refs(meta: &MetaStore) -> BTreeSet<(ChunkId, String)> {
    let mut live = BTreeSet::new();
    for (_, op) in meta.outbox(G, 1_000_000).unwrap() {
        match op {
            RefOp::Add { chunk, owner } => {
                live.insert((chunk, owner));
            }
            RefOp::Remove { chunk, owner } => {
                live.remove(&(chunk, owner));
            }
        }
    }
    live
}

fn refs_of(key: &str, records: &[&ObjectRecord]) -> BTreeSet<(ChunkId, String)> {
    records
        .iter()
        .map(|r| (r.data.chunks()[0].id, object_owner("b", key, &r.version)))
        .collect()
}

#[test]
fn versions_list_newest_first_and_keep_their_references() {
    let (_d, db, meta) = store();
    let (r1, r2, r3) = (record(1, true), record(2, true), record(3, true));
    for r in [&r1, &r2, &r3] {
        put(&db, &meta, "k", r);
    }
    put(&db, &meta, "j", &record(4, true));
    let l = listing(&meta);
    let ids: Vec<_> = l.iter().map(|e| (e.0.as_str(), e.1.clone(), e.2)).collect();
    assert_eq!(
        ids,
        vec![
            ("j", encode_version_id(4, 7), true),
            ("k", r3.version.clone(), true),
            ("k", r2.version.clone(), false),
            ("k", r1.version.clone(), false),
        ]
    );
    let mut want = refs_of("k", &[&r1, &r2, &r3]);
    want.extend(refs_of("j", &[&record(4, true)]));
    assert_eq!(live_refs(&meta), want);
    let u = meta.bucket_usage(G, "b").unwrap();
    assert_eq!((u.objects, u.bytes), (4, 101 + 102 + 103 + 104));

    // Paging by (key, version id) markers walks the same order.
    let mut got = Vec::new();
    let (mut km, mut vm) = (None::<String>, None::<String>);
    loop {
        let p = meta
            .list_versions(G, "b", "", None, km.as_deref(), vm.as_deref(), 1)
            .unwrap();
        got.extend(p.entries.iter().map(|e| e.entry.version_id().to_owned()));
        if !p.truncated {
            break;
        }
        km = p.next_key_marker;
        vm = p.next_version_id_marker;
    }
    assert_eq!(got, l.iter().map(|e| e.1.clone()).collect::<Vec<_>>());
}

#[test]
fn markers_hide_the_key_and_removing_them_undeletes() {
    let (_d, db, meta) = store();
    let (r1, r2) = (record(1, true), record(2, true));
    put(&db, &meta, "k", &r1);
    put(&db, &meta, "k", &r2);
    let m = marker(&db, &meta, "k", 3, true);
    assert_eq!(meta.get_object(G, "b", "k").unwrap(), None);
    assert!(matches!(
        meta.latest_version(G, "b", "k").unwrap(),
        Some(VersionEntry::Marker(_))
    ));
    let l = listing(&meta);
    assert_eq!((l[0].1.as_str(), l[0].2, l[0].3), (m.as_str(), true, true));
    assert!(meta.bucket_has_data(G, "b").unwrap());
    // Both versions keep their references under the marker.
    assert_eq!(live_refs(&meta), refs_of("k", &[&r1, &r2]));

    assert_eq!(
        delete_version(&db, &meta, "k", &m),
        Response::DeletedVersion {
            found: true,
            marker: true
        }
    );
    assert_eq!(meta.get_object(G, "b", "k").unwrap(), Some(r2.clone()));
    // Deleting the current version promotes the previous one and drops only its references.
    delete_version(&db, &meta, "k", &r2.version);
    assert_eq!(meta.get_object(G, "b", "k").unwrap(), Some(r1.clone()));
    assert_eq!(live_refs(&meta), refs_of("k", &[&r1]));
    assert_eq!(
        delete_version(&db, &meta, "k", &r2.version),
        Response::DeletedVersion {
            found: false,
            marker: false
        }
    );
    delete_version(&db, &meta, "k", &r1.version);
    assert!(live_refs(&meta).is_empty());
    assert!(!meta.bucket_has_data(G, "b").unwrap());
    assert_eq!(meta.bucket_usage(G, "b").unwrap().objects, 0);
}

#[test]
fn null_writes_replace_the_null_version_and_keep_real_ones() {
    let (_d, db, meta) = store();
    let n0 = record(1, false); // before versioning
    let v1 = record(2, true); // Enabled
    let (n1, n2) = (record(3, false), record(4, false)); // Suspended
    for r in [&n0, &v1, &n1, &n2] {
        put(&db, &meta, "k", r);
    }
    let l = listing(&meta);
    let ids: Vec<_> = l.iter().map(|e| e.1.clone()).collect();
    assert_eq!(ids, vec![NULL_VERSION.to_owned(), v1.version.clone()]);
    assert_eq!(
        meta.get_version(G, "b", "k", NULL_VERSION).unwrap(),
        Some(VersionEntry::Object(n2.clone()))
    );
    assert_eq!(live_refs(&meta), refs_of("k", &[&v1, &n2]));
    // A null marker replaces the null version too.
    let m = marker(&db, &meta, "k", 5, false);
    assert_eq!(m, NULL_VERSION);
    let l = listing(&meta);
    assert_eq!(
        l.iter().map(|e| (e.1.clone(), e.3)).collect::<Vec<_>>(),
        vec![(NULL_VERSION.to_owned(), true), (v1.version.clone(), false)]
    );
    assert_eq!(live_refs(&meta), refs_of("k", &[&v1]));
    let u = meta.bucket_usage(G, "b").unwrap();
    assert_eq!((u.objects, u.bytes), (1, v1.size));
    // A null version that is noncurrent is replaced as well.
    put(&db, &meta, "k", &record(6, true));
    put(&db, &meta, "k", &record(7, false));
    let nulls = listing(&meta)
        .into_iter()
        .filter(|e| e.1 == NULL_VERSION)
        .count();
    assert_eq!(nulls, 1);
}

#[test]
fn snapshots_carry_versions() {
    let (_d, db, meta) = store();
    put(&db, &meta, "k", &record(1, true));
    put(&db, &meta, "k", &record(2, true));
    marker(&db, &meta, "k", 3, true);
    let before = listing(&meta);
    let (blob, _) = meta.export_group(G).unwrap();
    let (_d2, db2, meta2) = store();
    let txn = db2.begin_write().unwrap();
    meta2.import_group(&txn, G, &blob).unwrap();
    txn.commit().unwrap();
    assert_eq!(listing(&meta2), before);
}

/// Tags and ACLs change on any version in place — current, noncurrent or `null` — and never
/// on a delete marker; references and usage do not move.
#[test]
fn tags_and_acls_of_any_version() {
    use cairn_meta::acl::{AclGrant, AclGroup, AclPermission};
    use cairn_meta::model::Tag;
    use cairn_meta::CommandError;
    let (_d, db, meta) = store();
    let v1 = record(1, true);
    let v2 = record(2, true);
    put(&db, &meta, "k", &v1);
    put(&db, &meta, "k", &v2);
    let refs_before = live_refs(&meta);
    let tags = vec![Tag {
        key: "old".into(),
        value: "yes".into(),
    }];
    let set_tags = |id: &str| Command::SetVersionTags {
        bucket: "b".into(),
        key: "k".into(),
        version_id: id.into(),
        tags: tags.clone(),
    };
    assert_eq!(apply(&db, &meta, set_tags(&v1.version)), Response::Done);
    let read = |id: &str| match meta.get_version(G, "b", "k", id).unwrap() {
        Some(VersionEntry::Object(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(read(&v1.version).headers.tags, tags);
    assert!(read(&v2.version).headers.tags.is_empty());
    let grant = AclGrant {
        group: AclGroup::AllUsers,
        permission: AclPermission::Read,
    };
    let set_acl = |id: Option<&str>| Command::SetObjectAcl {
        bucket: "b".into(),
        key: "k".into(),
        version_id: id.map(str::to_string),
        acl: vec![grant],
    };
    assert_eq!(apply(&db, &meta, set_acl(None)), Response::Done);
    assert_eq!(read(&v2.version).headers.acl, vec![grant]);
    assert!(read(&v1.version).headers.acl.is_empty());
    assert_eq!(
        apply(&db, &meta, set_acl(Some(&v1.version))),
        Response::Done
    );
    assert_eq!(read(&v1.version).headers.acl, vec![grant]);
    assert_eq!(live_refs(&meta), refs_before);
    // Unknown versions and delete markers are refused.
    assert_eq!(
        apply(&db, &meta, set_tags(&encode_version_id(99, 7))),
        Response::Refused(CommandError::NoSuchKey)
    );
    let m = marker(&db, &meta, "k", 3, true);
    assert!(matches!(
        apply(&db, &meta, set_tags(&m)),
        Response::Refused(CommandError::Invalid(_))
    ));
    // No current object (a marker is latest): only by version id.
    assert_eq!(
        apply(&db, &meta, set_acl(None)),
        Response::Refused(CommandError::NoSuchKey)
    );
    // The `null` version, noncurrent.
    put(&db, &meta, "n", &record(10, false));
    put(&db, &meta, "n", &record(11, true));
    let null_tags = Command::SetVersionTags {
        bucket: "b".into(),
        key: "n".into(),
        version_id: NULL_VERSION.into(),
        tags: tags.clone(),
    };
    assert_eq!(apply(&db, &meta, null_tags), Response::Done);
    match meta.get_version(G, "b", "n", NULL_VERSION).unwrap() {
        Some(VersionEntry::Object(r)) => assert_eq!(r.headers.tags, tags),
        other => panic!("{other:?}"),
    }
}
