//! Property-based fuzzing of Raft command and query decoding and of the state machine
//! (issue 10 item 8). Commands and queries arrive as msgpack (`ControlService.Propose/Query`,
//! Raft log entries), so arbitrary and mutated bytes must decode to a value or an error, never
//! panic; generated commands round-trip through the encoding; and any sequence of generated
//! commands, applied and then queried, leaves the store answering without a panic.
//!
//! Budget: proptest's default (256 cases per property); longer runs:
//! `PROPTEST_CASES=100000 cargo test -p cairn-meta --test fuzz_commands` (docs/TESTING.md).

use std::sync::Arc;

use cairn_meta::model::{
    AccessKeyRecord, BucketRecord, ChunkId, ChunkRef, ClusterConfig, LayoutRecord, NodeHealth,
    NodeRecord, ObjectData, ObjectHeaders, ObjectRecord, PartRecord, UploadRecord,
};
use cairn_meta::{AuditEntry, Command, Condition, MetaStore, Query, QueryResult, RefOp, Response};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-c]{1,3}", "\\PC{0,6}"]
}

fn chunk() -> impl Strategy<Value = ChunkId> {
    prop_oneof![
        (0u8..4).prop_map(|b| ChunkId([b; 32])),
        any::<[u8; 32]>().prop_map(ChunkId)
    ]
}

fn data() -> impl Strategy<Value = ObjectData> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(ObjectData::Inline),
        proptest::collection::vec((chunk(), 0u64..1 << 40), 0..4).prop_map(|c| {
            ObjectData::Chunks(
                c.into_iter()
                    .map(|(id, len)| ChunkRef { id, len })
                    .collect(),
            )
        }),
    ]
}

fn record() -> impl Strategy<Value = ObjectRecord> {
    (
        name(),
        any::<u64>(),
        name(),
        any::<i64>(),
        proptest::option::of(proptest::collection::vec(0u64..1 << 33, 0..4)),
        data(),
    )
        .prop_map(
            |(version, size, etag, last_modified_ms, parts, data)| ObjectRecord {
                versioned: false,
                version,
                size,
                etag,
                last_modified_ms,
                headers: ObjectHeaders::default(),
                checksum: None,
                part_checksums: None,
                parts,
                data,
                encryption: None,
                lock: None,
            },
        )
}

fn condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        Just(Condition::None),
        Just(Condition::Absent),
        name().prop_map(Condition::EtagMatches)
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (name(), any::<i64>()).prop_map(|(name, created_ms)| Command::CreateBucket {
            record: BucketRecord {
                versioning: None,
                object_lock: None,
                name,
                created_ms,
                write_consistency: None,
                owner: None,
            }
        }),
        name().prop_map(|name| Command::DeleteBucket { name }),
        (name(), name()).prop_map(|(cluster_id, name)| Command::FormCluster { cluster_id, name }),
        (name(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(|(node_id, c, f, at_ms)| {
            Command::Heartbeat {
                node_id,
                disk_capacity_bytes: c,
                disk_free_bytes: f,
                at_ms,
            }
        }),
        (name(), 0u8..3, any::<i64>()).prop_map(|(node_id, h, at_ms)| Command::SetNodeHealth {
            node_id,
            health: [NodeHealth::Up, NodeHealth::Suspect, NodeHealth::Down][h as usize],
            at_ms,
        }),
        (name(), any::<bool>(), any::<i64>()).prop_map(|(node_id, on, at_ms)| {
            Command::SetNodeMaintenance { node_id, on, at_ms }
        }),
        (
            any::<u64>(),
            0usize..8,
            proptest::collection::vec(proptest::collection::vec(name(), 0..3), 0..4),
            any::<i64>()
        )
            .prop_map(|(version, replication, assignments, created_ms)| {
                Command::SetLayout {
                    layout: LayoutRecord {
                        version,
                        replication,
                        assignments,
                        created_ms,
                    },
                }
            }),
        (name(), name(), record(), condition()).prop_map(|(bucket, key, record, condition)| {
            Command::PutObject {
                bucket,
                key,
                record,
                condition,
            }
        }),
        (name(), name()).prop_map(|(bucket, key)| Command::DeleteObject {
            bucket,
            key,
            at_ms: 0,
            bypass_governance: false
        }),
        (name(), name(), name(), any::<i64>()).prop_map(
            |(upload_id, bucket, key, initiated_ms)| {
                Command::CreateUpload {
                    record: UploadRecord {
                        upload_id,
                        bucket,
                        key,
                        initiated_ms,
                        headers: ObjectHeaders::default(),
                        checksum_algo: None,
                        checksum_kind: None,
                        lock: None,
                        encryption: None,
                    },
                }
            }
        ),
        (
            name(),
            name(),
            name(),
            0u32..12,
            name(),
            any::<u64>(),
            data()
        )
            .prop_map(
                |(bucket, key, upload_id, part_number, version, size, data)| Command::PutPart {
                    bucket,
                    key,
                    upload_id,
                    part: PartRecord {
                        part_number,
                        version,
                        size,
                        etag: "e".into(),
                        last_modified_ms: 0,
                        checksum: None,
                        data,
                        sse_salt: Vec::new(),
                    },
                }
            ),
        (
            name(),
            name(),
            name(),
            proptest::collection::vec((0u32..12, name()), 0..4),
            record(),
            condition()
        )
            .prop_map(|(bucket, key, upload_id, parts, record, condition)| {
                Command::CompleteUpload {
                    bucket,
                    key,
                    upload_id,
                    parts,
                    record,
                    condition,
                }
            }),
        (name(), name(), name()).prop_map(|(bucket, key, upload_id)| Command::AbortUpload {
            bucket,
            key,
            upload_id
        }),
        proptest::collection::vec((any::<bool>(), chunk(), name()), 0..6).prop_map(|ops| {
            Command::RefOps {
                ops: ops
                    .into_iter()
                    .map(|(add, chunk, owner)| {
                        if add {
                            RefOp::Add { chunk, owner }
                        } else {
                            RefOp::Remove { chunk, owner }
                        }
                    })
                    .collect(),
            }
        }),
        any::<u64>().prop_map(|up_to| Command::OutboxAck { up_to }),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    let max = prop_oneof![0usize..5, any::<usize>()];
    prop_oneof![
        name().prop_map(|name| Query::GetBucket { name }),
        Just(Query::ListBuckets),
        (name(), name()).prop_map(|(bucket, key)| Query::GetObject { bucket, key }),
        (
            name(),
            name(),
            proptest::option::of(name()),
            proptest::option::of(name()),
            max.clone()
        )
            .prop_map(
                |(bucket, prefix, delimiter, after, max)| Query::ListObjects {
                    bucket,
                    prefix,
                    delimiter,
                    after,
                    max
                }
            ),
        (name(), any::<u32>(), max.clone()).prop_map(|(upload_id, after, max)| Query::ListParts {
            upload_id,
            after,
            max
        }),
        (name(), name(), proptest::option::of(name()), max).prop_map(
            |(bucket, prefix, delimiter, max)| Query::ListUploads {
                bucket,
                prefix,
                delimiter,
                after: None,
                max
            }
        ),
        name().prop_map(|bucket| Query::BucketHasData { bucket }),
        chunk().prop_map(|chunk| Query::ChunkRefCount { chunk }),
        Just(Query::ListNodes),
        Just(Query::Layout),
    ]
}

/// Decodes `bytes` as every type that crosses the wire or the disk; none may panic.
fn decode_everything(bytes: &[u8]) {
    let _ = rmp_serde::from_slice::<Command>(bytes);
    let _ = rmp_serde::from_slice::<Query>(bytes);
    let _ = rmp_serde::from_slice::<Response>(bytes);
    let _ = rmp_serde::from_slice::<QueryResult>(bytes);
    let _ = rmp_serde::from_slice::<AuditEntry>(bytes);
    let _ = rmp_serde::from_slice::<ObjectRecord>(bytes);
    let _ = rmp_serde::from_slice::<UploadRecord>(bytes);
    let _ = rmp_serde::from_slice::<PartRecord>(bytes);
    let _ = rmp_serde::from_slice::<BucketRecord>(bytes);
    let _ = rmp_serde::from_slice::<NodeRecord>(bytes);
    let _ = rmp_serde::from_slice::<LayoutRecord>(bytes);
    let _ = rmp_serde::from_slice::<ClusterConfig>(bytes);
    let _ = rmp_serde::from_slice::<AccessKeyRecord>(bytes);
}

/// Runs `q` against the store the way a replica would.
fn run_query(meta: &MetaStore, group: u64, q: &Query) {
    let _ = match q {
        Query::GetBucket { name } => meta.get_bucket(group, name).map(drop),
        Query::ListBuckets => meta.list_buckets(group).map(drop),
        Query::GetObject { bucket, key } => meta.get_object(group, bucket, key).map(drop),
        Query::ListObjects {
            bucket,
            prefix,
            delimiter,
            after,
            max,
        } => meta
            .list_objects(
                group,
                bucket,
                prefix,
                delimiter.as_deref(),
                after.as_deref(),
                *max,
            )
            .map(drop),
        Query::ListParts {
            upload_id,
            after,
            max,
        } => meta.list_parts(group, upload_id, *after, *max).map(drop),
        Query::BucketHasData { bucket } => meta.bucket_has_data(group, bucket).map(drop),
        Query::ChunkRefCount { chunk } => meta.chunk_ref_count(group, chunk).map(drop),
        Query::ListNodes => meta.list_nodes(group).map(drop),
        Query::Layout => meta.layout(group).map(drop),
        _ => Ok(()),
    };
}

proptest! {
    #[test]
    fn fuzz_decode_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn fuzz_commands_round_trip(cmd in command(), q in query()) {
        let bytes = rmp_serde::to_vec(&cmd).unwrap();
        prop_assert_eq!(rmp_serde::from_slice::<Command>(&bytes).unwrap(), cmd.clone());
        let named = rmp_serde::to_vec_named(&cmd).unwrap();
        prop_assert_eq!(rmp_serde::from_slice::<Command>(&named).unwrap(), cmd);
        let bytes = rmp_serde::to_vec(&q).unwrap();
        prop_assert_eq!(rmp_serde::from_slice::<Query>(&bytes).unwrap(), q);
    }

    #[test]
    fn fuzz_mutated_commands_decode_or_error(
        cmd in command(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = rmp_serde::to_vec(&cmd).unwrap();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        decode_everything(&bytes);
        decode_everything(&bytes[..cut.index(bytes.len() + 1)]);
        if let Ok(c) = rmp_serde::from_slice::<Command>(&bytes) {
            let again = rmp_serde::to_vec(&c).unwrap();
            prop_assert_eq!(rmp_serde::from_slice::<Command>(&again).unwrap(), c);
        }
    }

    #[test]
    fn fuzz_state_machine_applies_any_command_sequence(
        cmds in proptest::collection::vec(command(), 1..12),
        queries in proptest::collection::vec(query(), 1..6),
        group in 0u64..3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
        let meta = MetaStore::new(db.clone(), 2).unwrap();
        let txn = db.begin_write().unwrap();
        for cmd in &cmds {
            // Refusals and storage errors are answers; a panic is the bug.
            let _ = meta.apply(&txn, group, cmd);
        }
        txn.commit().unwrap();
        for q in &queries {
            run_query(&meta, group, q);
        }
        let _ = meta.outbox(group, usize::MAX);
        let _ = meta.audit_log(group, 0, usize::MAX);
    }
}
