//! Shrinking a non-linearizable key history to a small witness, and printing it.
//!
//! Every shrinking step keeps the history non-linearizable (checked by the
//! search) and only removes operations whose removal cannot turn a
//! linearizable history into a non-linearizable one:
//!
//! * a read (reads do not change the state, so a linearization of the larger
//!   history restricted to the smaller one is still a linearization);
//! * a write whose resulting state no remaining read returned (in a
//!   linearization of the larger history, no read sits between that write and
//!   the next one, so dropping it changes no read's result).
//!
//! Hence the printed operations are a genuine witness: on their own they
//! already admit no linearization, and so neither does the whole history.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Instant;

use crate::checker::{search, written_state, KeyOp, Kind, Prepared, Search};
use crate::{Input, Operation, Output};

/// Builds the sub-history `idxs` of `ops`.
fn subset(ops: &[KeyOp], idxs: &[usize]) -> Vec<KeyOp> {
    idxs.iter().map(|&i| ops[i].clone()).collect()
}

/// Removes from `cur` what may soundly be removed of `chunk` (reads, then
/// writes no remaining read observed). Returns `None` if nothing can be.
fn remove_chunk(ops: &[KeyOp], cur: &[usize], chunk: &[usize]) -> Option<Vec<usize>> {
    let in_chunk: HashSet<usize> = chunk.iter().copied().collect();
    let observed: HashSet<u32> = cur
        .iter()
        .filter(|i| !in_chunk.contains(i))
        .filter_map(|&i| match ops[i].kind {
            Kind::Get(s) => Some(s),
            _ => None,
        })
        .collect();
    let removable = |i: usize| match written_state(ops[i].kind) {
        None => true,
        Some(s) => !observed.contains(&s),
    };
    let out: Vec<usize> = cur
        .iter()
        .copied()
        .filter(|&i| !(in_chunk.contains(&i) && removable(i)))
        .collect();
    (out.len() < cur.len()).then_some(out)
}

/// The ops of `cur` that are in `prefix`, plus the writes of `cur` whose
/// resulting state a read in `prefix` returned. Dropping the other ops of
/// `cur` is a sound shrinking step (reads, then unobserved writes).
fn close_prefix(ops: &[KeyOp], cur: &[usize], prefix: &[usize]) -> Vec<usize> {
    let in_prefix: HashSet<usize> = prefix.iter().copied().collect();
    let observed: HashSet<u32> = prefix
        .iter()
        .filter_map(|&i| match ops[i].kind {
            Kind::Get(s) => Some(s),
            _ => None,
        })
        .collect();
    cur.iter()
        .copied()
        .filter(|i| {
            in_prefix.contains(i)
                || written_state(ops[*i].kind).is_some_and(|s| observed.contains(&s))
        })
        .collect()
}

/// Given a non-linearizable sub-history `cur` (indices into `ops`, ascending)
/// and the failing prefix the search reported for it, shrinks `cur` to the
/// prefix closed under observed writes for as long as that stays
/// non-linearizable.
pub(crate) fn shrink_to_prefix(
    ops: &[KeyOp],
    mut cur: Vec<usize>,
    mut prefix: Vec<usize>,
    deadline: Instant,
) -> Vec<usize> {
    loop {
        let closed = close_prefix(ops, &cur, &prefix);
        if closed.len() == cur.len() {
            return cur;
        }
        match search(&subset(ops, &closed), deadline) {
            Search::Stuck(p) => {
                prefix = p.into_iter().map(|j| closed[j]).collect();
                cur = closed;
            }
            Search::Linearizable | Search::Timeout => return cur,
        }
    }
}

/// If the sub-history `idxs` is not linearizable, returns it, shrunk with
/// [`shrink_to_prefix`].
fn still_failing(ops: &[KeyOp], idxs: Vec<usize>, deadline: Instant) -> Option<Vec<usize>> {
    match search(&subset(ops, &idxs), deadline) {
        Search::Stuck(prefix) => {
            let prefix = prefix.into_iter().map(|j| idxs[j]).collect();
            Some(shrink_to_prefix(ops, idxs, prefix, deadline))
        }
        Search::Linearizable | Search::Timeout => None,
    }
}

/// Shrinks the non-linearizable sub-history `start` (indices into `ops`,
/// ascending) with
/// a delta-debugging pass (chunks halving down to single operations) until
/// no single removable operation can be removed, or until `deadline`.
/// The result is always a non-linearizable sub-history.
pub(crate) fn minimize(ops: &[KeyOp], start: Vec<usize>, deadline: Instant) -> Vec<usize> {
    let mut cur = start;
    let mut chunk = (cur.len() / 2).max(1);
    loop {
        let mut removed_any = false;
        let mut i = 0;
        while i < cur.len() {
            if Instant::now() > deadline {
                return cur;
            }
            let end = (i + chunk).min(cur.len());
            let candidate = remove_chunk(ops, &cur, &cur[i..end]);
            match candidate.and_then(|c| still_failing(ops, c, deadline)) {
                Some(smaller) => {
                    // Keep position `i`: the ops after the removed chunk shifted.
                    cur = smaller;
                    removed_any = true;
                }
                None => i = end,
            }
        }
        if chunk == 1 {
            if !removed_any {
                return cur;
            }
        } else {
            chunk = (chunk / 2).max(1);
        }
    }
}

fn describe_value(v: &Option<String>) -> String {
    match v {
        Some(s) => format!("{s:?}"),
        None => "<absent>".to_string(),
    }
}

/// Formats the operations `chosen` (indices into `prep.ops`) of a key history.
pub(crate) fn render(
    key_ops: &[&Operation],
    prep: &Prepared,
    chosen: &[usize],
    what: &str,
) -> String {
    let mut chosen: Vec<&Operation> = chosen.iter().map(|&i| key_ops[prep.ops[i].orig]).collect();
    chosen.sort_by_key(|o| (o.call_ns, o.return_ns.unwrap_or(u64::MAX), o.client));
    let t0 = chosen.first().map(|o| o.call_ns).unwrap_or(0);
    let mut s = String::new();
    let mut ignored = Vec::new();
    if prep.failed > 0 {
        ignored.push(format!("{} failed", prep.failed));
    }
    if prep.irrelevant > 0 {
        ignored.push(format!(
            "{} unknown-outcome reads/unobserved writes",
            prep.irrelevant
        ));
    }
    let ignored = if ignored.is_empty() {
        String::new()
    } else {
        format!(", ignoring {}", ignored.join(" and "))
    };
    let _ = writeln!(
        s,
        "{what}: {} of the {} operations on this key{ignored} (times in ns relative to t0 = {t0} ns):",
        chosen.len(),
        key_ops.len(),
    );
    for o in &chosen {
        let what = match &o.input {
            Input::Put { value } => format!("put {value:?}"),
            Input::Get => "get".to_string(),
            Input::Delete => "delete".to_string(),
        };
        let ret = match (o.return_ns, &o.output) {
            (Some(r), out) if *out != Output::Unknown => format!("returned +{}", r - t0),
            _ => "return unknown".to_string(),
        };
        let result = match &o.output {
            Output::Ok => "ok".to_string(),
            Output::Value(v) => describe_value(v),
            Output::Unknown => "outcome unknown (may or may not have taken effect)".into(),
            Output::Failed => "failed".into(),
        };
        let _ = writeln!(
            s,
            "  client {:>4}: {what:<24} called +{:<12} {ret:<22} -> {result}",
            o.client,
            o.call_ns - t0,
        );
    }
    if chosen.len() > 1 {
        let _ = writeln!(
            s,
            "(shrunk until dropping any one printed read, or any printed write whose value \
             no printed read returned, makes the rest linearizable, unless time ran out)"
        );
    }
    s
}
