//! Conditional writes in the state machine: `PutObject` and `CompleteUpload` check their
//! condition against the current version inside the apply, refuse with the error S3 answers
//! (412 PreconditionFailed, or 404 NoSuchKey for an ETag condition on a missing key) and then
//! change nothing: neither the object nor the upload.

use std::sync::Arc;

use cairn_meta::model::{ObjectData, ObjectHeaders, ObjectRecord, PartRecord, UploadRecord};
use cairn_meta::{Command, CommandError, Condition, MetaStore, Response};

const G: u64 = 1;

fn record(version: &str, etag: &str) -> ObjectRecord {
    ObjectRecord {
        versioned: false,
        version: version.into(),
        size: 1,
        etag: etag.into(),
        last_modified_ms: 0,
        headers: ObjectHeaders::default(),
        checksum: None,
        part_checksums: None,
        parts: None,
        data: ObjectData::Inline(vec![1]),
        encryption: None,
        lock: None,
    }
}

fn put(key: &str, version: &str, etag: &str, condition: Condition) -> Command {
    Command::PutObject {
        bucket: "b".into(),
        key: key.into(),
        record: record(version, etag),
        condition,
    }
}

struct Sm {
    _dir: tempfile::TempDir,
    db: Arc<redb::Database>,
    meta: MetaStore,
}

impl Sm {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
        let meta = MetaStore::new(db.clone(), 4).unwrap();
        Sm {
            _dir: dir,
            db,
            meta,
        }
    }

    fn apply(&self, cmd: Command) -> Response {
        let txn = self.db.begin_write().unwrap();
        let r = self.meta.apply(&txn, G, &cmd).unwrap();
        txn.commit().unwrap();
        r
    }

    fn version(&self, key: &str) -> Option<String> {
        self.meta
            .get_object(G, "b", key)
            .unwrap()
            .map(|r| r.version)
    }
}

#[test]
fn put_conditions_are_checked_in_the_apply() {
    let sm = Sm::new();
    assert_eq!(
        sm.apply(put("k", "v1", "e1", Condition::Absent)),
        Response::Done
    );
    assert_eq!(
        sm.apply(put("k", "v2", "e2", Condition::Absent)),
        Response::Refused(CommandError::PreconditionFailed)
    );
    assert_eq!(
        sm.apply(put("k", "v2", "e2", Condition::EtagMatches("other".into()))),
        Response::Refused(CommandError::PreconditionFailed)
    );
    assert_eq!(sm.version("k").as_deref(), Some("v1"));
    assert_eq!(
        sm.apply(put("k", "v2", "e2", Condition::EtagMatches("e1".into()))),
        Response::Done
    );
    assert_eq!(sm.version("k").as_deref(), Some("v2"));
    // Two writes that both read ETag e1: the second one applied is refused.
    assert_eq!(
        sm.apply(put("k", "v3", "e3", Condition::EtagMatches("e1".into()))),
        Response::Refused(CommandError::PreconditionFailed)
    );
    assert_eq!(
        sm.apply(put(
            "missing",
            "v1",
            "e1",
            Condition::EtagMatches("e1".into())
        )),
        Response::Refused(CommandError::NoSuchKey)
    );
    assert_eq!(sm.version("missing"), None);
}

#[test]
fn complete_conditions_are_checked_in_the_apply_and_keep_the_upload() {
    let sm = Sm::new();
    let upload = UploadRecord {
        upload_id: "u1".into(),
        bucket: "b".into(),
        key: "k".into(),
        initiated_ms: 0,
        headers: ObjectHeaders::default(),
        checksum_algo: None,
        checksum_kind: None,
        lock: None,
        encryption: None,
    };
    assert_eq!(
        sm.apply(Command::CreateUpload { record: upload }),
        Response::Done
    );
    let part = PartRecord {
        part_number: 1,
        version: "p1".into(),
        size: 1,
        etag: "pe".into(),
        last_modified_ms: 0,
        checksum: None,
        data: ObjectData::Inline(vec![1]),
        sse_salt: Vec::new(),
    };
    let put_part = Command::PutPart {
        bucket: "b".into(),
        key: "k".into(),
        upload_id: "u1".into(),
        part,
    };
    assert_eq!(sm.apply(put_part), Response::Done);
    let complete = |condition| Command::CompleteUpload {
        bucket: "b".into(),
        key: "k".into(),
        upload_id: "u1".into(),
        parts: vec![(1, "pe".into())],
        record: record("u1", "mp-1"),
        condition,
    };
    assert_eq!(
        sm.apply(complete(Condition::EtagMatches("e".into()))),
        Response::Refused(CommandError::NoSuchKey)
    );
    assert_eq!(
        sm.apply(put("k", "v1", "e1", Condition::None)),
        Response::Done
    );
    assert_eq!(
        sm.apply(complete(Condition::Absent)),
        Response::Refused(CommandError::PreconditionFailed)
    );
    // Refused twice, the upload is still open and completes once its condition holds.
    assert!(sm.meta.get_upload(G, "b", "k", "u1").unwrap().is_some());
    assert_eq!(
        sm.apply(complete(Condition::EtagMatches("e1".into()))),
        Response::Done
    );
    assert_eq!(sm.version("k").as_deref(), Some("u1"));
    assert!(sm.meta.get_upload(G, "b", "k", "u1").unwrap().is_none());
}
