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
        ..Default::default()
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
fn config_changes_are_versioned_validated_and_kept_in_history() {
    use cairn_meta::config_doc;
    use cairn_meta::model::{NodeRecord, NodeState, WriteConsistency};
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    let txn = db.begin_write().unwrap();
    let v1 = config(1, 8, 3);
    meta.apply(&txn, 0, &Command::SetClusterConfig { config: v1.clone() })
        .unwrap();
    for n in ["n1", "n2", "n3"] {
        let record = NodeRecord {
            node_id: n.into(),
            raft_id: 1,
            rpc_addr: format!("{n}:7000"),
            api_addr: format!("{n}:9000"),
            zone: None,
            labels: Default::default(),
            cpus: 1,
            memory_bytes: 1,
            disk_capacity_bytes: 1,
            disk_free_bytes: 1,
            state: NodeState::Active,
            registered_ms: 1,
            health: Default::default(),
            last_heartbeat_ms: 0,
            health_changed_ms: 0,
            maintenance: false,
        };
        meta.apply(&txn, 0, &Command::RegisterNode { record })
            .unwrap();
    }
    let change = |config: ClusterConfig, rollback_of| Command::Audited {
        actor: "token ops".into(),
        command: Box::new(Command::ChangeConfig {
            config,
            actor: "token ops".into(),
            message: "faster acks".into(),
            rollback_of,
        }),
    };
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.changed_ms = 50;
    v2.write_consistency = Some(WriteConsistency::All);
    assert_eq!(
        meta.apply(&txn, 0, &change(v2.clone(), None)).unwrap(),
        Response::Done
    );
    // Stale: another v2.
    assert_eq!(
        meta.apply(&txn, 0, &change(v2.clone(), None)).unwrap(),
        Response::Refused(CommandError::StaleConfig(2))
    );
    // Four copies on three nodes: refused, naming the setting.
    let mut bad = v2.clone();
    bad.version = 3;
    bad.replication = 4;
    match meta.apply(&txn, 0, &change(bad, None)).unwrap() {
        Response::Refused(CommandError::InvalidConfig { field, .. }) => {
            assert_eq!(field, "replication.factor")
        }
        other => panic!("{other:?}"),
    }
    // Nothing changes: refused.
    let mut same = v2.clone();
    same.version = 3;
    assert!(matches!(
        meta.apply(&txn, 0, &change(same, None)).unwrap(),
        Response::Refused(CommandError::Invalid(_))
    ));
    // Rollback to v1 is version 3.
    let mut v3 = v1.clone();
    v3.version = 3;
    v3.changed_ms = 60;
    assert_eq!(
        meta.apply(&txn, 0, &change(v3, Some(1))).unwrap(),
        Response::Done
    );
    txn.commit().unwrap();

    let c = meta.cluster_config(0).unwrap().unwrap();
    assert_eq!((c.version, c.write_consistency), (3, None));
    let h = meta.config_history(0, 0, 10).unwrap();
    assert_eq!(
        h.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(h[0].actor, None);
    assert_eq!(h[1].actor.as_deref(), Some("token ops"));
    assert_eq!(h[1].message, "faster acks");
    assert_eq!(h[2].rollback_of, Some(1));
    assert_eq!(
        config_doc::diff(&h[1].config, &h[2].config)[0].to_string(),
        "replication.write_consistency: ALL -> unset"
    );
    assert_eq!(meta.config_history(0, 2, 10).unwrap().len(), 1);
    let audit = meta.audit_log(0, 0, 100).unwrap();
    let last = audit.last().unwrap();
    assert_eq!(last.actor.as_deref(), Some("token ops"));
    assert!(
        last.what.starts_with(
            "cluster config v3: replication.write_consistency: ALL -> unset (rollback to v1)"
        ),
        "{}",
        last.what
    );
}

#[test]
fn audit_events_record_their_outcome_and_actor_and_change_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    let txn = db.begin_write().unwrap();
    meta.apply(
        &txn,
        0,
        &Command::SetClusterConfig {
            config: config(1, 8, 3),
        },
    )
    .unwrap();
    let event = |outcome: Option<&str>| Command::Audited {
        actor: "token ops".into(),
        command: Box::new(Command::AuditEvent {
            what: "change cluster config: replication.factor=9".into(),
            outcome: outcome.map(String::from),
            at_ms: 77,
        }),
    };
    assert_eq!(
        meta.apply(&txn, 0, &event(Some("replication.factor: too many")))
            .unwrap(),
        Response::Done
    );
    meta.apply(&txn, 0, &event(None)).unwrap();
    txn.commit().unwrap();
    let log = meta.audit_log(0, 0, 10).unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(
        log[1].outcome.as_deref(),
        Some("replication.factor: too many")
    );
    assert_eq!(log[1].actor.as_deref(), Some("token ops"));
    assert_eq!(log[1].at_ms, 77);
    assert_eq!(log[2].outcome, None);
    assert_eq!(meta.cluster_config(0).unwrap().unwrap().version, 1);
}
