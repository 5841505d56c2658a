//! The openraft state machine of one group: applies committed commands through
//! `cairn_meta::MetaStore::apply`, one redb transaction per batch of entries.
//!
//! State-machine transactions commit without their own fsync (`Durability::None`): the log is
//! durable before an entry is committed, redb makes them durable with the log writer's next
//! fsync, and after a crash openraft re-applies from the last durable `applied` id.

use std::io::Cursor;

use cairn_meta::{MetaStore, Response};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::{Durability, ReadableDatabase, TableDefinition};

use crate::{GroupId, TypeConfig};

const APPLIED: &str = "raft_applied";
const MEMBERSHIP: &str = "raft_membership";
const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_snapshots");

type Membership = StoredMembership<u64, BasicNode>;

fn sm_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

fn snap_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::read_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

/// A stored snapshot: its metadata and the exported group state.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, BasicNode>,
    data: Vec<u8>,
}

/// State machine of one group.
#[derive(Clone)]
pub struct GroupStateMachine {
    meta: MetaStore,
    group: GroupId,
}

impl GroupStateMachine {
    pub fn new(meta: MetaStore, group: GroupId) -> Result<Self, redb::Error> {
        let txn = meta.db().begin_write()?;
        txn.open_table(SNAPSHOTS)?;
        txn.commit()?;
        Ok(Self { meta, group })
    }

    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError<u64>> {
        let txn = self.meta.db().begin_read().map_err(snap_err)?;
        let t = txn.open_table(SNAPSHOTS).map_err(snap_err)?;
        let v = redb::ReadableTable::get(&t, self.group).map_err(snap_err)?;
        match v {
            Some(v) => Ok(Some(rmp_serde::from_slice(v.value()).map_err(snap_err)?)),
            None => Ok(None),
        }
    }

    fn save_snapshot(&self, snap: &StoredSnapshot) -> Result<(), StorageError<u64>> {
        let bytes = rmp_serde::to_vec(snap).map_err(sm_err)?;
        let txn = self.meta.db().begin_write().map_err(sm_err)?;
        {
            let mut t = txn.open_table(SNAPSHOTS).map_err(sm_err)?;
            t.insert(self.group, bytes.as_slice()).map_err(sm_err)?;
        }
        txn.commit().map_err(sm_err)?;
        Ok(())
    }

    fn apply_blocking(
        &self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<Response>, StorageError<u64>> {
        let mut txn = self.meta.db().begin_write().map_err(sm_err)?;
        txn.set_durability(Durability::None).map_err(sm_err)?;
        let mut out = Vec::with_capacity(entries.len());
        let mut last: Option<LogId<u64>> = None;
        for entry in entries {
            last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(Response::Done),
                EntryPayload::Normal(cmd) => {
                    out.push(self.meta.apply(&txn, self.group, &cmd).map_err(sm_err)?);
                }
                EntryPayload::Membership(m) => {
                    let stored = Membership::new(Some(entry.log_id), m);
                    self.meta
                        .put_sm_meta(&txn, self.group, MEMBERSHIP, &stored)
                        .map_err(sm_err)?;
                    out.push(Response::Done);
                }
            }
        }
        if let Some(last) = last {
            self.meta
                .put_sm_meta(&txn, self.group, APPLIED, &Some(last))
                .map_err(sm_err)?;
        }
        txn.commit().map_err(sm_err)?;
        Ok(out)
    }

    fn build_blocking(&self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (data, sm_meta) = self.meta.export_group(self.group).map_err(snap_err)?;
        let applied: Option<LogId<u64>> = match sm_meta.get(APPLIED) {
            Some(b) => rmp_serde::from_slice(b).map_err(snap_err)?,
            None => None,
        };
        let membership: Membership = match sm_meta.get(MEMBERSHIP) {
            Some(b) => rmp_serde::from_slice(b).map_err(snap_err)?,
            None => Membership::default(),
        };
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", self.group, l.leader_id, l.index),
            None => format!("{}-empty", self.group),
        };
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&stored)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError<u64>> + Send + 'static,
) -> Result<T, StorageError<u64>> {
    tokio::task::spawn_blocking(f).await.map_err(sm_err)?
}

impl RaftSnapshotBuilder<TypeConfig> for GroupStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let this = self.clone();
        blocking(move || this.build_blocking()).await
    }
}

impl RaftStateMachine<TypeConfig> for GroupStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, Membership), StorageError<u64>> {
        let applied: Option<Option<LogId<u64>>> =
            self.meta.get_sm_meta(self.group, APPLIED).map_err(sm_err)?;
        let membership: Option<Membership> = self
            .meta
            .get_sm_meta(self.group, MEMBERSHIP)
            .map_err(sm_err)?;
        Ok((applied.flatten(), membership.unwrap_or_default()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let this = self.clone();
        blocking(move || this.apply_blocking(entries)).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let this = self.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        blocking(move || {
            let txn = this.meta.db().begin_write().map_err(sm_err)?;
            this.meta
                .import_group(&txn, this.group, &stored.data)
                .map_err(sm_err)?;
            // The blob carries `applied`/`membership`; set them from the snapshot meta anyway.
            this.meta
                .put_sm_meta(&txn, this.group, APPLIED, &stored.meta.last_log_id)
                .map_err(sm_err)?;
            this.meta
                .put_sm_meta(&txn, this.group, MEMBERSHIP, &stored.meta.last_membership)
                .map_err(sm_err)?;
            txn.commit().map_err(sm_err)?;
            this.save_snapshot(&stored)
        })
        .await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let this = self.clone();
        let stored = blocking(move || this.load_snapshot()).await?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
