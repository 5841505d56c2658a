//! What a worker reports while it runs: shared between the worker's task, the status list and
//! the metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Counters a worker updates from its steps. Cheap to update (atomics), safe to read at any time.
#[derive(Debug)]
pub struct Progress {
    items: Counter,
    bytes: Counter,
    queue: Gauge,
    queue_known: AtomicU64,
    note: Mutex<Option<String>>,
}

impl Progress {
    pub(crate) fn new(items: Counter, bytes: Counter, queue: Gauge) -> Self {
        Self {
            items,
            bytes,
            queue,
            queue_known: AtomicU64::new(0),
            note: Mutex::new(None),
        }
    }

    /// Counts `n` more items done (chunks collected, references delivered, …).
    pub fn items(&self, n: u64) {
        self.items.inc_by(n);
    }

    /// Counts `n` more bytes moved or checked.
    pub fn bytes(&self, n: u64) {
        self.bytes.inc_by(n);
    }

    /// Sets how many items are known to be waiting.
    pub fn queue(&self, len: u64) {
        self.queue.set(len.min(i64::MAX as u64) as i64);
        self.queue_known.store(1, Ordering::Relaxed);
    }

    /// Sets a short human-readable line about the current state ("pass 12: 3 of 64 partitions").
    pub fn note(&self, note: impl Into<String>) {
        *self.note.lock() = Some(note.into());
    }

    /// Items done since start.
    pub fn items_done(&self) -> u64 {
        self.items.get()
    }

    /// Bytes done since start.
    pub fn bytes_done(&self) -> u64 {
        self.bytes.get()
    }

    /// The queue length last reported, if the worker reports one.
    pub fn queue_length(&self) -> Option<u64> {
        (self.queue_known.load(Ordering::Relaxed) == 1).then(|| self.queue.get().max(0) as u64)
    }

    /// The last note, if any.
    pub fn current_note(&self) -> Option<String> {
        self.note.lock().clone()
    }
}
