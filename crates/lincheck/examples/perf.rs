//! Prints checking times for simulated histories:
//! `cargo run --release -p cairn-lincheck --example perf`.

use std::time::{Duration, Instant};

use cairn_lincheck::sim::{simulate, SimConfig};
use cairn_lincheck::{check, CheckResult, Output};

fn main() {
    for (clients, per, keys, dur, unknown) in [
        (4, 500, 1, 1_000, 20),
        (16, 125, 1, 1_000, 20),
        (16, 125, 1, 5_000, 20),
        (16, 625, 1, 1_000, 20),
        (16, 125, 1, 1_000, 150),
        (16, 1250, 100, 1_000, 20),
    ] {
        let cfg = SimConfig {
            clients,
            ops_per_client: per,
            keys,
            max_duration_ns: dur,
            max_gap_ns: 200,
            unknown_permille: unknown,
            failed_permille: 20,
        };
        let mut worst = Duration::ZERO;
        let mut worst_bad = Duration::ZERO;
        for seed in 0..5 {
            let h = simulate(seed, &cfg);
            let t = Instant::now();
            assert_eq!(
                check(&h, Duration::from_secs(60)),
                CheckResult::Linearizable
            );
            worst = worst.max(t.elapsed());
            // Make the last completed read of the history stale-or-impossible.
            let mut bad = h.clone();
            let i = (0..bad.len())
                .filter(|&i| matches!(bad[i].output, Output::Value(_)))
                .max_by_key(|&i| bad[i].call_ns)
                .unwrap();
            let j = (0..bad.len())
                .filter(|&j| {
                    bad[j].key == bad[i].key
                        && matches!(bad[j].input, cairn_lincheck::Input::Put { .. })
                        && bad[j].output == Output::Ok
                })
                .min_by_key(|&j| bad[j].call_ns)
                .unwrap();
            let cairn_lincheck::Input::Put { value } = bad[j].input.clone() else {
                unreachable!()
            };
            bad[i].output = Output::Value(Some(value));
            let t = Instant::now();
            let r = check(&bad, Duration::from_secs(60));
            worst_bad = worst_bad.max(t.elapsed());
            assert!(matches!(r, CheckResult::NotLinearizable { .. }), "{r}");
        }
        println!(
            "{:>6} ops, {clients:>2} clients, {keys:>3} key(s), max op {dur} ns, {:>4.1}% unknown: \
             linearizable worst {:>8.2?}, stale-read rejected+explained worst {:>8.2?}",
            clients * per,
            unknown as f64 / 10.0,
            worst,
            worst_bad
        );
    }
}
