//! Latency percentiles and the result table.

use std::fmt::Write as _;
use std::time::Duration;

use crate::size::format_size;

/// Result of one phase (one op on one object size).
#[derive(Debug, Clone, Default)]
pub struct PhaseResult {
    pub op: &'static str,
    pub size: u64,
    /// Successful operations (for LIST: pages).
    pub ops: u64,
    pub errors: u64,
    /// Payload bytes moved by successful operations; `None` when the op
    /// carries no object payload (LIST, DELETE).
    pub bytes: Option<u64>,
    /// Wall time of the whole phase.
    pub elapsed: Duration,
    /// Latencies of successful operations, in nanoseconds (unsorted).
    pub latencies_ns: Vec<u64>,
    /// A few error messages, for the report.
    pub sample_errors: Vec<String>,
}

/// Keep at most this many error messages per phase.
pub const MAX_SAMPLE_ERRORS: usize = 5;

impl PhaseResult {
    pub fn record_error(&mut self, msg: String) {
        self.errors += 1;
        if self.sample_errors.len() < MAX_SAMPLE_ERRORS {
            self.sample_errors.push(msg);
        }
    }

    pub fn merge(&mut self, other: PhaseResult) {
        self.ops += other.ops;
        self.errors += other.errors;
        if let Some(b) = other.bytes {
            *self.bytes.get_or_insert(0) += b;
        }
        self.latencies_ns.extend(other.latencies_ns);
        for e in other.sample_errors {
            if self.sample_errors.len() < MAX_SAMPLE_ERRORS {
                self.sample_errors.push(e);
            }
        }
    }

    pub fn summary(&self) -> Summary {
        let mut sorted = self.latencies_ns.clone();
        sorted.sort_unstable();
        let secs = self.elapsed.as_secs_f64();
        let rate = |x: f64| if secs > 0.0 { x / secs } else { 0.0 };
        Summary {
            op: self.op,
            size: self.size,
            ops: self.ops,
            errors: self.errors,
            ops_per_sec: rate(self.ops as f64),
            mb_per_sec: self.bytes.map(|b| rate(b as f64) / 1e6),
            p50_ms: percentile(&sorted, 50.0).map(ns_to_ms),
            p99_ms: percentile(&sorted, 99.0).map(ns_to_ms),
            p999_ms: percentile(&sorted, 99.9).map(ns_to_ms),
        }
    }
}

/// One row of the table, everything already computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub op: &'static str,
    pub size: u64,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    /// Decimal megabytes (10^6 bytes) per second.
    pub mb_per_sec: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Nearest-rank percentile (`p` in 0..=100) of an ascending slice.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // the epsilon keeps e.g. 99.9% of 1000 at rank 999 despite float error
    let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "-".to_string(),
    }
}

/// Render the result table (plain text, right-aligned numbers).
pub fn format_table(rows: &[Summary]) -> String {
    let header = [
        "op", "size", "ops", "errors", "ops/s", "MB/s", "p50 ms", "p99 ms", "p999 ms",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.op.to_string(),
                format_size(r.size),
                r.ops.to_string(),
                r.errors.to_string(),
                format!("{:.1}", r.ops_per_sec),
                opt(r.mb_per_sec, 1),
                opt(r.p50_ms, 3),
                opt(r.p99_ms, 3),
                opt(r.p999_ms, 3),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cols.iter().zip(widths.iter()).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            // first two columns (op, size) left-aligned, numbers right-aligned
            if i < 2 {
                let _ = write!(l, "{c:<w$}");
            } else {
                let _ = write!(l, "{c:>w$}");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&rule.iter().map(String::as_str).collect::<Vec<_>>());
    for row in &cells {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), Some(500));
        assert_eq!(percentile(&v, 99.0), Some(990));
        assert_eq!(percentile(&v, 99.9), Some(999));
        assert_eq!(percentile(&v, 100.0), Some(1000));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        let small = [10, 20, 30];
        assert_eq!(percentile(&small, 50.0), Some(20));
        assert_eq!(percentile(&small, 99.0), Some(30));
    }

    #[test]
    fn summary_math() {
        let r = PhaseResult {
            op: "put",
            size: 4096,
            ops: 4,
            errors: 1,
            bytes: Some(2_000_000),
            elapsed: Duration::from_secs(2),
            latencies_ns: vec![4_000_000, 1_000_000, 3_000_000, 2_000_000],
            sample_errors: vec![],
        };
        let s = r.summary();
        assert_eq!(s.ops_per_sec, 2.0);
        assert_eq!(s.mb_per_sec, Some(1.0));
        assert_eq!(s.p50_ms, Some(2.0));
        assert_eq!(s.p99_ms, Some(4.0));
        assert_eq!(s.p999_ms, Some(4.0));
    }

    #[test]
    fn merge_and_errors() {
        let mut a = PhaseResult {
            op: "get",
            bytes: Some(10),
            ..Default::default()
        };
        for i in 0..3 {
            a.record_error(format!("e{i}"));
        }
        let mut b = PhaseResult {
            op: "get",
            ops: 2,
            bytes: Some(5),
            latencies_ns: vec![1, 2],
            ..Default::default()
        };
        for i in 3..10 {
            b.record_error(format!("e{i}"));
        }
        a.merge(b);
        assert_eq!(a.ops, 2);
        assert_eq!(a.errors, 10);
        assert_eq!(a.bytes, Some(15));
        assert_eq!(a.latencies_ns, vec![1, 2]);
        assert_eq!(a.sample_errors.len(), MAX_SAMPLE_ERRORS);
    }

    #[test]
    fn table_layout() {
        let rows = vec![
            Summary {
                op: "put",
                size: 4096,
                ops: 2000,
                errors: 0,
                ops_per_sec: 1234.56,
                mb_per_sec: Some(5.05),
                p50_ms: Some(1.5),
                p99_ms: Some(12.25),
                p999_ms: Some(30.0),
            },
            Summary {
                op: "list",
                size: 16 * 1024 * 1024,
                ops: 1,
                errors: 2,
                ops_per_sec: 10.0,
                mb_per_sec: None,
                p50_ms: None,
                p99_ms: None,
                p999_ms: None,
            },
        ];
        let t = format_table(&rows);
        let expected = "\
op    size    ops  errors   ops/s  MB/s  p50 ms  p99 ms  p999 ms
----  -----  ----  ------  ------  ----  ------  ------  -------
put   4KiB   2000       0  1234.6   5.0   1.500  12.250   30.000
list  16MiB     1       2    10.0     -       -       -        -
";
        assert_eq!(t, expected);
    }
}
