//! One shape for background work.
//!
//! A [`Worker`] does its job one [`Worker::step`] at a time and says what should happen next
//! ([`Step`]: busy — call again at once; throttled — wait this long; idle — nothing to do until
//! the next interval; done — finished for good). [`Workers`] runs every worker of a node on its
//! own task, pauses and resumes them by name, stops them at shutdown, keeps a
//! [`WorkerStatus`] for each (listed by [`Workers::statuses`] for the management plane) and
//! exports them as `cairn_worker_*` metrics. A worker reports what it did through the
//! [`Progress`] handed to each step (items and bytes done, queue length, a free-form note);
//! errors are counted by the runner. [`RateLimit`] turns a bytes-per-second budget that may
//! change at run time into the delay of a throttled step.
//!
//! Workers do not share state through the runner: each owns what it needs.

mod metrics;
mod progress;
mod rate;
mod runner;
mod status;

pub use progress::Progress;
pub use rate::RateLimit;
pub use runner::{Workers, WorkersError};
pub use status::{WorkerState, WorkerStatus};

use std::time::Duration;

/// What a worker wants after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// More work is waiting: step again at once.
    Busy,
    /// More work is waiting but the worker is over its rate: step again after this delay.
    Throttled(Duration),
    /// Nothing to do now: step again after [`Worker::interval`] (or when resumed).
    Idle,
    /// The worker has finished for good; its task ends.
    Done,
}

/// A failed step. The runner counts it, keeps its message as the last error, logs it and
/// retries after [`Worker::interval`]; callers never match on it.
#[derive(Debug)]
pub struct WorkerError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for WorkerError {
    fn from(e: E) -> Self {
        Self(Box::new(e))
    }
}

impl WorkerError {
    /// The underlying error.
    pub fn source_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

/// A background task run by [`Workers`].
#[async_trait::async_trait]
pub trait Worker: Send + 'static {
    /// Stable, unique name (`gc`, `ref-sync`, …): the key for pause/resume, statuses and the
    /// `worker` label of the metrics.
    fn name(&self) -> &'static str;

    /// How long to wait after an idle step or a failed one.
    fn interval(&self) -> Duration;

    /// Does one bounded unit of work and reports it on `progress`. Steps are not cancelled at
    /// shutdown: keep each one short.
    async fn step(&mut self, progress: &Progress) -> Result<Step, WorkerError>;
}
