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
    /// Return time ([`INF`] if unknown).
    pub ret: u64,
    /// The outcome is unknown (returned at +infinity).
    pub unknown: bool,
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
    let mut failed = 0;
    // Intern the values of all puts that may have taken effect.
    for op in ops {
        if op.output == Output::Failed {
            failed += 1;
            continue;
        }
        if let Input::Put { value } = &op.input {
            let next_id = ids.len() as u32 + 1;
            ids.entry(value.as_str()).or_insert(next_id);
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
        out.push(KeyOp {
            orig: i,
            call: op.call_ns,
            ret: if unknown {
                INF
            } else {
                op.return_ns.unwrap_or(INF)
            },
            unknown,
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

/// Searches for a linearization of `ops` (starting from the absent state).
///
/// On top of the Wing & Gong / Lowe search, three reductions that keep it
/// complete:
///
/// * **Reads first.** A pending read that returns the current state and whose
///   call precedes every pending return is linearized at once, without
///   branching: in any linearization extending the current prefix, it can be
///   moved to this point (reads do not change the state).
/// * **Readers before the next write.** When the current state is a value
///   written by exactly one put, every read returning it must be linearized
///   before the next write, so while one is pending no write is tried.
/// * **Lazy unknown writes.** In any linearization, an unknown-outcome write
///   `w` is either immediately followed by a read returning the state `w`
///   wrote, or followed by another write (or nothing) and can then be moved to
///   the very end, where it affects no one (it has no return deadline). So
///   `w` is only ever linearized together with, just before, a read that needs
///   its state. Available unknown writes with the same state are
///   interchangeable: the first one is taken.
pub(crate) fn search(ops: &[KeyOp], deadline: Instant) -> Search {
    let n = ops.len();
    let lazy: Vec<bool> = ops
        .iter()
        .map(|o| o.unknown && written_state(o.kind).is_some())
        .collect();
    let mut required = lazy.iter().filter(|&&l| !l).count();
    if required == 0 {
        return Search::Linearizable;
    }
    // Per state id: number of puts producing it, and of unlinearized reads of it.
    let states = ops
        .iter()
        .filter_map(|o| match o.kind {
            Kind::Put(id) => Some(id as usize + 1),
            _ => None,
        })
        .max()
        .unwrap_or(1);
    let mut producers = vec![0u32; states];
    let mut readers = vec![0u32; states];
    for o in ops {
        match o.kind {
            Kind::Put(id) => producers[id as usize] += 1,
            Kind::Get(s) if (s as usize) < states => readers[s as usize] += 1,
            _ => {}
        }
    }
    // Events: (time, is_return, op). Calls sort before returns at equal
    // times. Lazy writes have no return event.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.call, false, i));
        if !lazy[i] {
            events.push((o.ret.max(o.call), true, i));
        }
    }
    events.sort_unstable();
    // Node 0 is the list head; node k + 1 is events[k].
    let m = events.len() + 1;
    let mut next = vec![NIL; m];
    let mut prev = vec![NIL; m];
    let mut op_of = vec![NIL; m];
    let mut is_ret = vec![false; m];
    let mut ret_node = vec![NIL; n];
    let mut call_node = vec![NIL; n];
    for (k, &(_, ret, op)) in events.iter().enumerate() {
        let node = k + 1;
        prev[node] = k;
        next[k] = node;
        op_of[node] = op;
        is_ret[node] = ret;
        if ret {
            ret_node[op] = node;
        } else {
            call_node[op] = node;
        }
    }

    let mut list = Links { next, prev };
    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words].into_boxed_slice();
    let mut cache: Cache = HashSet::default();
    let mut frames: Vec<Frame> = Vec::new();
    let mut state = 0u32;
    let mut furthest = 0usize;
    let mut iterations = 0u64;
    // `None`: at a new configuration; `Some(node)`: scanning at `node`.
    let mut cursor: Option<usize> = None;
    // Set to backtrack out of the current configuration.
    let mut fail = false;

    loop {
        if !fail {
            if cursor.is_none() {
                if required == 0 {
                    return Search::Linearizable;
                }
                iterations += 1;
                if iterations & 0xff == 0 && Instant::now() > deadline {
                    return Search::Timeout;
                }
                // Reads first: an available read of the current state.
                let mut x = list.next[HEAD];
                let mut forced = NIL;
                while !is_ret[x] {
                    if !lazy[op_of[x]] && ops[op_of[x]].kind == Kind::Get(state) {
                        forced = x;
                        break;
                    }
                    x = list.next[x];
                }
                if forced == NIL {
                    furthest = furthest.max(x);
                    cursor = Some(list.next[HEAD]);
                } else {
                    let op = op_of[forced];
                    set(&mut linearized, op);
                    if cache.insert((linearized.clone(), state)) {
                        frames.push(Frame {
                            call: forced,
                            state,
                            helper: NIL,
                            forced: true,
                        });
                        readers[state as usize] -= 1;
                        required -= 1;
                        list.unlink(forced);
                        list.unlink(ret_node[op]);
                    } else {
                        clear(&mut linearized, op);
                        fail = true;
                    }
                    continue;
                }
            }
            let entry = cursor.expect("scanning");
            if is_ret[entry] {
                // The return of an operation not linearized yet.
                furthest = furthest.max(entry);
                fail = true;
                continue;
            }
            let op = op_of[entry];
            let writes_allowed =
                state == 0 || producers[state as usize] != 1 || readers[state as usize] == 0;
            let candidate = match ops[op].kind {
                _ if lazy[op] => None,
                Kind::Put(_) | Kind::Delete if !writes_allowed => None,
                Kind::Put(id) => Some((id, NIL)),
                Kind::Delete => Some((0, NIL)),
                // Matching reads were taken first; a read of another state
                // needs an available unknown write producing it.
                Kind::Get(want) if writes_allowed && want != state => {
                    let mut x = list.next[HEAD];
                    while !is_ret[x] {
                        let w = op_of[x];
                        if lazy[w] && written_state(ops[w].kind) == Some(want) {
                            break;
                        }
                        x = list.next[x];
                    }
                    (!is_ret[x]).then_some((want, x))
                }
                Kind::Get(_) => None,
            };
            let Some((new_state, helper)) = candidate else {
                cursor = Some(list.next[entry]);
                continue;
            };
            set(&mut linearized, op);
            if helper != NIL {
                set(&mut linearized, op_of[helper]);
            }
            if cache.insert((linearized.clone(), new_state)) {
                frames.push(Frame {
                    call: entry,
                    state,
                    helper,
                    forced: false,
                });
                if let Kind::Get(s) = ops[op].kind {
                    readers[s as usize] -= 1;
                }
                state = new_state;
                required -= 1;
                if helper != NIL {
                    list.unlink(helper);
                }
                list.unlink(entry);
                list.unlink(ret_node[op]);
                cursor = None;
            } else {
                clear(&mut linearized, op);
                if helper != NIL {
                    clear(&mut linearized, op_of[helper]);
                }
                cursor = Some(list.next[entry]);
            }
            continue;
        }
        // Backtrack: undo frames until one whose alternatives remain.
        fail = false;
        loop {
            let Some(f) = frames.pop() else {
                let prefix = (0..n).filter(|&i| call_node[i] < furthest).collect();
                return Search::Stuck(prefix);
            };
            let op = op_of[f.call];
            clear(&mut linearized, op);
            list.relink(ret_node[op]);
            list.relink(f.call);
            if f.helper != NIL {
                clear(&mut linearized, op_of[f.helper]);
                list.relink(f.helper);
            }
            if let Kind::Get(s) = ops[op].kind {
                readers[s as usize] += 1;
            }
            state = f.state;
            required += 1;
            if !f.forced {
                cursor = Some(list.next[f.call]);
                break;
            }
        }
    }
}

/// One linearized operation on the search stack.
struct Frame {
    /// Call node of the operation.
    call: usize,
    /// State before it.
    state: u32,
    /// Call node of the lazy unknown write linearized just before it, or NIL.
    helper: usize,
    /// A read of the current state taken without branching: on backtrack,
    /// its configuration has no alternatives.
    forced: bool,
}

/// The doubly linked event list, with dancing-links removal: nodes must be
/// relinked in the reverse order of unlinking.
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }
    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n != NIL {
            self.prev[n] = x;
        }
    }
}

fn set(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn clear(bits: &mut [u64], i: usize) {
    bits[i / 64] &= !(1 << (i % 64));
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

    /// Reference checker: tries every order consistent with real time, with
    /// every subset of unknown-outcome writes left out.
    fn brute_force(ops: &[KeyOp]) -> bool {
        fn go(ops: &[KeyOp], used: &mut Vec<bool>, state: u32) -> bool {
            let pending: Vec<usize> = (0..ops.len()).filter(|&i| !used[i]).collect();
            // Done when only unknown writes (which may never take effect) remain.
            if pending
                .iter()
                .all(|&i| ops[i].unknown && written_state(ops[i].kind).is_some())
            {
                return true;
            }
            for &i in &pending {
                // i may go next only if no pending op returned before i's call.
                if pending.iter().any(|&j| j != i && ops[j].ret < ops[i].call) {
                    continue;
                }
                let next = match ops[i].kind {
                    Kind::Put(id) => id,
                    Kind::Delete => 0,
                    Kind::Get(s) if s == state => state,
                    Kind::Get(_) => continue,
                };
                used[i] = true;
                let ok = go(ops, used, next);
                used[i] = false;
                if ok {
                    return true;
                }
            }
            false
        }
        go(ops, &mut vec![false; ops.len()], 0)
    }

    fn arb_op() -> impl Strategy<Value = KeyOp> {
        (
            0u64..20,
            0u64..10,
            0u8..6,
            0u32..4,
            prop::bool::weighted(0.25),
        )
            .prop_map(|(call, dur, k, v, unknown)| KeyOp {
                orig: 0,
                call,
                ret: if unknown { INF } else { call + dur },
                unknown,
                kind: match k {
                    0 | 1 => Kind::Put(v.max(1)),
                    2 => Kind::Delete,
                    _ => Kind::Get(v),
                },
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The optimized search agrees with brute force on small random
        /// histories (mostly non-linearizable ones; values repeat, outcomes
        /// may be unknown, timestamps collide).
        #[test]
        fn search_agrees_with_brute_force(ops in prop::collection::vec(arb_op(), 1..8)) {
            let expected = brute_force(&ops);
            let got = match search(&ops, far()) {
                Search::Linearizable => true,
                Search::Stuck(_) => false,
                Search::Timeout => panic!("timeout"),
            };
            prop_assert_eq!(got, expected, "{:?}", ops);
        }

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
