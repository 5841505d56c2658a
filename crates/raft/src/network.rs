//! Raft transport. A one-node cluster has no peers, so every RPC target is unreachable by
//! definition; openraft never sends one while the node is the group's only voter. The gRPC
//! `RaftService` that multiplexes all groups between nodes replaces this when nodes join.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use crate::TypeConfig;

/// Transport of a node that hosts every replica of its groups itself.
#[derive(Clone, Default)]
pub struct LocalOnlyNetwork;

/// Client for a peer this node cannot reach.
pub struct NoRoute {
    target: u64,
}

impl NoRoute {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<u64, BasicNode, E> {
        let e = std::io::Error::other(format!(
            "node {} is not reachable from a one-node cluster",
            self.target
        ));
        RPCError::Unreachable(Unreachable::new(&e))
    }
}

impl RaftNetworkFactory<TypeConfig> for LocalOnlyNetwork {
    type Network = NoRoute;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        NoRoute { target }
    }
}

impl RaftNetwork<TypeConfig> for NoRoute {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable())
    }
}
