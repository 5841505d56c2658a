//! The node-wide Raft log store (TiKV's raft-engine idea on redb). Every group's log lives in
//! one table keyed by (group, index). A single writer thread takes all pending appends, votes,
//! truncations and purges, from all groups, applies them in ONE write transaction and ONE
//! fsync, then acknowledges each: 64 busy groups cost one disk sync per batch, not 64.
//!
//! A batch is only written while the file system has more free space than the floor of
//! [`LogHealth`]; below it the writer waits (see `log_health.rs` for why a full disk must
//! never reach redb).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use tokio::sync::oneshot;

use crate::log_health::LogHealth;
use crate::{GroupId, TypeConfig};

const LOG: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raft_log");
const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raft_state");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

/// Most requests folded into one transaction.
const MAX_BATCH: usize = 1024;

/// How often a paused writer re-checks the free space.
const PAUSE_RECHECK: std::time::Duration = std::time::Duration::from_millis(200);

fn log_key(group: GroupId, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

fn state_key(group: GroupId, name: &str) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn read_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::read_logs(&io_err(e)).into()
}

fn write_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_logs(&io_err(e)).into()
}

enum Op {
    Append {
        group: GroupId,
        entries: Vec<(u64, Vec<u8>)>,
        done: Done,
    },
    State {
        group: GroupId,
        name: &'static str,
        value: Vec<u8>,
        done: Done,
    },
    /// Deletes entries with index >= `from`.
    Truncate {
        group: GroupId,
        from: u64,
        done: Done,
    },
    /// Deletes entries with index <= `upto` and records the purge point.
    Purge {
        group: GroupId,
        upto: u64,
        log_id: Vec<u8>,
        done: Done,
    },
    /// Ends the writer after everything queued before it.
    Stop(std::sync::mpsc::Sender<()>),
}

enum Done {
    Flushed(LogFlushed<TypeConfig>),
    Notify(oneshot::Sender<Result<(), String>>),
    /// Lazy: made durable by the next durable batch (used for the committed index).
    Lazy,
}

impl Done {
    fn durable(&self) -> bool {
        !matches!(self, Done::Lazy)
    }

    fn finish(self, r: &Result<(), String>) {
        match self {
            Done::Flushed(cb) => cb.log_io_completed(r.clone().map_err(io_err)),
            Done::Notify(tx) => {
                let _ = tx.send(r.clone());
            }
            Done::Lazy => {}
        }
    }
}

impl Op {
    fn into_done(self) -> Done {
        match self {
            Op::Append { done, .. }
            | Op::State { done, .. }
            | Op::Truncate { done, .. }
            | Op::Purge { done, .. } => done,
            Op::Stop(_) => Done::Lazy,
        }
    }
}

/// Shared log engine: one per node.
#[derive(Clone)]
pub struct LogEngine {
    db: Arc<Database>,
    tx: std::sync::mpsc::Sender<Op>,
    health: LogHealth,
}

impl LogEngine {
    /// Creates the tables and starts the writer thread; `dir` is on the database's file
    /// system (its free space is checked against the floor before each batch).
    pub fn start(db: Arc<Database>, dir: std::path::PathBuf) -> Result<Self, redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(STATE)?;
        txn.commit()?;
        let (tx, rx) = std::sync::mpsc::channel::<Op>();
        let wdb = db.clone();
        let health = LogHealth::new(dir);
        let whealth = health.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(wdb, rx, whealth))
            .map_err(|e| redb::Error::Io(io_err(e)))?;
        Ok(Self { db, tx, health })
    }

    /// The writer's health and free-space floor.
    pub fn health(&self) -> &LogHealth {
        &self.health
    }

    /// Flushes what is queued and stops the writer thread (it releases the database). A
    /// writer paused for space gives up: what it holds fails as "stopped".
    pub fn stop(&self) {
        self.health.stop();
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Op::Stop(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// The log of one group.
    pub fn group(&self, group: GroupId) -> GroupLog {
        GroupLog {
            engine: self.clone(),
            group,
        }
    }

    fn send(&self, op: Op) -> Result<(), StorageError<u64>> {
        self.tx
            .send(op)
            .map_err(|_| write_err("raft log writer stopped"))
    }

    async fn send_wait(&self, make: impl FnOnce(Done) -> Op) -> Result<(), StorageError<u64>> {
        let (tx, rx) = oneshot::channel();
        self.send(make(Done::Notify(tx)))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(write_err(e)),
            Err(_) => Err(write_err("raft log writer stopped")),
        }
    }

    fn read_state(&self, group: GroupId, name: &str) -> Result<Option<Vec<u8>>, StorageError<u64>> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(STATE).map_err(read_err)?;
        let v = t.get(state_key(group, name).as_slice()).map_err(read_err)?;
        Ok(v.map(|v| v.value().to_vec()))
    }
}

/// Waits while the file system is under the floor. Returns false when the engine stops
/// meanwhile.
fn wait_for_space(health: &LogHealth) -> bool {
    while let Some(free) = health.below_floor() {
        if health.stopping() {
            return false;
        }
        health.paused(free);
        std::thread::sleep(PAUSE_RECHECK);
    }
    true
}

fn writer_loop(db: Arc<Database>, rx: std::sync::mpsc::Receiver<Op>, health: LogHealth) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let stop = batch.iter().position(|op| matches!(op, Op::Stop(_)));
        let stop = stop.map(|i| batch.split_off(i));
        let durable = batch.iter().any(|op| match op {
            Op::Append { done, .. }
            | Op::State { done, .. }
            | Op::Truncate { done, .. }
            | Op::Purge { done, .. } => done.durable(),
            Op::Stop(_) => false,
        });
        // Nothing is acknowledged while the writer waits: to openraft it is a slow disk.
        let result = if wait_for_space(&health) {
            write_batch(&db, &batch, durable).map_err(|e| describe(&e))
        } else {
            Err("raft log writer stopped".to_string())
        };
        match &result {
            Ok(()) => health.written(),
            Err(e) => {
                tracing::error!(error = %e, "raft log batch failed");
                if !health.stopping() {
                    health.failed(e.clone());
                }
            }
        }
        for op in batch {
            op.into_done().finish(&result);
        }
        if let Some(rest) = stop {
            drop(db);
            for op in rest {
                match op {
                    Op::Stop(ack) => {
                        let _ = ack.send(());
                    }
                    other => other
                        .into_done()
                        .finish(&Err("raft log writer stopped".into())),
                }
            }
            return;
        }
    }
}

/// A batch error as status shows it; redb's latched error says what the operator must do.
fn describe(e: &redb::Error) -> String {
    match e {
        redb::Error::PreviousIo => format!(
            "{e} (the metadata database stopped after an earlier I/O error; restart the node)"
        ),
        _ => e.to_string(),
    }
}

fn write_batch(db: &Database, batch: &[Op], durable: bool) -> Result<(), redb::Error> {
    // Chaos suite (`CAIRN_FAILPOINTS`, docs/CHAOS.md): `sleep(ms)` is a slow log disk,
    // `return` a failed write (EIO), as redb would report it.
    fail::fail_point!("raft-log-write", |_| Err(redb::Error::Io(
        std::io::Error::from_raw_os_error(libc::EIO)
    )));
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    {
        let mut log = txn.open_table(LOG)?;
        let mut state = txn.open_table(STATE)?;
        for op in batch {
            match op {
                Op::Append { group, entries, .. } => {
                    for (idx, bytes) in entries {
                        log.insert(log_key(*group, *idx).as_slice(), bytes.as_slice())?;
                    }
                }
                Op::State {
                    group, name, value, ..
                } => {
                    state.insert(state_key(*group, name).as_slice(), value.as_slice())?;
                }
                Op::Truncate { group, from, .. } => {
                    let s = log_key(*group, *from);
                    let e = log_key(*group, u64::MAX);
                    log.retain_in(s.as_slice()..=e.as_slice(), |_, _| false)?;
                }
                Op::Purge {
                    group,
                    upto,
                    log_id,
                    ..
                } => {
                    let s = log_key(*group, 0);
                    let e = log_key(*group, *upto);
                    log.retain_in(s.as_slice()..=e.as_slice(), |_, _| false)?;
                    state.insert(state_key(*group, PURGED).as_slice(), log_id.as_slice())?;
                }
                Op::Stop(_) => {}
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn enc<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StorageError<u64>> {
    rmp_serde::to_vec(v).map_err(write_err)
}

fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StorageError<u64>> {
    rmp_serde::from_slice(b).map_err(read_err)
}

/// One group's view of the node-wide log.
#[derive(Clone)]
pub struct GroupLog {
    engine: LogEngine,
    group: GroupId,
}

impl GroupLog {
    fn last_entry_id(&self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        let txn = self.engine.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(LOG).map_err(read_err)?;
        let s = log_key(self.group, 0);
        let e = log_key(self.group, u64::MAX);
        let mut it = t.range(s.as_slice()..=e.as_slice()).map_err(read_err)?;
        match it.next_back() {
            Some(item) => {
                let (_, v) = item.map_err(read_err)?;
                let entry: Entry<TypeConfig> = dec(v.value())?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for GroupLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end_incl = match range.end_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(i) => *i - 1,
            Bound::Unbounded => u64::MAX,
        };
        if start > end_incl {
            return Ok(Vec::new());
        }
        let txn = self.engine.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(LOG).map_err(read_err)?;
        let s = log_key(self.group, start);
        let e = log_key(self.group, end_incl);
        let mut out = Vec::new();
        for item in t.range(s.as_slice()..=e.as_slice()).map_err(read_err)? {
            let (_, v) = item.map_err(read_err)?;
            out.push(dec(v.value())?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for GroupLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let purged: Option<LogId<u64>> = match self.engine.read_state(self.group, PURGED)? {
            Some(b) => dec(&b)?,
            None => None,
        };
        let last = self.last_entry_id()?.or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let value = enc(vote)?;
        let group = self.group;
        self.engine
            .send_wait(|done| Op::State {
                group,
                name: VOTE,
                value,
                done,
            })
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        match self.engine.read_state(self.group, VOTE)? {
            Some(b) => Ok(Some(dec(&b)?)),
            None => Ok(None),
        }
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        // Lazy: a lost committed index only means replaying a little more on restart.
        let value = enc(&committed)?;
        self.engine.send(Op::State {
            group: self.group,
            name: COMMITTED,
            value,
            done: Done::Lazy,
        })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        match self.engine.read_state(self.group, COMMITTED)? {
            Some(b) => dec(&b),
            None => Ok(None),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((e.log_id.index, enc(&e)?));
        }
        self.engine.send(Op::Append {
            group: self.group,
            entries: encoded,
            done: Done::Flushed(callback),
        })
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let group = self.group;
        self.engine
            .send_wait(|done| Op::Truncate {
                group,
                from: log_id.index,
                done,
            })
            .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let group = self.group;
        let bytes = enc(&Some(log_id))?;
        self.engine
            .send_wait(|done| Op::Purge {
                group,
                upto: log_id.index,
                log_id: bytes,
                done,
            })
            .await
    }
}

#[cfg(test)]
mod pause_tests {
    use std::time::Duration;

    use super::*;
    use crate::LogTrouble;

    fn engine(dir: &std::path::Path) -> LogEngine {
        let db = Database::create(dir.join("meta.redb")).expect("redb");
        LogEngine::start(Arc::new(db), dir.to_path_buf()).expect("engine")
    }

    #[tokio::test]
    async fn a_write_under_the_floor_waits_and_completes_once_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        e.health().set_floor(u64::MAX);
        let mut log = e.group(3);
        let vote = Vote::new(2, 7);
        let mut w = log.clone();
        let write = tokio::spawn(async move { w.save_vote(&vote).await });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !write.is_finished(),
            "nothing is written (or failed) under the floor"
        );
        assert!(matches!(
            e.health().trouble(),
            Some(LogTrouble::Paused { .. })
        ));
        assert!(e.health().is_paused());
        // Space returns: the same write completes, the trouble clears by itself.
        e.health().set_floor(0);
        tokio::time::timeout(Duration::from_secs(3), write)
            .await
            .expect("resumed")
            .expect("task")
            .expect("written");
        assert!(e.health().trouble().is_none());
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        e.stop();
    }

    #[tokio::test]
    async fn stopping_releases_a_paused_writer() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        e.health().set_floor(u64::MAX);
        let mut w = e.group(1);
        let write = tokio::spawn(async move { w.save_vote(&Vote::new(1, 1)).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stopper = e.clone();
        tokio::task::spawn_blocking(move || stopper.stop())
            .await
            .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(3), write)
            .await
            .expect("released")
            .expect("task");
        assert!(
            r.is_err(),
            "a write the writer gave up on is not acknowledged"
        );
    }
}
