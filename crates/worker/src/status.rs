//! The status of one worker as the management plane shows it.

use serde::{Deserialize, Serialize};

/// What a worker is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Running a step, or about to run the next one at once.
    Busy,
    /// Waiting out its rate limit before the next step.
    Throttled,
    /// Nothing to do until its next interval.
    Idle,
    /// Paused by an operator; resumes on request.
    Paused,
    /// Finished for good (or stopped at shutdown).
    Done,
}

impl WorkerState {
    /// Every state, in the order of the `state` label values.
    pub const ALL: [WorkerState; 5] = [
        WorkerState::Busy,
        WorkerState::Throttled,
        WorkerState::Idle,
        WorkerState::Paused,
        WorkerState::Done,
    ];

    /// The lowercase name used in JSON and in the `state` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Busy => "busy",
            WorkerState::Throttled => "throttled",
            WorkerState::Idle => "idle",
            WorkerState::Paused => "paused",
            WorkerState::Done => "done",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        Self::ALL
            .get(v as usize)
            .copied()
            .unwrap_or(WorkerState::Done)
    }
}

/// One worker's status (`Workers::statuses`), for `NodeStatusReport` and `cairn cluster status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub name: String,
    pub state: WorkerState,
    /// Items done since the node started (chunks collected, references delivered, …).
    pub items: u64,
    /// Bytes moved or checked since the node started.
    pub bytes: u64,
    /// Failed steps since the node started.
    pub errors: u64,
    /// Failed steps in a row (0 once a step succeeds).
    pub consecutive_errors: u64,
    /// Items known to be waiting, for workers that can tell.
    #[serde(default)]
    pub queue_length: Option<u64>,
    /// The worker's own line about what it is doing.
    #[serde(default)]
    pub note: Option<String>,
    /// Message of the last failed step.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the last failed step ended (Unix ms).
    #[serde(default)]
    pub last_error_ms: Option<i64>,
    /// When the last successful step ended (Unix ms).
    #[serde(default)]
    pub last_success_ms: Option<i64>,
}
