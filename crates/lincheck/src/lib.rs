//! `cairn-lincheck`: checks that recorded client histories of a key-value
//! register are linearizable.
//!
//! Cluster fault tests record concurrent single-key `PUT` / `GET` / `DELETE`
//! operations (each with a client id, call time and return time taken from one
//! monotonic clock) while nodes are killed and partitioned, then hand the
//! history to [`check`]. Histories can also be written as JSON lines (one
//! [`Operation`] per line, see [`read_jsonl`]) so that tests written in other
//! languages can shell out to the `cairn-lincheck` binary.
//!
//! # Model
//!
//! Every key is an independent register whose value is `Option<String>`
//! (`None` = absent, the initial state). [`Input::Put`] sets it, [`Input::Delete`]
//! clears it, [`Input::Get`] returns it. Because linearizability is
//! compositional (P-compositionality), [`check`] partitions the history by key
//! and checks each key separately.
//!
//! # Outcomes
//!
//! * [`Output::Ok`] / [`Output::Value`]: the operation completed, and took
//!   effect at one instant between its call and its return.
//! * [`Output::Unknown`] (or `return_ns: None`): the client gave up (timeout,
//!   connection lost). The operation may or may not have taken effect, at any
//!   time after its call: it is treated as returning at +infinity.
//! * [`Output::Failed`]: the operation definitely did not take effect (the
//!   server guarantees the state was left unchanged); it is removed from the
//!   history before checking.
//!
//! # Algorithm
//!
//! Wing & Gong's search with Lowe's memoization, as in Porcupine: call and
//! return events are sorted by time into a doubly linked list, and a
//! depth-first search linearizes pending calls one at a time, backtracking
//! when it meets the return of an operation it has not linearized yet. A cache
//! of `(set of linearized operations, register state)` pairs prunes states
//! already explored. Events with equal timestamps are ordered calls first, so
//! an operation that returns at the very nanosecond another is called is
//! treated as concurrent with it.
//!
//! Before the search, the history of a key is simplified in ways that do not
//! change the verdict: failed operations and unknown-outcome reads are dropped,
//! unknown-outcome writes whose value no read ever returned are dropped (they
//! can always be linearized last), and a read of a value no put ever wrote is
//! reported at once. During the search, an unknown-outcome write is only ever
//! linearized immediately before a read that returns what it wrote (any
//! linearization can be rearranged that way), so such writes cost little.
//!
//! When a key is not linearizable, the offending history is shrunk (keeping it
//! non-linearizable at every step, and only removing reads or writes that no
//! remaining read observed, so that the small history is a genuine witness) and
//! printed in [`CheckResult::NotLinearizable::explanation`].

#![warn(missing_docs)]

mod checker;
mod explain;
pub mod sim;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One client operation on one key, as recorded by a test harness.
///
/// JSON form (one per line in a `.jsonl` history):
///
/// ```json
/// {"client":1,"key":"k1","call_ns":1000,"return_ns":2000,"input":{"type":"put","value":"v1"},"output":{"type":"ok"}}
/// {"client":2,"key":"k1","call_ns":1500,"return_ns":2500,"input":{"type":"get"},"output":{"type":"value","value":"v1"}}
/// {"client":3,"key":"k1","call_ns":1600,"return_ns":null,"input":{"type":"delete"},"output":{"type":"unknown"}}
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Identifier of the client (a sequential process) that issued the operation.
    pub client: u64,
    /// The object key the operation addressed. Keys are checked independently.
    pub key: String,
    /// Time at which the request was sent, in nanoseconds of a monotonic clock
    /// shared by all clients of the history.
    pub call_ns: u64,
    /// Time at which the response was received, on the same clock as
    /// `call_ns`. `None` means the outcome is unknown (equivalent to
    /// [`Output::Unknown`]): the operation is treated as returning at +infinity.
    #[serde(default)]
    pub return_ns: Option<u64>,
    /// What the client asked for.
    pub input: Input,
    /// What the client observed.
    pub output: Output,
}

/// The request of an [`Operation`].
///
/// JSON: `{"type":"put","value":"v"}`, `{"type":"get"}`, `{"type":"delete"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Input {
    /// Set the register to `Some(value)`.
    Put {
        /// The value written (ideally unique per put: unique values make the
        /// check faster and its explanations clearer).
        value: String,
    },
    /// Read the register.
    Get,
    /// Set the register to `None` (absent).
    Delete,
}

/// The observed result of an [`Operation`].
///
/// JSON: `{"type":"ok"}`, `{"type":"value","value":"v"}`,
/// `{"type":"value","value":null}` (read found the key absent),
/// `{"type":"unknown"}`, `{"type":"failed"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Output {
    /// A put or delete completed successfully.
    Ok,
    /// A get completed and returned this value (`None` = key absent / 404).
    Value(Option<String>),
    /// The outcome is unknown (timeout, connection lost): the operation may or
    /// may not have taken effect, at any time after its call.
    Unknown,
    /// The operation definitely did not take effect; it is ignored.
    Failed,
}

/// The verdict of [`check`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CheckResult {
    /// Every key's history has a linearization.
    Linearizable,
    /// The history of `key` has no linearization.
    NotLinearizable {
        /// The offending key.
        key: String,
        /// Human-readable explanation: a small set of operations of this key
        /// that on their own already admit no linearization.
        explanation: String,
    },
    /// The search for `key` did not finish within the time limit (and no key
    /// was found to be non-linearizable).
    Timeout {
        /// The key whose check timed out.
        key: String,
    },
}

impl CheckResult {
    /// `true` for [`CheckResult::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }
}

impl std::fmt::Display for CheckResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckResult::Linearizable => write!(f, "linearizable"),
            CheckResult::NotLinearizable { key, explanation } => {
                write!(f, "NOT linearizable (key {key:?}):\n{explanation}")
            }
            CheckResult::Timeout { key } => write!(f, "timeout while checking key {key:?}"),
        }
    }
}

/// Errors from reading or validating a history.
#[derive(Debug, thiserror::Error)]
pub enum LincheckError {
    /// The reader failed.
    #[error("I/O error reading history: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a valid JSON [`Operation`].
    #[error("line {line}: invalid JSON operation: {source}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// The parse error.
        source: serde_json::Error,
    },
    /// An operation is well-formed JSON but inconsistent (see [`validate`]).
    #[error("line {line}: invalid operation: {reason}")]
    Invalid {
        /// 1-based line number (or 1-based index in the slice for [`validate`]).
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Why a single operation is malformed, if it is.
///
/// Malformed: a put/delete whose output is [`Output::Value`], a get whose
/// output is [`Output::Ok`], or a return time before the call time.
pub(crate) fn malformed(op: &Operation) -> Option<String> {
    match (&op.input, &op.output) {
        (Input::Get, Output::Ok) => {
            return Some("a get must have output `value`, `unknown` or `failed`, not `ok`".into())
        }
        (Input::Put { .. } | Input::Delete, Output::Value(_)) => {
            return Some(
                "a put/delete must have output `ok`, `unknown` or `failed`, not `value`".into(),
            )
        }
        _ => {}
    }
    if let Some(r) = op.return_ns {
        if r < op.call_ns {
            return Some(format!(
                "return_ns ({r}) is before call_ns ({})",
                op.call_ns
            ));
        }
    }
    None
}

/// Checks that every operation is well-formed: gets have a `value` (or
/// `unknown`/`failed`) output, puts and deletes an `ok` (or `unknown`/`failed`)
/// output, and `return_ns >= call_ns`.
pub fn validate(history: &[Operation]) -> Result<(), LincheckError> {
    for (i, op) in history.iter().enumerate() {
        if let Some(reason) = malformed(op) {
            return Err(LincheckError::Invalid {
                line: i + 1,
                reason,
            });
        }
    }
    Ok(())
}

/// Reads a history in JSON-lines form: one [`Operation`] per line, in any
/// order. Blank lines and lines starting with `#` are skipped. Every operation
/// is validated as by [`validate`].
pub fn read_jsonl(r: impl BufRead) -> Result<Vec<Operation>, LincheckError> {
    let mut ops = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let op: Operation =
            serde_json::from_str(trimmed).map_err(|source| LincheckError::Json {
                line: i + 1,
                source,
            })?;
        if let Some(reason) = malformed(&op) {
            return Err(LincheckError::Invalid {
                line: i + 1,
                reason,
            });
        }
        ops.push(op);
    }
    Ok(ops)
}

/// Writes a history in the JSON-lines form read by [`read_jsonl`].
pub fn write_jsonl(mut w: impl std::io::Write, history: &[Operation]) -> std::io::Result<()> {
    for op in history {
        serde_json::to_writer(&mut w, op)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// Checks that `history` is linearizable with respect to a per-key register.
///
/// The history is partitioned by key and each key is checked on its own, in
/// key order; `timeout` bounds the search for each key (a non-linearizable
/// key's explanation is then shrunk within at most another `timeout`). Returns
/// the first non-linearizable key if any; otherwise [`CheckResult::Timeout`]
/// for the first key whose search timed out; otherwise
/// [`CheckResult::Linearizable`].
///
/// Operations are expected to be well-formed (see [`validate`]; [`read_jsonl`]
/// enforces it). A malformed operation is reported as
/// [`CheckResult::NotLinearizable`] with an explanation starting with
/// `malformed operation`, never silently accepted.
pub fn check(history: &[Operation], timeout: Duration) -> CheckResult {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut timed_out: Option<String> = None;
    for (key, ops) in by_key {
        match checker::check_key(&ops, timeout, true) {
            checker::KeyVerdict::Linearizable => {}
            checker::KeyVerdict::NotLinearizable(explanation) => {
                return CheckResult::NotLinearizable {
                    key: key.to_string(),
                    explanation,
                }
            }
            checker::KeyVerdict::Timeout => {
                if timed_out.is_none() {
                    timed_out = Some(key.to_string());
                }
            }
        }
    }
    match timed_out {
        Some(key) => CheckResult::Timeout { key },
        None => CheckResult::Linearizable,
    }
}
