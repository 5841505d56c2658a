//! Cluster-wide settings and access keys in the system group's state machine.

use std::sync::Arc;

use cairn_meta::model::{AccessKeyRecord, ClusterConfig, KeyStatus};
use cairn_meta::{Command, CommandError, MetaStore, Response};

fn config(version: u64, partitions: u32, replication: usize) -> ClusterConfig {
    ClusterConfig {
        version,
        partitions,
        replication,
        desired_voters: 3,
        placement_require: vec!["disk=ssd".into()],
        placement_prefer: vec![],
        placement_avoid: vec!["rack in (r9)".into()],
        changed_ms: 1,
    }
}

fn key(id: &str, secret: &str) -> Command {
    Command::PutAccessKey {
        // As the last release wrote them: plaintext, root.
        record: AccessKeyRecord {
            access_key: id.into(),
            secret_key: secret.into(),
            description: "root key of node n1".into(),
            created_ms: 2,
            sealed: None,
            fingerprint: String::new(),
            root: true,
            root_nodes: vec![],
            status: KeyStatus::Active,
            allow_create_bucket: false,
            grants: vec![],
            revoked_fingerprints: vec![],
        },
    }
}

#[test]
fn config_versions_advance_and_partitions_never_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    let txn = db.begin_write().unwrap();
    let set = |c| Command::SetClusterConfig { config: c };
    assert_eq!(
        meta.apply(&txn, 0, &set(config(1, 8, 3))).unwrap(),
        Response::Done
    );
    // A second "version 1" (another bootstrap racing) is refused; the first stands.
    assert_eq!(
        meta.apply(&txn, 0, &set(config(1, 16, 3))).unwrap(),
        Response::Refused(CommandError::StaleConfig(1))
    );
    assert!(matches!(
        meta.apply(&txn, 0, &set(config(2, 16, 3))).unwrap(),
        Response::Refused(CommandError::Invalid(_))
    ));
    assert_eq!(
        meta.apply(&txn, 0, &set(config(2, 8, 2))).unwrap(),
        Response::Done
    );
    txn.commit().unwrap();
    let c = meta.cluster_config(0).unwrap().unwrap();
    assert_eq!((c.version, c.partitions, c.replication), (2, 8, 2));
    let what: Vec<String> = meta
        .audit_log(0, 0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.what)
        .collect();
    assert_eq!(
        what,
        vec![
            "cluster config v1: partitions=8 replication=3 voters=3 require=[disk=ssd] avoid=[rack in (r9)]",
            "cluster config v2: partitions=8 replication=2 voters=3 require=[disk=ssd] avoid=[rack in (r9)]",
        ]
    );
}

#[test]
fn access_keys_are_added_once_and_never_audited_with_their_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    let txn = db.begin_write().unwrap();
    assert_eq!(
        meta.apply(&txn, 0, &key("AK1", "s3cret-1")).unwrap(),
        Response::Done
    );
    // Re-adding the same key (a node restarting) is harmless; another secret is refused.
    assert_eq!(
        meta.apply(&txn, 0, &key("AK1", "s3cret-1")).unwrap(),
        Response::Done
    );
    assert_eq!(
        meta.apply(&txn, 0, &key("AK1", "other")).unwrap(),
        Response::Refused(CommandError::AccessKeyExists)
    );
    txn.commit().unwrap();
    assert_eq!(
        meta.access_key(0, "AK1").unwrap().unwrap().secret_key,
        "s3cret-1"
    );
    assert!(meta.access_key(0, "AK2").unwrap().is_none());
    let log = meta.audit_log(0, 0, 10).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].what, "add access key AK1 (root key of node n1)");
    assert!(!log[0].what.contains("s3cret"));
}

#[test]
fn audit_notes_record_actions_taken_outside_the_state_machine_with_their_actor() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    let txn = db.begin_write().unwrap();
    let note = Command::AuditNote {
        at_ms: 42,
        what: "node exec log-level on n1: ok".into(),
    };
    let cmd = Command::Audited {
        actor: "token ops".into(),
        command: Box::new(note),
    };
    assert_eq!(meta.apply(&txn, 0, &cmd).unwrap(), Response::Done);
    txn.commit().unwrap();
    let log = meta.audit_log(0, 0, 10).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].at_ms, log[0].what.as_str(), log[0].actor.as_deref()),
        (42, "node exec log-level on n1: ok", Some("token ops"))
    );
}
