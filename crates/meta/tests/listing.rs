//! ListObjects semantics of the state machine checked against a naive model, over random keys,
//! prefixes, delimiters, markers and page sizes; and pagination that reassembles the full list.

use std::collections::BTreeSet;
use std::sync::Arc;

use cairn_meta::model::{ObjectData, ObjectHeaders, ObjectRecord};
use cairn_meta::{Command, Condition, MetaStore};
use proptest::prelude::*;

fn tiny_record() -> ObjectRecord {
    ObjectRecord {
        versioned: false,
        version: "v".into(),
        size: 1,
        etag: "e".into(),
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

fn store_with(keys: &BTreeSet<String>) -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    let txn = db.begin_write().unwrap();
    for k in keys {
        let cmd = Command::PutObject {
            bucket: "b".into(),
            key: k.clone(),
            record: tiny_record(),
            condition: Condition::None,
        };
        meta.apply(&txn, 1, &cmd).unwrap();
    }
    // Another bucket and another group must never leak into the listing.
    let other = tiny_record();
    for (g, b) in [(1, "b0"), (2, "b"), (1, "a")] {
        let cmd = Command::PutObject {
            bucket: b.into(),
            key: "a/x".into(),
            record: other.clone(),
            condition: Condition::None,
        };
        meta.apply(&txn, g, &cmd).unwrap();
    }
    txn.commit().unwrap();
    (dir, meta)
}

/// The S3 rules, written as plainly as possible.
fn naive(
    keys: &BTreeSet<String>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> (Vec<String>, Vec<String>, bool) {
    let mut entries = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    if max == 0 {
        // max-keys=0 is an empty, non-truncated page.
        return (entries, prefixes, truncated);
    }
    for k in keys.iter().filter(|k| k.starts_with(prefix)) {
        if let Some(a) = after {
            if k.as_str() <= a {
                continue;
            }
        }
        let item = match delimiter.filter(|d| !d.is_empty()) {
            Some(d) => match k[prefix.len()..].find(d) {
                Some(i) => Err(k[..prefix.len() + i + d.len()].to_string()),
                None => Ok(k.clone()),
            },
            None => Ok(k.clone()),
        };
        if let Err(cp) = &item {
            if prefixes.last() == Some(cp) {
                continue;
            }
            if let Some(a) = after {
                // A common prefix at or before the marker was already returned.
                if cp.as_str() <= a || a.starts_with(cp.as_str()) {
                    continue;
                }
            }
        }
        if entries.len() + prefixes.len() == max {
            truncated = true;
            break;
        }
        match item {
            Ok(k) => entries.push(k),
            Err(cp) => prefixes.push(cp),
        }
    }
    (entries, prefixes, truncated)
}

fn key_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("/"),
            Just("é"),
            Just(" "),
            Just("z")
        ],
        1..6,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn listing_matches_the_naive_model(
        keys in proptest::collection::btree_set(key_strategy(), 0..40),
        prefix in prop_oneof![Just(""), Just("a"), Just("a/"), Just("b"), Just("é")],
        delimiter in prop_oneof![Just(None), Just(Some("/")), Just(Some("a")), Just(Some("/b"))],
        after in proptest::option::of(key_strategy()),
        max in 0usize..12,
    ) {
        let (_dir, meta) = store_with(&keys);
        let got = meta.list_objects(1, "b", prefix, delimiter, after.as_deref(), max).unwrap();
        let (entries, prefixes, truncated) = naive(&keys, prefix, delimiter, after.as_deref(), max);
        let got_keys: Vec<String> = got.entries.iter().map(|(k, _)| k.clone()).collect();
        prop_assert_eq!(got_keys, entries);
        prop_assert_eq!(got.common_prefixes, prefixes);
        prop_assert_eq!(got.truncated, truncated);
    }

    #[test]
    fn pages_reassemble_the_full_listing(
        keys in proptest::collection::btree_set(key_strategy(), 0..40),
        delimiter in prop_oneof![Just(None), Just(Some("/"))],
        page in 1usize..7,
    ) {
        let (_dir, meta) = store_with(&keys);
        let full = meta.list_objects(1, "b", "", delimiter, None, 10_000).unwrap();
        let mut after: Option<String> = None;
        let (mut entries, mut prefixes) = (Vec::new(), Vec::new());
        loop {
            let l = meta.list_objects(1, "b", "", delimiter, after.as_deref(), page).unwrap();
            entries.extend(l.entries.iter().map(|(k, _)| k.clone()));
            prefixes.extend(l.common_prefixes.iter().cloned());
            if !l.truncated {
                break;
            }
            after = l.last.clone();
        }
        let full_keys: Vec<String> = full.entries.iter().map(|(k, _)| k.clone()).collect();
        prop_assert_eq!(entries, full_keys);
        prop_assert_eq!(prefixes, full.common_prefixes);
    }
}

#[test]
fn catalog_changes_are_audited_but_heartbeats_are_not() {
    use cairn_meta::model::{BucketRecord, NodeHealth, NodeRecord, NodeState, WriteConsistency};
    use cairn_meta::{CommandError, Response};
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    let node = |free: u64, zone: Option<&str>| NodeRecord {
        node_id: "n1".into(),
        raft_id: 1,
        rpc_addr: "10.0.0.1:7000".into(),
        api_addr: "10.0.0.1:9000".into(),
        zone: zone.map(String::from),
        labels: Default::default(),
        cpus: 2,
        memory_bytes: 1,
        disk_capacity_bytes: 10,
        disk_free_bytes: free,
        state: NodeState::Active,
        registered_ms: 5,
        health: NodeHealth::Up,
        last_heartbeat_ms: 0,
        health_changed_ms: 0,
        maintenance: false,
    };
    let heartbeat = |node_id: &str, free: u64, at_ms: i64| Command::Heartbeat {
        node_id: node_id.into(),
        disk_capacity_bytes: 10,
        disk_free_bytes: free,
        at_ms,
    };
    let txn = db.begin_write().unwrap();
    let cmds = [
        Command::RegisterNode {
            record: node(5, None),
        },
        heartbeat("n1", 4, 9), // not audited
        Command::CreateBucket {
            record: BucketRecord {
                versioning: None,
                object_lock: None,
                name: "photos".into(),
                created_ms: 7,
                write_consistency: None,
                owner: None,
            },
        },
        Command::SetNodeState {
            node_id: "n1".into(),
            state: NodeState::Draining,
            at_ms: 10,
        },
        // A restart re-registers: it keeps the catalog's state and is not audited...
        Command::RegisterNode {
            record: node(3, None),
        },
        Command::SetNodeHealth {
            node_id: "n1".into(),
            health: NodeHealth::Down,
            at_ms: 11,
        },
        // ...unless something about the node changed.
        Command::RegisterNode {
            record: node(3, Some("z1")),
        },
        Command::SetBucketConsistency {
            name: "photos".into(),
            write_consistency: Some(WriteConsistency::All),
        },
        Command::DeleteBucket {
            name: "photos".into(),
        },
    ];
    for c in &cmds {
        assert_eq!(meta.apply(&txn, 0, c).unwrap(), Response::Done, "{c:?}");
    }
    assert_eq!(
        meta.apply(&txn, 0, &heartbeat("n9", 1, 1)).unwrap(),
        Response::Refused(CommandError::UnknownNode("n9".into()))
    );
    // The bootstrap node's placeholder (no API address) never replaces a real registration.
    let mut placeholder = node(0, None);
    placeholder.api_addr = String::new();
    assert_eq!(
        meta.apply(
            &txn,
            0,
            &Command::RegisterNode {
                record: placeholder
            }
        )
        .unwrap(),
        Response::Done
    );
    txn.commit().unwrap();
    let log = meta.audit_log(0, 0, 100).unwrap();
    let what: Vec<&str> = log.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6, 7],
        "{what:?}"
    );
    assert!(what[0].starts_with("register node n1"), "{what:?}");
    assert_eq!(what[1], "create bucket photos");
    assert_eq!(what[2], "node n1 state Active -> Draining");
    assert_eq!(what[3], "node n1 health up -> down");
    assert!(
        what[4].starts_with("update node n1") && what[4].contains("Draining"),
        "{what:?}"
    );
    assert_eq!(what[5], "bucket photos write consistency ALL");
    assert_eq!(what[6], "delete bucket photos");
    assert_eq!(meta.audit_log(0, 5, 100).unwrap().len(), 2);
    let n1 = meta.list_nodes(0).unwrap().remove(0);
    assert_eq!(n1.state, NodeState::Draining);
    assert_eq!(n1.health, NodeHealth::Down);
    assert_eq!(n1.disk_free_bytes, 3);
    assert_eq!(n1.zone.as_deref(), Some("z1"));
    assert_eq!(n1.api_addr, "10.0.0.1:9000");
    assert_eq!(n1.last_heartbeat_ms, 9);
}

#[test]
fn maintenance_and_health_change_time_survive_a_reregistration() {
    use cairn_meta::model::{NodeHealth, NodeRecord, NodeState};
    use cairn_meta::{CommandError, Response};
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 4).unwrap();
    let record = NodeRecord {
        node_id: "n1".into(),
        raft_id: 1,
        rpc_addr: "10.0.0.1:7000".into(),
        api_addr: "10.0.0.1:9000".into(),
        zone: None,
        labels: Default::default(),
        cpus: 2,
        memory_bytes: 1,
        disk_capacity_bytes: 10,
        disk_free_bytes: 5,
        state: NodeState::Active,
        registered_ms: 5,
        health: NodeHealth::Up,
        last_heartbeat_ms: 0,
        health_changed_ms: 0,
        maintenance: false,
    };
    let maintenance = |on: bool, at_ms: i64| Command::SetNodeMaintenance {
        node_id: "n1".into(),
        on,
        at_ms,
    };
    let txn = db.begin_write().unwrap();
    for c in [
        Command::RegisterNode {
            record: record.clone(),
        },
        maintenance(true, 6),
        maintenance(true, 7), // no change: not audited
        Command::SetNodeHealth {
            node_id: "n1".into(),
            health: NodeHealth::Down,
            at_ms: 8,
        },
        // A restart says nothing about maintenance or health: the catalog's stay.
        Command::RegisterNode { record },
    ] {
        assert_eq!(meta.apply(&txn, 0, &c).unwrap(), Response::Done, "{c:?}");
    }
    assert_eq!(
        meta.apply(
            &txn,
            0,
            &Command::SetNodeMaintenance {
                node_id: "n9".into(),
                on: true,
                at_ms: 9
            }
        )
        .unwrap(),
        Response::Refused(CommandError::UnknownNode("n9".into()))
    );
    txn.commit().unwrap();
    let n1 = meta.list_nodes(0).unwrap().remove(0);
    assert!(n1.maintenance);
    assert_eq!((n1.health, n1.health_changed_ms), (NodeHealth::Down, 8));
    let log = meta.audit_log(0, 0, 100).unwrap();
    let what: Vec<&str> = log.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(
        what.iter().filter(|w| w.contains("maintenance")).count(),
        1,
        "{what:?}"
    );
    assert!(what.contains(&"node n1 maintenance on"), "{what:?}");
}
