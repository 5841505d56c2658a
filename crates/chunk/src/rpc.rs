//! `ChunkService` over this node's chunk store: put (verified against the id), get, has, and
//! the held digests of a partition's ranges (anti-entropy between replicas).
//! There is no remote delete: only this node's GC deletes its chunk files, after checking
//! references and pins itself.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn_rpc::pb::chunk_service_server::ChunkService;
use cairn_rpc::pb::{
    ChunkIds, ChunkPiece, ChunkPresence, PutChunkReply, RangeDigest, RangeDigestsReply,
    RangeDigestsRequest,
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::{ChunkError, ChunkId, ChunkStore};

/// Bytes per gRPC message when streaming a chunk.
pub(crate) const PIECE: usize = 1 << 20;
/// Largest chunk a peer accepts.
pub(crate) const MAX_CHUNK: usize = 64 << 20;
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(30);

fn parse_id(b: &[u8]) -> Result<ChunkId, Status> {
    let arr: [u8; 32] = b
        .try_into()
        .map_err(|_| Status::invalid_argument("chunk id must be 32 bytes"))?;
    Ok(ChunkId(arr))
}

/// Cuts a chunk into `PIECE`-sized messages; the first carries the id.
pub(crate) fn pieces(id: ChunkId, mut rest: Bytes) -> Vec<ChunkPiece> {
    let mut out = Vec::new();
    let mut first = true;
    loop {
        let part = rest.split_to(rest.len().min(PIECE));
        out.push(ChunkPiece {
            id: if first { id.0.to_vec() } else { Vec::new() },
            data: part.to_vec(),
        });
        first = false;
        if rest.is_empty() {
            return out;
        }
    }
}

/// The gRPC status a local store error is answered with (peers decide on read repair by it:
/// `NotFound` and `DataLoss` mean "my copy is missing or bad").
fn status(e: ChunkError) -> Status {
    match e {
        ChunkError::NotFound(_) => Status::not_found(e.to_string()),
        ChunkError::Corrupt { .. } => Status::data_loss(e.to_string()),
        // Writers skip this node for a while and count the copy as not written.
        ChunkError::DiskFull { .. } => Status::resource_exhausted(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// `ChunkService` over this node's chunk store.
pub struct ChunkServer {
    store: ChunkStore,
}

impl ChunkServer {
    pub fn new(store: ChunkStore) -> Self {
        Self { store }
    }
}

type PieceStream = std::pin::Pin<Box<dyn Stream<Item = Result<ChunkPiece, Status>> + Send>>;

#[tonic::async_trait]
impl ChunkService for ChunkServer {
    async fn put_chunk(
        &self,
        request: Request<Streaming<ChunkPiece>>,
    ) -> Result<Response<PutChunkReply>, Status> {
        let mut stream = request.into_inner();
        let mut id: Option<ChunkId> = None;
        let mut buf = BytesMut::new();
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            if id.is_none() {
                id = Some(parse_id(&piece.id)?);
            }
            if buf.len() + piece.data.len() > MAX_CHUNK {
                return Err(Status::invalid_argument("chunk too large"));
            }
            buf.extend_from_slice(&piece.data);
        }
        let id = id.ok_or_else(|| Status::invalid_argument("empty chunk stream"))?;
        let data = buf.freeze();
        // Never store bytes that do not match their address.
        if ChunkId::of(&data) != id {
            return Err(Status::data_loss("chunk bytes do not match their id"));
        }
        let newly_written = self.store.put(id, data).await.map_err(status)?;
        Ok(Response::new(PutChunkReply { newly_written }))
    }

    type GetChunkStream = PieceStream;

    async fn get_chunk(
        &self,
        request: Request<cairn_rpc::pb::ChunkId>,
    ) -> Result<Response<Self::GetChunkStream>, Status> {
        let id = parse_id(&request.into_inner().id)?;
        let data = self.store.get(&id).await.map_err(status)?;
        let out: Vec<Result<ChunkPiece, Status>> = pieces(id, data).into_iter().map(Ok).collect();
        Ok(Response::new(Box::pin(futures::stream::iter(out))))
    }

    async fn has_chunks(
        &self,
        request: Request<ChunkIds>,
    ) -> Result<Response<ChunkPresence>, Status> {
        let mut present = Vec::new();
        for raw in request.into_inner().ids {
            let id = parse_id(&raw)?;
            present.push(self.store.has(&id).await.map_err(status)?);
        }
        Ok(Response::new(ChunkPresence { present }))
    }

    async fn range_digests(
        &self,
        request: Request<RangeDigestsRequest>,
    ) -> Result<Response<RangeDigestsReply>, Status> {
        let req = request.into_inner();
        if req.partitions == 0 || req.partition >= req.partitions {
            return Err(Status::invalid_argument("partition out of range"));
        }
        // In memory: a peer's question never makes this node walk its disk.
        let ranges = self
            .store
            .held_digests(req.partitions, req.partition)
            .into_iter()
            .map(|d| match d {
                Some(d) => RangeDigest {
                    known: true,
                    count: d.count,
                    sum: d.sum_bytes(),
                },
                None => RangeDigest::default(),
            })
            .collect();
        Ok(Response::new(RangeDigestsReply { ranges }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_chunk_and_only_the_first_names_it() {
        let data = Bytes::from(vec![7u8; PIECE * 2 + 3]);
        let id = ChunkId::of(&data);
        let p = pieces(id, data.clone());
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].id, id.0.to_vec());
        assert!(p[1].id.is_empty() && p[2].id.is_empty());
        let joined: Vec<u8> = p.iter().flat_map(|x| x.data.clone()).collect();
        assert_eq!(joined, data.to_vec());
        // An empty chunk still sends one piece carrying the id.
        let empty = pieces(ChunkId::of(b""), Bytes::new());
        assert_eq!(empty.len(), 1);
    }
}
