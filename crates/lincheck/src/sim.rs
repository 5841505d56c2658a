//! Synthetic histories of a correct (linearizable) register, for testing the
//! checker and the tools that feed it.
//!
//! [`simulate`] runs sequential clients issuing random puts, gets and deletes
//! with random, overlapping durations. Each operation that takes effect does
//! so at a random instant inside its call/return interval, and reads return
//! the state at that instant, so every generated history is linearizable by
//! construction. Some operations end with an unknown outcome (taking effect
//! or not, possibly long after the client gave up) and some fail (never
//! taking effect).

use std::collections::HashMap;

use crate::{Input, Operation, Output};

/// Parameters of [`simulate`].
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of concurrent sequential clients.
    pub clients: usize,
    /// Operations issued by each client.
    pub ops_per_client: usize,
    /// Number of distinct keys (`"k0"`, `"k1"`, ...), chosen uniformly.
    pub keys: usize,
    /// Maximum duration of an operation, in ns (at least 1).
    pub max_duration_ns: u64,
    /// Maximum pause of a client between two operations, in ns.
    pub max_gap_ns: u64,
    /// Per-mille of operations whose outcome is unknown.
    pub unknown_permille: u64,
    /// Per-mille of operations that fail without effect.
    pub failed_permille: u64,
}

impl Default for SimConfig {
    /// 4 clients × 50 ops on 1 key, durations up to 100 ns, 5 % unknown,
    /// 5 % failed.
    fn default() -> Self {
        SimConfig {
            clients: 4,
            ops_per_client: 50,
            keys: 1,
            max_duration_ns: 100,
            max_gap_ns: 30,
            unknown_permille: 50,
            failed_permille: 50,
        }
    }
}

/// SplitMix64: tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Generates a linearizable history from `seed` (deterministic).
///
/// Put values are unique (`"c<client>-<n>"`). Unknown outcomes are encoded
/// either as `return_ns: None` or as a return time with output
/// [`Output::Unknown`]; half of the unknown writes take effect, at a random
/// time up to three durations after their call.
pub fn simulate(seed: u64, cfg: &SimConfig) -> Vec<Operation> {
    let mut rng = Rng(seed);
    let mut ops = Vec::with_capacity(cfg.clients * cfg.ops_per_client);
    // (instant of effect, op index) for every operation that takes effect.
    let mut effects: Vec<(u64, usize)> = Vec::new();
    for client in 0..cfg.clients {
        let mut t = rng.below(cfg.max_gap_ns + 1);
        for n in 0..cfg.ops_per_client {
            let call = t + rng.below(cfg.max_gap_ns + 1);
            let dur = 1 + rng.below(cfg.max_duration_ns.max(1));
            let ret = call + dur;
            t = ret;
            let key = format!("k{}", rng.below(cfg.keys.max(1) as u64));
            let input = match rng.below(100) {
                0..=39 => Input::Put {
                    value: format!("c{client}-{n}"),
                },
                40..=84 => Input::Get,
                _ => Input::Delete,
            };
            let roll = rng.below(1000);
            let (return_ns, output, effect) = if roll < cfg.unknown_permille {
                let effect = (rng.below(2) == 0).then(|| call + rng.below(3 * dur + 1));
                let return_ns = (rng.below(2) == 0).then_some(ret);
                (return_ns, Output::Unknown, effect)
            } else if roll < cfg.unknown_permille + cfg.failed_permille {
                (Some(ret), Output::Failed, None)
            } else {
                let output = match input {
                    Input::Get => Output::Value(None), // filled in below
                    _ => Output::Ok,
                };
                (Some(ret), output, Some(call + rng.below(dur + 1)))
            };
            if let Some(at) = effect {
                effects.push((at, ops.len()));
            }
            ops.push(Operation {
                client: client as u64,
                key,
                call_ns: call,
                return_ns,
                input,
                output,
            });
        }
    }
    effects.sort_unstable();
    let mut state: HashMap<String, Option<String>> = HashMap::new();
    for (_, i) in effects {
        let op = &mut ops[i];
        let cell = state.entry(op.key.clone()).or_default();
        match &op.input {
            Input::Put { value } => *cell = Some(value.clone()),
            Input::Delete => *cell = None,
            Input::Get => {
                if op.output != Output::Unknown {
                    op.output = Output::Value(cell.clone());
                }
            }
        }
    }
    ops
}
