//! Cairn's metadata: the records (`model`), the commands proposed to Raft groups (`command`),
//! and the deterministic state machine over redb (`store`).

pub mod access;
pub mod acl;
pub mod bucket_config;
pub mod command;
pub mod config_doc;
mod config_table;
mod key_table;
pub mod keys;
pub mod kms;
pub mod lifecycle;
pub mod lifecycle_sm;
pub mod lock;
pub mod model;
pub mod placement;
pub mod query;
pub mod rebalance;
pub mod secrets;
pub mod store;
pub mod usage;
pub mod versions;

pub use command::{Command, CommandError, Condition, KeyChange, RefOp, Response};
pub use query::{Query, QueryResult};
pub use store::{AuditEntry, Listing, MetaStore};
pub use usage::BucketUsage;

/// A storage or encoding failure in the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database error: {0}")]
    Db(#[from] redb::Error),
    #[error("metadata encoding error: {0}")]
    Codec(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MetaError {
            fn from(e: $t) -> Self {
                MetaError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);
