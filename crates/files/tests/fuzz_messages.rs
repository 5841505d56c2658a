//! Property-based fuzzing of every gRPC message Cairn decodes (issue 10 item 8): FileService,
//! ControlService, ChunkService and RaftService requests and replies from `proto/cairn.proto`.
//! Arbitrary bytes, and structurally valid protobuf with random field numbers, wire types and
//! payloads, must decode to a message or an error, never panic; whatever decodes re-encodes to
//! bytes that decode to the same message.
//!
//! (It lives in cairn-files because that crate already depends on cairn-rpc and is where
//! untrusted clients' messages arrive.)
//!
//! Budget: proptest's default (256 cases per property); longer runs:
//! `PROPTEST_CASES=100000 cargo test -p cairn-files --test fuzz_messages` (docs/TESTING.md).

use cairn_rpc::pb;
use proptest::prelude::*;
use prost::Message;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One protobuf field: small field numbers hit real fields, any wire type, payloads of the
/// right shape (including nested messages one level down) or deliberately short.
fn field(depth: u32) -> BoxedStrategy<Vec<u8>> {
    let leaf = (
        1u64..20,
        0u8..6,
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(num, wt, v, bytes)| {
            let mut out = Vec::new();
            varint((num << 3) | u64::from(wt), &mut out);
            match wt {
                0 => varint(v, &mut out),
                1 => out.extend_from_slice(&v.to_le_bytes()),
                2 => {
                    varint(bytes.len() as u64, &mut out);
                    out.extend_from_slice(&bytes);
                }
                5 => out.extend_from_slice(&(v as u32).to_le_bytes()),
                // Groups (3, 4) are not proto3; prost must refuse them cleanly.
                _ => out.extend_from_slice(&bytes),
            }
            out
        });
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        3 => leaf,
        1 => (1u64..20, proptest::collection::vec(field(depth - 1), 0..4)).prop_map(|(num, inner)| {
            let inner = inner.concat();
            let mut out = Vec::new();
            varint((num << 3) | 2, &mut out);
            varint(inner.len() as u64, &mut out);
            out.extend_from_slice(&inner);
            out
        }),
    ]
    .boxed()
}

fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        proptest::collection::vec(field(2), 0..12).prop_map(|f| f.concat()),
        // A valid prefix cut anywhere.
        (
            proptest::collection::vec(field(2), 1..8),
            any::<prop::sample::Index>()
        )
            .prop_map(|(f, cut)| {
                let b = f.concat();
                let at = cut.index(b.len() + 1);
                b[..at].to_vec()
            }),
    ]
}

/// Decodes as `M`; if that works, the canonical encoding must decode to the same message.
fn decodes_or_errors<M: Message + Default + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    if let Ok(m) = M::decode(bytes) {
        let again = M::decode(m.encode_to_vec().as_slice());
        prop_assert_eq!(again.as_ref(), Ok(&m));
        prop_assert_eq!(m.encoded_len(), m.encode_to_vec().len());
    }
    Ok(())
}

macro_rules! every_message {
    ($bytes:expr, $($t:ident),* $(,)?) => {
        $( decodes_or_errors::<pb::$t>($bytes)?; )*
    };
}

proptest! {
    #[test]
    fn fuzz_every_message_decodes_or_errors(bytes in wire_bytes()) {
        every_message!(
            &bytes,
            // RaftService
            RaftMessage, RaftBatch,
            // ChunkService
            ChunkId, ChunkIds, ChunkPresence, ChunkPiece, PutChunkReply,
            // ControlService
            NodeInfo, RegisterNodeRequest, RegisterNodeReply, HeartbeatRequest, HeartbeatReply,
            GetLayoutRequest, PartitionReplicas, GetLayoutReply, HelloRequest, HelloReply,
            ProposeRequest, ProposeReply, QueryRequest, QueryReply,
            // FileService
            BucketRef, BucketInfo, DeleteBucketReply, ListBucketsRequest, ListBucketsReply,
            FileRef, UploadHeader, UploadPiece, FileInfo, DownloadRequest, DownloadPiece,
            ListFilesRequest, ListFilesReply, DeleteFileReply,
        );
    }
}
