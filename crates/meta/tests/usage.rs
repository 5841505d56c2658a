//! Bucket usage kept by the state machine: after any sequence of puts, overwrites, deletes,
//! refused conditional puts and multipart completions, the incremental counts equal a count
//! of the objects actually stored; snapshots carry the counts; a group written before usage
//! was kept is counted once.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_meta::model::{ObjectData, ObjectHeaders, ObjectRecord, UploadRecord};
use cairn_meta::{BucketUsage, Command, Condition, MetaStore, Query, QueryResult};
use proptest::prelude::*;

fn record(size: u64, version: &str) -> ObjectRecord {
    ObjectRecord {
        versioned: false,
        version: version.into(),
        size,
        etag: "e".into(),
        last_modified_ms: 0,
        headers: ObjectHeaders::default(),
        checksum: None,
        part_checksums: None,
        parts: None,
        data: ObjectData::Inline(Vec::new()),
        encryption: None,
        lock: None,
    }
}

fn store() -> (tempfile::TempDir, Arc<redb::Database>, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    (dir, db, meta)
}

fn apply(db: &redb::Database, meta: &MetaStore, group: u64, cmd: Command) {
    let txn = db.begin_write().unwrap();
    meta.apply(&txn, group, &cmd).unwrap();
    txn.commit().unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    Put { bucket: u8, key: u8, size: u64 },
    PutIfAbsent { bucket: u8, key: u8, size: u64 },
    Delete { bucket: u8, key: u8 },
    Multipart { bucket: u8, key: u8, size: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let b = 0u8..3;
    let k = 0u8..5;
    let s = 0u64..10_000;
    prop_oneof![
        (b.clone(), k.clone(), s.clone()).prop_map(|(bucket, key, size)| Op::Put {
            bucket,
            key,
            size
        }),
        (b.clone(), k.clone(), s.clone()).prop_map(|(bucket, key, size)| Op::PutIfAbsent {
            bucket,
            key,
            size
        }),
        (b.clone(), k.clone()).prop_map(|(bucket, key)| Op::Delete { bucket, key }),
        (b, k, s).prop_map(|(bucket, key, size)| Op::Multipart { bucket, key, size }),
    ]
}

fn usage_of(meta: &MetaStore, group: u64) -> BTreeMap<String, BucketUsage> {
    match meta.query(group, &Query::PartitionUsage).unwrap() {
        QueryResult::Usages(v) => v.into_iter().collect(),
        other => panic!("unexpected {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn incremental_usage_equals_a_recount(ops in proptest::collection::vec(op(), 1..40)) {
        let (_d, db, meta) = store();
        let mut model: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let version = format!("v{i}");
            match op.clone() {
                Op::Put { bucket, key, size } => {
                    let (b, k) = (format!("b{bucket}"), format!("k{key}"));
                    apply(&db, &meta, 1, Command::PutObject {
                        bucket: b.clone(), key: k.clone(), record: record(size, &version),
                        condition: Condition::None,
                    });
                    model.insert((b, k), size);
                }
                Op::PutIfAbsent { bucket, key, size } => {
                    let (b, k) = (format!("b{bucket}"), format!("k{key}"));
                    apply(&db, &meta, 1, Command::PutObject {
                        bucket: b.clone(), key: k.clone(), record: record(size, &version),
                        condition: Condition::Absent,
                    });
                    model.entry((b, k)).or_insert(size);
                }
                Op::Delete { bucket, key } => {
                    let (b, k) = (format!("b{bucket}"), format!("k{key}"));
                    apply(&db, &meta, 1, Command::DeleteObject { bucket: b.clone(), key: k.clone(), at_ms: 0, bypass_governance: false });
                    model.remove(&(b, k));
                }
                Op::Multipart { bucket, key, size } => {
                    let (b, k) = (format!("b{bucket}"), format!("k{key}"));
                    let upload_id = format!("u{i}");
                    apply(&db, &meta, 1, Command::CreateUpload { record: UploadRecord {
                        bucket: b.clone(), key: k.clone(), upload_id: upload_id.clone(),
                        initiated_ms: 0, headers: ObjectHeaders::default(), checksum_algo: None, checksum_kind: None, lock: None, encryption: None,
                    }});
                    apply(&db, &meta, 1, Command::CompleteUpload {
                        bucket: b.clone(), key: k.clone(), upload_id, parts: vec![],
                        record: record(size, &version), condition: Condition::None,
                    });
                    model.insert((b, k), size);
                }
            }
        }
        let mut expected: BTreeMap<String, BucketUsage> = BTreeMap::new();
        for ((b, _), size) in &model {
            let u = expected.entry(b.clone()).or_default();
            *u = u.replace(None, Some(*size));
        }
        prop_assert_eq!(usage_of(&meta, 1), expected.clone());
        for b in 0..3 {
            let name = format!("b{b}");
            let got = match meta.query(1, &Query::BucketUsage { bucket: name.clone() }).unwrap() {
                QueryResult::Usage(u) => u,
                other => panic!("unexpected {other:?}"),
            };
            prop_assert_eq!(got, expected.get(&name).copied().unwrap_or_default());
        }
        // Other groups are untouched.
        prop_assert!(usage_of(&meta, 2).is_empty());

        // A snapshot carries the counts to another replica.
        let (blob, _) = meta.export_group(1).unwrap();
        let (_d2, db2, meta2) = store();
        let txn = db2.begin_write().unwrap();
        meta2.import_group(&txn, 1, &blob).unwrap();
        txn.commit().unwrap();
        prop_assert_eq!(usage_of(&meta2, 1), expected);
    }
}

#[test]
fn a_group_written_before_usage_was_kept_is_counted_once() {
    let (_d, db, meta) = store();
    for (k, size) in [("a", 5u64), ("b", 7)] {
        apply(
            &db,
            &meta,
            3,
            Command::PutObject {
                bucket: "old".into(),
                key: k.into(),
                record: record(size, k),
                condition: Condition::None,
            },
        );
    }
    // Simulate state written by a release without usage: drop the rows and the marker by
    // importing a snapshot made without them (the usage table is not in it).
    let (blob, _) = meta.export_group(3).unwrap();
    let rows: Vec<(u8, Vec<u8>, Vec<u8>)> = rmp_serde::from_slice(&blob).unwrap();
    let old_rows: Vec<_> = rows
        .into_iter()
        .filter(|(t, k, _)| *t != 11 && !(*t == 6 && k.as_slice() == b"usage_counted"))
        .collect();
    let (_d2, db2, meta2) = store();
    let txn = db2.begin_write().unwrap();
    meta2
        .import_group(&txn, 3, &rmp_serde::to_vec(&old_rows).unwrap())
        .unwrap();
    txn.commit().unwrap();
    let want = BucketUsage {
        objects: 2,
        bytes: 12,
    };
    // Read by scanning until the first write counts it.
    assert_eq!(meta2.bucket_usage(3, "old").unwrap(), want);
    apply(
        &db2,
        &meta2,
        3,
        Command::PutObject {
            bucket: "old".into(),
            key: "c".into(),
            record: record(1, "c"),
            condition: Condition::None,
        },
    );
    assert_eq!(
        usage_of(&meta2, 3),
        BTreeMap::from([(
            "old".to_string(),
            BucketUsage {
                objects: 3,
                bytes: 13
            }
        )])
    );
}
