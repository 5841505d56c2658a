//! Reads the few numbers `/cluster/metrics` and `/admin/summary` add up across nodes out of
//! each node's Prometheus text exposition (what `ControlService.NodeMetrics` returns). The
//! metric names are the contract with the code that registers them; a name that does not
//! exist on a node counts as zero there.

/// S3 requests (`cairn_s3_requests_total{op,method,status}`).
pub const S3_REQUESTS: &str = "cairn_s3_requests_total";
pub const S3_BYTES_IN: &str = "cairn_s3_received_bytes_total";
pub const S3_BYTES_OUT: &str = "cairn_s3_sent_bytes_total";
/// FileService calls (`cairn_files_calls_total{method,code}`).
pub const FILES_CALLS: &str = "cairn_files_calls_total";
pub const FILES_BYTES_IN: &str = "cairn_files_received_bytes_total";
pub const FILES_BYTES_OUT: &str = "cairn_files_sent_bytes_total";
/// Bytes of chunk files on the node's disk (the chunk layer's gauge, `cairn-chunk`).
pub const CHUNK_BYTES: &str = "cairn_chunk_stored_bytes";
/// Chunk copies restored from another replica (`cairn-chunk`): every family named here is
/// summed into the repair count.
pub const REPAIR_COUNTERS: &[&str] = &["cairn_chunk_read_repairs_total"];

/// The metric name of a sample line (None for comments and blank lines).
fn sample_name(line: &str) -> Option<&str> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    Some(&line[..end])
}

/// The value of a sample line: the first token after the name and its label set (label
/// values may contain `}` and spaces inside quotes).
fn sample_value(line: &str) -> Option<f64> {
    let line = line.trim_start();
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        let mut in_quotes = false;
        let mut escaped = false;
        let mut close = None;
        for (i, c) in rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                '}' if !in_quotes => {
                    close = Some(i);
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[close? + 1..];
    }
    let v = rest.split_whitespace().next()?;
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => v.parse().ok(),
    }
}

/// The sum of every sample of metric `name` (any labels) in `text`; 0 when there is none.
pub fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| sample_name(l) == Some(name))
        .filter_map(sample_value)
        .filter(|v| v.is_finite())
        .sum()
}

/// [`sum`] as a whole number (counters and byte gauges).
pub fn sum_u64(text: &str, name: &str) -> u64 {
    let v = sum(text, name);
    if v <= 0.0 {
        0
    } else {
        v.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP cairn_s3_requests S3 requests
# TYPE cairn_s3_requests counter
cairn_s3_requests_total{op="PutObject",method="PUT",status="200"} 3
cairn_s3_requests_total{op="Get}Object",method="GET",status="200"} 4.0
cairn_s3_requests_total{op="a\"b c",method="GET",status="404"} 1
cairn_s3_requests_total_other 100
cairn_s3_received_bytes_total 2048
cairn_s3_request_duration_seconds_bucket{op="x",le="+Inf"} 9
cairn_weird NaN
# EOF
"#;

    #[test]
    fn sums_every_sample_of_a_metric_and_nothing_else() {
        assert_eq!(sum(TEXT, S3_REQUESTS), 8.0);
        assert_eq!(sum_u64(TEXT, S3_BYTES_IN), 2048);
        assert_eq!(sum_u64(TEXT, S3_BYTES_OUT), 0);
        assert_eq!(sum(TEXT, "cairn_s3_request_duration_seconds_bucket"), 9.0);
        assert_eq!(sum(TEXT, "cairn_weird"), 0.0);
        assert_eq!(sum("", S3_REQUESTS), 0.0);
        assert_eq!(sum("garbage {{{ line", "garbage"), 0.0);
    }
}
