//! How the chunk layer learns where chunks live, without knowing the cluster: a chunk's hash
//! picks its partition (`ChunkId::partition`), and a [`Placement`] says which nodes hold a
//! partition. The cluster crate implements it over its cached catalog.

use cairn_meta::model::NodeHealth;

/// One node placed on a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    pub node_id: String,
    /// Where its `ChunkService` answers.
    pub rpc_addr: String,
    /// The catalog's health verdict (reads try healthy replicas first).
    pub health: NodeHealth,
}

/// Partition placement as the chunk layer needs it.
pub trait Placement: Send + Sync + 'static {
    /// The replicas of `partition` in layout order (only nodes with a known address); empty
    /// when there is no layout yet.
    fn chunk_replicas(&self, partition: u32) -> Vec<Replica>;

    /// The partitions the layout places on `node_id`; `None` when there is no layout yet.
    fn partitions_on(&self, node_id: &str) -> Option<Vec<u32>>;

    /// Whether `node_id` has published that its disk is full (it refuses new chunk copies):
    /// writers skip it up front instead of learning it from a refused write. False when
    /// unknown.
    fn is_full(&self, _node_id: &str) -> bool {
        false
    }
}
