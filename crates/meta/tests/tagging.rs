//! Tags and CORS in the state machine: object tags change in place (same version, no
//! reference or usage change) and go with the object; bucket settings go with the bucket and
//! travel in snapshots; records written before tags existed still read.

use std::sync::Arc;

use cairn_meta::bucket_config::{BucketConfig, CorsRule};
use cairn_meta::model::{BucketRecord, ObjectData, ObjectHeaders, ObjectRecord, Tag};
use cairn_meta::{Command, CommandError, Condition, MetaStore, Query, QueryResult, Response};

const SYSTEM: u64 = 0;
const PART: u64 = 1;

fn store() -> (tempfile::TempDir, Arc<redb::Database>, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    (dir, db, meta)
}

fn apply(db: &redb::Database, meta: &MetaStore, group: u64, cmd: Command) -> Response {
    let txn = db.begin_write().unwrap();
    let r = meta.apply(&txn, group, &cmd).unwrap();
    txn.commit().unwrap();
    r
}

fn tag(k: &str, v: &str) -> Tag {
    Tag {
        key: k.into(),
        value: v.into(),
    }
}

fn record(version: &str, tags: Vec<Tag>) -> ObjectRecord {
    ObjectRecord {
        versioned: false,
        version: version.into(),
        size: 3,
        etag: "e".into(),
        last_modified_ms: 0,
        headers: ObjectHeaders {
            tags,
            ..ObjectHeaders::default()
        },
        checksum: None,
        part_checksums: None,
        parts: None,
        data: ObjectData::Inline(b"abc".to_vec()),
        encryption: None,
        lock: None,
    }
}

fn object(meta: &MetaStore, key: &str) -> Option<ObjectRecord> {
    match meta
        .query(
            PART,
            &Query::GetObject {
                bucket: "b".into(),
                key: key.into(),
            },
        )
        .unwrap()
    {
        QueryResult::Object(o) => o,
        other => panic!("{other:?}"),
    }
}

fn config(meta: &MetaStore, name: &str) -> Option<BucketConfig> {
    match meta
        .query(SYSTEM, &Query::BucketConfig { name: name.into() })
        .unwrap()
    {
        QueryResult::BucketConfig(c) => c,
        other => panic!("{other:?}"),
    }
}

fn set_tags(version: Option<&str>, tags: Vec<Tag>) -> Command {
    Command::SetObjectTags {
        bucket: "b".into(),
        key: "k".into(),
        version: version.map(str::to_string),
        tags,
    }
}

#[test]
fn object_tags_change_in_place_and_go_with_the_object() {
    let (_d, db, meta) = store();
    assert_eq!(
        apply(&db, &meta, PART, set_tags(None, vec![tag("a", "1")])),
        Response::Refused(CommandError::NoSuchKey)
    );
    let put = |r: ObjectRecord| Command::PutObject {
        bucket: "b".into(),
        key: "k".into(),
        record: r,
        condition: Condition::None,
    };
    apply(&db, &meta, PART, put(record("v1", vec![tag("x", "y")])));
    let usage = meta.query(PART, &Query::PartitionUsage).unwrap();
    assert_eq!(
        apply(
            &db,
            &meta,
            PART,
            set_tags(None, vec![tag("a", "1"), tag("b", "2")])
        ),
        Response::Done
    );
    let o = object(&meta, "k").unwrap();
    assert_eq!(o.version, "v1");
    assert_eq!(o.headers.tags, vec![tag("a", "1"), tag("b", "2")]);
    assert_eq!(o.data, ObjectData::Inline(b"abc".to_vec()));
    assert_eq!(
        format!("{:?}", meta.query(PART, &Query::PartitionUsage).unwrap()),
        format!("{usage:?}")
    );
    // Only the named version.
    assert_eq!(
        apply(&db, &meta, PART, set_tags(Some("v0"), vec![])),
        Response::Refused(CommandError::NoSuchKey)
    );
    assert_eq!(
        apply(&db, &meta, PART, set_tags(Some("v1"), vec![])),
        Response::Done
    );
    assert!(object(&meta, "k").unwrap().headers.tags.is_empty());
    // An overwrite brings its own tags; a delete drops them.
    apply(&db, &meta, PART, put(record("v2", vec![tag("new", "")])));
    assert_eq!(
        object(&meta, "k").unwrap().headers.tags,
        vec![tag("new", "")]
    );
    apply(
        &db,
        &meta,
        PART,
        Command::DeleteObject {
            bucket: "b".into(),
            key: "k".into(),
            at_ms: 0,
            bypass_governance: false,
        },
    );
    assert_eq!(
        apply(&db, &meta, PART, set_tags(None, vec![])),
        Response::Refused(CommandError::NoSuchKey)
    );
}

#[test]
fn bucket_settings_live_and_die_with_the_bucket() {
    let (_d, db, meta) = store();
    let cors = vec![CorsRule {
        allowed_origins: vec!["*".into()],
        allowed_methods: vec!["GET".into()],
        ..CorsRule::default()
    }];
    let set_cors = |c: Option<Vec<CorsRule>>| Command::SetBucketCors {
        name: "b".into(),
        cors: c,
    };
    assert_eq!(config(&meta, "b"), None);
    assert_eq!(
        apply(&db, &meta, SYSTEM, set_cors(Some(cors.clone()))),
        Response::Refused(CommandError::NoSuchBucket)
    );
    let create = Command::CreateBucket {
        record: BucketRecord {
            versioning: None,
            object_lock: None,
            name: "b".into(),
            created_ms: 1,
            write_consistency: None,
            owner: None,
        },
    };
    apply(&db, &meta, SYSTEM, create.clone());
    assert_eq!(config(&meta, "b"), Some(BucketConfig::default()));
    apply(&db, &meta, SYSTEM, set_cors(Some(cors.clone())));
    apply(
        &db,
        &meta,
        SYSTEM,
        Command::SetBucketTags {
            name: "b".into(),
            tags: vec![tag("env", "prod")],
        },
    );
    let want = BucketConfig {
        tags: vec![tag("env", "prod")],
        cors: Some(cors.clone()),
        ..BucketConfig::default()
    };
    assert_eq!(config(&meta, "b"), Some(want.clone()));

    // Snapshots carry the settings.
    let (blob, _) = meta.export_group(SYSTEM).unwrap();
    let (_d2, db2, meta2) = store();
    let txn = db2.begin_write().unwrap();
    meta2.import_group(&txn, SYSTEM, &blob).unwrap();
    txn.commit().unwrap();
    assert_eq!(config(&meta2, "b"), Some(want));

    apply(&db, &meta, SYSTEM, set_cors(None));
    assert_eq!(config(&meta, "b").unwrap().cors, None);
    apply(&db, &meta, SYSTEM, set_cors(Some(cors)));
    apply(
        &db,
        &meta,
        SYSTEM,
        Command::DeleteBucket { name: "b".into() },
    );
    assert_eq!(config(&meta, "b"), None);
    // A bucket created again under the name starts without settings.
    apply(&db, &meta, SYSTEM, create);
    assert_eq!(config(&meta, "b"), Some(BucketConfig::default()));
}

/// An object record as releases before tags wrote it (positional msgpack, `ObjectHeaders`
/// with seven fields) reads as untagged.
#[test]
fn records_without_tags_still_decode() {
    #[derive(serde::Serialize)]
    struct OldHeaders {
        content_type: Option<String>,
        content_encoding: Option<String>,
        content_disposition: Option<String>,
        content_language: Option<String>,
        cache_control: Option<String>,
        expires: Option<String>,
        user: std::collections::BTreeMap<String, String>,
    }
    let old = OldHeaders {
        content_type: Some("text/plain".into()),
        content_encoding: None,
        content_disposition: None,
        content_language: None,
        cache_control: None,
        expires: None,
        user: Default::default(),
    };
    let bytes = rmp_serde::to_vec(&old).unwrap();
    let h: ObjectHeaders = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(h.content_type.as_deref(), Some("text/plain"));
    assert!(h.tags.is_empty());
}

#[test]
fn policy_block_and_ownership_are_bucket_settings() {
    use cairn_meta::bucket_config::{ObjectOwnership, PublicAccessBlock};
    let (_d, db, meta) = store();
    let policy = Command::SetBucketPolicy {
        name: "b".into(),
        policy: Some("{}".into()),
    };
    assert_eq!(
        apply(&db, &meta, SYSTEM, policy.clone()),
        Response::Refused(CommandError::NoSuchBucket)
    );
    let create = Command::CreateBucket {
        record: BucketRecord {
            name: "b".into(),
            created_ms: 1,
            write_consistency: None,
            owner: None,
            versioning: None,
            object_lock: None,
        },
    };
    apply(&db, &meta, SYSTEM, create.clone());
    // New buckets: every block on, BucketOwnerEnforced.
    let c = config(&meta, "b").unwrap();
    assert_eq!(c.public_access_block, Some(PublicAccessBlock::all()));
    assert_eq!(c.ownership, Some(ObjectOwnership::BucketOwnerEnforced));
    apply(&db, &meta, SYSTEM, policy);
    let block = Command::SetPublicAccessBlock {
        name: "b".into(),
        block: None,
    };
    apply(&db, &meta, SYSTEM, block);
    let own = Command::SetBucketOwnership {
        name: "b".into(),
        ownership: Some(ObjectOwnership::ObjectWriter),
    };
    apply(&db, &meta, SYSTEM, own);
    let c = config(&meta, "b").unwrap();
    assert_eq!(c.policy.as_deref(), Some("{}"));
    assert_eq!(c.public_access_block, None);
    assert_eq!(c.ownership, Some(ObjectOwnership::ObjectWriter));
    // Deleting and recreating the bucket resets them.
    apply(
        &db,
        &meta,
        SYSTEM,
        Command::DeleteBucket { name: "b".into() },
    );
    apply(&db, &meta, SYSTEM, create);
    assert_eq!(config(&meta, "b"), Some(BucketConfig::default()));
}
