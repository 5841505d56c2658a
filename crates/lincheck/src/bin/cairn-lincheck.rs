//! `cairn-lincheck history.jsonl`: checks a JSON-lines history for
//! linearizability. Exit status: 0 linearizable, 1 not linearizable,
//! 2 timeout or bad input.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cairn_lincheck::{check, read_jsonl, CheckResult};
use clap::Parser;

/// Check that a recorded key-value register history is linearizable.
///
/// The history is one JSON operation per line, e.g.
/// {"client":1,"key":"k","call_ns":100,"return_ns":250,"input":{"type":"put","value":"a"},"output":{"type":"ok"}}
///
/// Exit status: 0 linearizable, 1 not linearizable, 2 timeout or bad input.
#[derive(Parser, Debug)]
#[command(name = "cairn-lincheck", version)]
struct Args {
    /// History file in JSON lines (`-` for standard input).
    history: PathBuf,
    /// Time limit of the search for each key, in seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout_secs: f64,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let history = if args.history.as_os_str() == "-" {
        read_jsonl(io::stdin().lock())
    } else {
        match File::open(&args.history) {
            Ok(f) => read_jsonl(BufReader::new(f)),
            Err(e) => {
                eprintln!(
                    "cairn-lincheck: cannot open {}: {e}",
                    args.history.display()
                );
                return ExitCode::from(2);
            }
        }
    };
    let history = match history {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cairn-lincheck: {}: {e}", args.history.display());
            return ExitCode::from(2);
        }
    };
    if !(args.timeout_secs.is_finite() && args.timeout_secs > 0.0) {
        eprintln!("cairn-lincheck: --timeout-secs must be a positive number");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let result = check(&history, Duration::from_secs_f64(args.timeout_secs));
    let elapsed = started.elapsed();
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&result).expect("CheckResult serializes")
        );
    } else {
        println!("{result}");
        eprintln!(
            "cairn-lincheck: checked {} operations in {:.3} s",
            history.len(),
            elapsed.as_secs_f64()
        );
    }
    match result {
        CheckResult::Linearizable => ExitCode::SUCCESS,
        CheckResult::NotLinearizable { .. } => ExitCode::from(1),
        CheckResult::Timeout { .. } => ExitCode::from(2),
    }
}
