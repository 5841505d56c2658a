//! `Workers`: runs each worker on its own task, pauses and resumes them, lists their statuses.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::{watch, Notify};

use crate::metrics::WorkerMetrics;
use crate::{Progress, Step, Worker, WorkerState, WorkerStatus};

/// A request about workers that cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkersError {
    #[error("no worker named {0}")]
    Unknown(String),
    #[error("a worker named {0} is already running")]
    Duplicate(String),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The runner's record of one worker.
struct Entry {
    name: &'static str,
    progress: Arc<Progress>,
    state: AtomicU8,
    paused: watch::Sender<bool>,
    wake: Notify,
    errors: Counter,
    consecutive_errors: AtomicU64,
    last_error: Mutex<Option<(String, i64)>>,
    /// Unix ms of the last successful step; 0 before the first.
    last_success_ms: AtomicI64,
}

impl Entry {
    fn set_state(&self, metrics: &WorkerMetrics, state: WorkerState) {
        if self.state.swap(state.to_u8(), Ordering::Relaxed) != state.to_u8() {
            metrics.set_state(self.name, state);
        }
    }

    fn status(&self) -> WorkerStatus {
        let last_error = self.last_error.lock().clone();
        let last_success = self.last_success_ms.load(Ordering::Relaxed);
        WorkerStatus {
            name: self.name.to_string(),
            state: WorkerState::from_u8(self.state.load(Ordering::Relaxed)),
            items: self.progress.items_done(),
            bytes: self.progress.bytes_done(),
            errors: self.errors.get(),
            consecutive_errors: self.consecutive_errors.load(Ordering::Relaxed),
            queue_length: self.progress.queue_length(),
            note: self.progress.current_note(),
            last_error_ms: last_error.as_ref().map(|(_, t)| *t),
            last_error: last_error.map(|(m, _)| m),
            last_success_ms: (last_success > 0).then_some(last_success),
        }
    }
}

struct Inner {
    entries: Mutex<BTreeMap<&'static str, Arc<Entry>>>,
    shutdown: watch::Receiver<bool>,
    metrics: WorkerMetrics,
}

/// The node's background workers. Cheap to clone (shared); every clone sees the same workers.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field(
                "workers",
                &self.inner.entries.lock().keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Workers {
    /// An empty runner; its workers stop (after their current step) when `shutdown` flips to
    /// true or its sender is dropped.
    pub fn new(shutdown: watch::Receiver<bool>) -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: Mutex::new(BTreeMap::new()),
                shutdown,
                metrics: WorkerMetrics::default(),
            }),
        }
    }

    /// Registers the `cairn_worker_*` metrics in `registry` (the node's `cairn`-prefixed one).
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner.metrics.register(registry);
    }

    /// Starts `worker` on its own task (call from inside a Tokio runtime). Returns
    /// `Err(Duplicate)` if a worker of the same name was started before.
    pub fn spawn<W: Worker>(&self, worker: W) -> Result<(), WorkersError> {
        let name = worker.name();
        let metrics = &self.inner.metrics;
        let entry = Arc::new(Entry {
            name,
            progress: Arc::new(Progress::new(
                metrics.items(name),
                metrics.bytes(name),
                metrics.queue(name),
            )),
            state: AtomicU8::new(WorkerState::Idle.to_u8()),
            paused: watch::Sender::new(false),
            wake: Notify::new(),
            errors: metrics.errors(name),
            consecutive_errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_success_ms: AtomicI64::new(0),
        });
        {
            let mut entries = self.inner.entries.lock();
            if entries.contains_key(name) {
                return Err(WorkersError::Duplicate(name.to_string()));
            }
            entries.insert(name, entry.clone());
        }
        metrics.set_state(name, WorkerState::Idle);
        tokio::spawn(run(
            worker,
            entry,
            metrics.clone(),
            self.inner.shutdown.clone(),
        ));
        Ok(())
    }

    /// Every worker's status, sorted by name.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        self.inner
            .entries
            .lock()
            .values()
            .map(|e| e.status())
            .collect()
    }

    /// The status of the worker called `name`, if there is one.
    pub fn status(&self, name: &str) -> Option<WorkerStatus> {
        self.inner.entries.lock().get(name).map(|e| e.status())
    }

    fn entry(&self, name: &str) -> Result<Arc<Entry>, WorkersError> {
        self.inner
            .entries
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| WorkersError::Unknown(name.to_string()))
    }

    /// Pauses the worker called `name` once its current step ends. Pausing a paused worker is
    /// a no-op.
    pub fn pause(&self, name: &str) -> Result<(), WorkersError> {
        self.entry(name)?.paused.send_replace(true);
        Ok(())
    }

    /// Resumes a paused worker: it steps again at once. Resuming a running one is a no-op.
    pub fn resume(&self, name: &str) -> Result<(), WorkersError> {
        self.entry(name)?.paused.send_replace(false);
        Ok(())
    }

    /// Ends the wait of an idle or throttled worker so it steps now (e.g. new work arrived).
    pub fn wake(&self, name: &str) -> Result<(), WorkersError> {
        self.entry(name)?.wake.notify_one();
        Ok(())
    }
}

fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// The loop of one worker: step, then wait as the step asked (or until paused, resumed, woken
/// or shut down).
async fn run<W: Worker>(
    mut worker: W,
    entry: Arc<Entry>,
    metrics: WorkerMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut paused = entry.paused.subscribe();
    let name = entry.name;
    loop {
        if stopping(&shutdown) {
            break;
        }
        if *paused.borrow_and_update() {
            entry.set_state(&metrics, WorkerState::Paused);
            tokio::select! {
                _ = paused.changed() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        entry.set_state(&metrics, WorkerState::Busy);
        let wait = match worker.step(&entry.progress).await {
            Ok(step) => {
                entry.consecutive_errors.store(0, Ordering::Relaxed);
                entry.last_success_ms.store(now_ms(), Ordering::Relaxed);
                match step {
                    Step::Busy => {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    Step::Throttled(d) => {
                        entry.set_state(&metrics, WorkerState::Throttled);
                        d
                    }
                    Step::Idle => {
                        entry.set_state(&metrics, WorkerState::Idle);
                        worker.interval()
                    }
                    Step::Done => break,
                }
            }
            Err(e) => {
                entry.errors.inc();
                let n = entry.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
                *entry.last_error.lock() = Some((e.to_string(), now_ms()));
                tracing::warn!(worker = name, error = %e, consecutive = n, "background worker step failed");
                entry.set_state(&metrics, WorkerState::Idle);
                worker.interval()
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = entry.wake.notified() => {}
            _ = paused.changed() => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::debug!(worker = name, "worker stopped");
    entry.set_state(&metrics, WorkerState::Done);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Counts steps; fails every `fail_every`-th; done after `limit` steps.
    struct Counting {
        name: &'static str,
        steps: u64,
        limit: u64,
        fail_every: u64,
        idle: bool,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("step {0} failed on purpose")]
    struct Boom(u64);

    #[async_trait::async_trait]
    impl Worker for Counting {
        fn name(&self) -> &'static str {
            self.name
        }
        fn interval(&self) -> Duration {
            Duration::from_millis(5)
        }
        async fn step(&mut self, p: &Progress) -> Result<Step, crate::WorkerError> {
            self.steps += 1;
            if self.fail_every > 0 && self.steps.is_multiple_of(self.fail_every) {
                return Err(Boom(self.steps).into());
            }
            p.items(1);
            p.bytes(10);
            p.queue(self.limit.saturating_sub(self.steps));
            p.note(format!("step {}", self.steps));
            if self.steps >= self.limit {
                return Ok(Step::Done);
            }
            Ok(if self.idle { Step::Idle } else { Step::Busy })
        }
    }

    async fn wait_until(mut f: impl FnMut() -> bool) {
        for _ in 0..400 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("condition not reached in 2 s");
    }

    #[tokio::test]
    async fn runs_to_done_and_reports_progress_and_errors() {
        let (_tx, rx) = watch::channel(false);
        let w = Workers::new(rx);
        w.spawn(Counting {
            name: "count",
            steps: 0,
            limit: 10,
            fail_every: 4,
            idle: false,
        })
        .unwrap();
        wait_until(|| w.status("count").unwrap().state == WorkerState::Done).await;
        let s = w.status("count").unwrap();
        // Steps 4 and 8 failed; the other 8 counted one item each.
        assert_eq!((s.items, s.bytes, s.errors), (8, 80, 2));
        assert_eq!(s.consecutive_errors, 0);
        assert_eq!(s.queue_length, Some(0));
        assert_eq!(s.note.as_deref(), Some("step 10"));
        assert_eq!(s.last_error.as_deref(), Some("step 8 failed on purpose"));
        assert!(s.last_error_ms.is_some() && s.last_success_ms.is_some());
        assert_eq!(
            w.spawn(Counting {
                name: "count",
                steps: 0,
                limit: 1,
                fail_every: 0,
                idle: false
            }),
            Err(WorkersError::Duplicate("count".into()))
        );
    }

    #[tokio::test]
    async fn pause_resume_and_shutdown() {
        let (tx, rx) = watch::channel(false);
        let w = Workers::new(rx);
        w.spawn(Counting {
            name: "idle",
            steps: 0,
            limit: u64::MAX,
            fail_every: 0,
            idle: true,
        })
        .unwrap();
        wait_until(|| w.status("idle").unwrap().items >= 2).await;
        w.pause("idle").unwrap();
        wait_until(|| w.status("idle").unwrap().state == WorkerState::Paused).await;
        let frozen = w.status("idle").unwrap().items;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            w.status("idle").unwrap().items,
            frozen,
            "a paused worker steps"
        );
        w.resume("idle").unwrap();
        wait_until(|| w.status("idle").unwrap().items > frozen).await;
        assert_eq!(w.pause("nope"), Err(WorkersError::Unknown("nope".into())));
        tx.send(true).unwrap();
        wait_until(|| w.status("idle").unwrap().state == WorkerState::Done).await;
    }

    #[tokio::test]
    async fn statuses_serialize_and_metrics_are_exported() {
        let (_tx, rx) = watch::channel(false);
        let w = Workers::new(rx);
        let mut reg = Registry::with_prefix("cairn");
        w.register_metrics(&mut reg);
        w.spawn(Counting {
            name: "gc",
            steps: 0,
            limit: 3,
            fail_every: 2,
            idle: false,
        })
        .unwrap();
        wait_until(|| w.status("gc").unwrap().state == WorkerState::Done).await;
        let json = serde_json::to_value(w.statuses()).unwrap();
        assert_eq!(json[0]["name"], "gc");
        assert_eq!(json[0]["state"], "done");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        for needle in [
            "cairn_worker_state{worker=\"gc\",state=\"done\"} 1",
            "cairn_worker_state{worker=\"gc\",state=\"busy\"} 0",
            "cairn_worker_items_total{worker=\"gc\"} 2",
            "cairn_worker_bytes_total{worker=\"gc\"} 20",
            "cairn_worker_errors_total{worker=\"gc\"} 1",
            "cairn_worker_queue_length{worker=\"gc\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
