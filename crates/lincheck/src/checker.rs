//! The per-key search: Wing & Gong's algorithm with Lowe's memoization, laid
//! out as in Porcupine's `checkSingle`.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::{explain, malformed, Input, Operation, Output};

/// Return time of an operation whose outcome is unknown.
pub(crate) const INF: u64 = u64::MAX;
/// Register state id of a value that no put ever wrote: never equals a state.
pub(crate) const NEVER: u32 = u32::MAX;

/// A register operation after normalization. Register states are ids:
/// `0` = absent, `k >= 1` = the `k-1`-th distinct value written to the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Sets the state to the id.
    Put(u32),
    /// Sets the state to 0.
    Delete,
    /// Must observe exactly this state id (possibly [`NEVER`]).
    Get(u32),
}

/// A normalized operation of one key's history.
#[derive(Clone, Debug)]
pub(crate) struct KeyOp {
    /// Index of the original operation in the key's operation list.
    pub orig: usize,
    pub call: u64,
    /// Effective return time used by the search (may be a derived deadline
    /// for unknown puts, see [`apply_unknown_bounds`]).
    pub ret: u64,
    /// The outcome is unknown (returned at +infinity).
    pub unknown: bool,
    /// For puts: no other (non-failed) put of this key writes the same value.
    pub unique: bool,
    pub kind: Kind,
}

/// The verdict for one key.
pub(crate) enum KeyVerdict {
    Linearizable,
    NotLinearizable(String),
    Timeout,
}

/// Result of one search.
pub(crate) enum Search {
    Linearizable,
    /// Not linearizable; the indices (ascending, into the searched ops) of the
    /// ops whose call precedes the furthest return event the search ever
    /// reached. That sub-history is itself not linearizable, but only a
    /// witness once closed under observed writes (see
    /// `explain::shrink_to_prefix`).
    Stuck(Vec<usize>),
    Timeout,
}

/// A normalized key history with the names of its values.
pub(crate) struct Prepared {
    pub ops: Vec<KeyOp>,
    /// Number of original ops dropped because they failed.
    pub failed: usize,
    /// Number of original ops dropped because they are unknown-outcome reads
    /// or unknown-outcome writes that no read observed.
    pub irrelevant: usize,
}

/// Normalizes the operations of one key (which must all be well-formed).
pub(crate) fn prepare(ops: &[&Operation]) -> Prepared {
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut put_count: Vec<u32> = Vec::new();
    let mut failed = 0;
    // Intern the values of all puts that may have taken effect.
    for op in ops {
        if op.output == Output::Failed {
            failed += 1;
            continue;
        }
        if let Input::Put { value } = &op.input {
            let id = *ids.entry(value.as_str()).or_insert_with(|| {
                put_count.push(0);
                put_count.len() as u32
            });
            put_count[id as usize - 1] += 1;
        }
    }
    let mut out = Vec::with_capacity(ops.len());
    let mut irrelevant = 0;
    for (i, op) in ops.iter().enumerate() {
        let unknown = op.output == Output::Unknown || op.return_ns.is_none();
        let kind = match (&op.input, &op.output) {
            (_, Output::Failed) => continue,
            (Input::Get, Output::Unknown) => {
                irrelevant += 1;
                continue;
            }
            (Input::Get, Output::Value(v)) => Kind::Get(match v {
                None => 0,
                Some(s) => ids.get(s.as_str()).copied().unwrap_or(NEVER),
            }),
            (Input::Get, Output::Ok) => unreachable!("malformed ops are rejected earlier"),
            (Input::Put { value }, _) => {
                let id = ids[value.as_str()];
                Kind::Put(id)
            }
            (Input::Delete, _) => Kind::Delete,
        };
        let unique = matches!(kind, Kind::Put(id) if put_count[id as usize - 1] == 1);
        out.push(KeyOp {
            orig: i,
            call: op.call_ns,
            ret: if unknown {
                INF
            } else {
                op.return_ns.unwrap_or(INF)
            },
            unknown,
            unique,
            kind,
        });
    }
    // Unknown-outcome writes whose result no read observed can always be
    // linearized last, where they affect nobody: drop them.
    let observed: HashSet<u32> = out
        .iter()
        .filter_map(|o| match o.kind {
            Kind::Get(s) => Some(s),
            _ => None,
        })
        .collect();
    let before = out.len();
    out.retain(|o| !o.unknown || observed.contains(&written_state(o.kind).unwrap_or(NEVER)));
    irrelevant += before - out.len();
    apply_unknown_bounds(&mut out);
    Prepared {
        ops: out,
        failed,
        irrelevant,
    }
}

/// The state a write leaves behind (`None` for reads).
pub(crate) fn written_state(kind: Kind) -> Option<u32> {
    match kind {
        Kind::Put(id) => Some(id),
        Kind::Delete => Some(0),
        Kind::Get(_) => None,
    }
}

/// An unknown-outcome put of a unique value must take effect before every read
/// that returned that value, hence before the earliest return among them: use
/// that as its return time (+infinity if no read in `ops` observed it). This
/// does not change the verdict and keeps the search from carrying such puts
/// as pending until the end of the history.
pub(crate) fn apply_unknown_bounds(ops: &mut [KeyOp]) {
    let mut earliest: HashMap<u32, u64> = HashMap::new();
    for o in ops.iter() {
        if let Kind::Get(s) = o.kind {
            let e = earliest.entry(s).or_insert(INF);
            *e = (*e).min(o.ret);
        }
    }
    for o in ops.iter_mut() {
        if let (true, true, Kind::Put(id)) = (o.unknown, o.unique, o.kind) {
            o.ret = earliest.get(&id).copied().unwrap_or(INF).max(o.call);
        }
    }
}

/// Checks one key's operations. `prefilter` enables the quick rejection of
/// reads of never-written values (always on outside of tests).
pub(crate) fn check_key(ops: &[&Operation], timeout: Duration, prefilter: bool) -> KeyVerdict {
    for op in ops {
        if let Some(reason) = malformed(op) {
            return KeyVerdict::NotLinearizable(format!(
                "malformed operation (this is a recorder bug, not a consistency verdict): \
                 {reason}: {op:?}"
            ));
        }
    }
    let prep = prepare(ops);
    let start = Instant::now();
    if prefilter {
        if let Some(i) = prep.ops.iter().position(|o| o.kind == Kind::Get(NEVER)) {
            return KeyVerdict::NotLinearizable(explain::render(
                ops,
                &prep,
                &[i],
                "a get returned a value that no put of this key ever wrote (or whose put failed)",
            ));
        }
    }
    match search(&prep.ops, start + timeout) {
        Search::Linearizable => KeyVerdict::Linearizable,
        Search::Timeout => KeyVerdict::Timeout,
        Search::Stuck(prefix) => {
            let deadline = Instant::now() + timeout;
            let all = (0..prep.ops.len()).collect();
            let start = explain::shrink_to_prefix(&prep.ops, all, prefix, deadline);
            let minimal = explain::minimize(&prep.ops, start, deadline);
            KeyVerdict::NotLinearizable(explain::render(
                ops,
                &prep,
                &minimal,
                "these operations admit no linearization",
            ))
        }
    }
}

/// A small, fast, non-cryptographic hasher (FxHash) for the memo cache.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

type Cache = HashSet<(Box<[u64]>, u32), BuildHasherDefault<FxHasher>>;

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// Applies `kind` to `state`; `None` if the operation cannot happen in it.
#[inline]
fn step(state: u32, kind: Kind) -> Option<u32> {
    match kind {
        Kind::Put(id) => Some(id),
        Kind::Delete => Some(0),
        Kind::Get(s) => (s == state).then_some(state),
    }
}

/// Searches for a linearization of `ops` (starting from the absent state).
pub(crate) fn search(ops: &[KeyOp], deadline: Instant) -> Search {
    let n = ops.len();
    if n == 0 {
        return Search::Linearizable;
    }
    // Events: (time, is_return, op). Calls sort before returns at equal times.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.call, false, i));
        events.push((o.ret.max(o.call), true, i));
    }
    events.sort_unstable();
    // Node 0 is the list head; node k + 1 is events[k].
    let m = events.len() + 1;
    let mut next = vec![NIL; m];
    let mut prev = vec![NIL; m];
    let mut op_of = vec![NIL; m];
    let mut matching = vec![NIL; m]; // call node -> its return node
    let mut call_node = vec![NIL; n];
    for (k, &(_, is_ret, op)) in events.iter().enumerate() {
        let node = k + 1;
        prev[node] = k;
        next[k] = node;
        op_of[node] = op;
        if is_ret {
            matching[call_node[op]] = node;
        } else {
            call_node[op] = node;
        }
    }
    let is_call = |node: usize| matching[node] != NIL;

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words].into_boxed_slice();
    let mut cache: Cache = HashSet::default();
    let mut calls: Vec<(usize, u32)> = Vec::new();
    let mut state = 0u32;
    let mut entry = next[HEAD];
    let mut furthest = 0usize;
    let mut iterations = 0u64;

    while next[HEAD] != NIL {
        iterations += 1;
        if iterations & 0x3ff == 0 && Instant::now() > deadline {
            return Search::Timeout;
        }
        if is_call(entry) {
            let op = op_of[entry];
            if let Some(new_state) = step(state, ops[op].kind) {
                linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((linearized.clone(), new_state)) {
                    calls.push((entry, state));
                    state = new_state;
                    // lift: unlink the call and its return.
                    next[prev[entry]] = next[entry];
                    prev[next[entry]] = prev[entry];
                    let r = matching[entry];
                    next[prev[r]] = next[r];
                    if next[r] != NIL {
                        prev[next[r]] = prev[r];
                    }
                    entry = next[HEAD];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            entry = next[entry];
        } else {
            // The return of an operation not linearized yet: backtrack.
            furthest = furthest.max(entry);
            let Some((e, s)) = calls.pop() else {
                let prefix = (0..n).filter(|&i| call_node[i] < furthest).collect();
                return Search::Stuck(prefix);
            };
            let op = op_of[e];
            linearized[op / 64] &= !(1 << (op % 64));
            state = s;
            // unlift: relink the return, then the call.
            let r = matching[e];
            next[prev[r]] = r;
            if next[r] != NIL {
                prev[next[r]] = r;
            }
            next[prev[e]] = e;
            prev[next[e]] = e;
            entry = next[e];
        }
    }
    Search::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{simulate, SimConfig};
    use proptest::prelude::*;

    fn op(call: u64, ret: Option<u64>, kind: Kind) -> KeyOp {
        KeyOp {
            orig: 0,
            call,
            ret: ret.unwrap_or(INF),
            unknown: ret.is_none(),
            unique: true,
            kind,
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn empty_is_linearizable() {
        assert!(matches!(search(&[], far()), Search::Linearizable));
    }

    #[test]
    fn stuck_prefix_excludes_later_ops() {
        let ops = vec![
            op(0, Some(10), Kind::Put(1)),
            op(20, Some(30), Kind::Get(0)), // stale: must see 1
            op(40, Some(50), Kind::Put(2)),
            op(60, Some(70), Kind::Get(2)),
        ];
        match search(&ops, far()) {
            Search::Stuck(prefix) => assert_eq!(prefix, vec![0, 1]),
            _ => panic!("expected non-linearizable"),
        }
    }

    #[test]
    fn unknown_bound_uses_earliest_observer() {
        let mut ops = vec![
            op(0, None, Kind::Put(1)),
            op(100, Some(300), Kind::Get(1)),
            op(150, Some(200), Kind::Get(1)),
        ];
        apply_unknown_bounds(&mut ops);
        assert_eq!(ops[0].ret, 200);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// With the never-written prefilter disabled, the search itself must
        /// reject a read mutated to a value nobody wrote.
        #[test]
        fn search_rejects_never_written_read_without_prefilter(
            seed in any::<u64>(), clients in 1usize..6, ops in 2usize..40
        ) {
            let cfg = SimConfig { clients, ops_per_client: ops, keys: 1, ..SimConfig::default() };
            let mut h = simulate(seed, &cfg);
            let gets: Vec<usize> = h.iter().enumerate()
                .filter(|(_, o)| matches!(o.output, Output::Value(_))).map(|(i, _)| i).collect();
            prop_assume!(!gets.is_empty());
            let i = gets[(seed as usize) % gets.len()];
            let refs: Vec<&Operation> = h.iter().collect();
            prop_assert!(matches!(check_key(&refs, Duration::from_secs(30), false), KeyVerdict::Linearizable));
            h[i].output = Output::Value(Some("never-written".into()));
            let refs: Vec<&Operation> = h.iter().collect();
            let verdict = check_key(&refs, Duration::from_secs(30), false);
            match verdict {
                KeyVerdict::NotLinearizable(e) => prop_assert!(e.contains("never-written"), "{}", e),
                _ => prop_assert!(false, "mutated history accepted"),
            }
        }
    }
}
