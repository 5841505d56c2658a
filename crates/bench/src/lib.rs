//! `cairn bench`: an S3 load generator.
//!
//! For every object size, runs (in this order, each optional) a PUT phase,
//! a GET phase that verifies every byte, a LIST phase (ListObjectsV2 pages of
//! 1000) and a DELETE phase, then prints one table row per (op, size).
//!
//! Object contents are derived from the key (BLAKE3 XOF, see [`content`]), so
//! they are unique, incompressible and verifiable without a stored copy.
//! Requests are SigV4 presigned URLs (rusty-s3) over HTTP/1.1 or HTTPS (hyper, rustls).

mod content;
mod s3;
mod size;
mod stats;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use bytes::Bytes;

use crate::s3::{BucketState, S3};
use crate::size::{default_objects, format_size, parse_size};
use crate::stats::{format_table, PhaseResult};

/// Keys per ListObjectsV2 page.
const LIST_PAGE: usize = 1000;

/// Objects at least this big are generated/verified on the blocking pool so
/// hashing does not stall the I/O of other in-flight requests.
const BLOCKING_THRESHOLD: u64 = 256 * 1024;

/// Benchmark operations, always run in this order for each size.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Put,
    Get,
    List,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::List => "list",
            Op::Delete => "delete",
        }
    }
}

/// Run an S3 load test (PUT/GET/LIST/DELETE) against an endpoint.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// S3 endpoint (http:// or https://), addressed path-style.
    #[arg(
        long,
        env = "CAIRN_BENCH_ENDPOINT",
        default_value = "http://127.0.0.1:9000"
    )]
    pub endpoint: String,

    /// PEM CA certificate(s) to verify an https:// endpoint with, besides the public roots.
    #[arg(long, env = "CAIRN_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,

    /// Access key id.
    #[arg(long, env = "ACCESS_KEY")]
    pub access_key: String,

    /// Secret access key.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    pub secret_key: String,

    /// SigV4 signing region.
    #[arg(long, env = "CAIRN_BENCH_REGION", default_value = "us-east-1")]
    pub region: String,

    /// Bucket to use; created if missing (never deleted).
    #[arg(long, env = "CAIRN_BENCH_BUCKET", default_value = "cairn-bench")]
    pub bucket: String,

    /// Concurrent requests in flight.
    #[arg(short = 'c', long, default_value_t = 16, value_parser = parse_positive)]
    pub concurrency: usize,

    /// Object sizes, comma separated (B, KiB, MiB, GiB; KB/MB/GB are decimal).
    #[arg(long, value_delimiter = ',', default_value = "4KiB,16MiB", value_parser = parse_size)]
    pub sizes: Vec<u64>,

    /// Objects per size: one value for all sizes, or one per size
    /// [default: 2000 up to 64KiB, ~1GiB worth (8..2000) above]
    #[arg(long, value_delimiter = ',', value_parser = parse_positive)]
    pub objects: Vec<usize>,

    /// Phases to run, comma separated; always executed as put,get,list,delete.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "put,get,list,delete"
    )]
    pub ops: Vec<Op>,

    /// Keep the objects: skip the delete phase even if requested.
    #[arg(long)]
    pub keep: bool,

    /// Key prefix of this run [default: bench-<unique run id>/]. Reuse the
    /// prefix of a --keep run to GET/LIST/DELETE its objects again.
    #[arg(long)]
    pub prefix: Option<String>,

    /// Per-request timeout in seconds (a timeout counts as an error).
    #[arg(long, default_value_t = 120, value_parser = parse_positive_u64)]
    pub timeout: u64,

    /// Server-side encryption of the PUTs: `s3` (SSE-S3) or `kms` (SSE-KMS; the key of
    /// --sse-kms-key-id, else the default key `aws/s3`). GETs decrypt transparently.
    #[arg(long, value_enum)]
    pub sse: Option<Sse>,

    /// The KMS key for `--sse kms` (create one with `cairn kms create-key NAME`).
    #[arg(long, requires = "sse")]
    pub sse_kms_key_id: Option<String>,
}

/// `--sse`: how PUTs are encrypted.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sse {
    S3,
    Kms,
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

fn parse_positive_u64(s: &str) -> Result<u64, String> {
    parse_positive(s).map(|n| n as u64)
}

/// The resolved plan of a run.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    /// (size, object count)
    sizes: Vec<(u64, usize)>,
    ops: Vec<Op>,
}

impl Plan {
    fn from_args(args: &BenchArgs) -> anyhow::Result<Self> {
        if args.sizes.is_empty() {
            bail!("--sizes: at least one size is required");
        }
        let counts: Vec<usize> = match args.objects.len() {
            0 => args.sizes.iter().map(|&s| default_objects(s)).collect(),
            1 => vec![args.objects[0]; args.sizes.len()],
            n if n == args.sizes.len() => args.objects.clone(),
            n => bail!(
                "--objects: got {n} values for {} sizes (give one value, or one per size)",
                args.sizes.len()
            ),
        };
        let mut ops = args.ops.clone();
        ops.sort();
        ops.dedup();
        if args.keep {
            ops.retain(|&o| o != Op::Delete);
        }
        if ops.is_empty() {
            bail!("nothing to do: no operations selected");
        }
        Ok(Plan {
            sizes: args.sizes.iter().copied().zip(counts).collect(),
            ops,
        })
    }
}

fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = blake3::hash(format!("{nanos}-{}", std::process::id()).as_bytes());
    h.to_hex()[..12].to_string()
}

fn object_key(prefix: &str, size: u64, index: usize) -> String {
    format!("{prefix}{}/{index:08}", format_size(size))
}

fn size_prefix(prefix: &str, size: u64) -> String {
    format!("{prefix}{}/", format_size(size))
}

/// Run the benchmark and print the report. Returns an error if any
/// operation failed (after printing the table).
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::from_args(&args)?;
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{}/", run_id()));
    let concurrency = args.concurrency;
    let s3 = S3::new(
        &args.endpoint,
        &args.region,
        &args.bucket,
        &args.access_key,
        &args.secret_key,
        concurrency,
        Duration::from_secs(args.timeout),
        args.ca_file.as_deref(),
    )?;
    let s3 = Arc::new(match args.sse {
        None => s3,
        Some(Sse::S3) => s3.with_sse("AES256", None),
        Some(Sse::Kms) => s3.with_sse("aws:kms", args.sse_kms_key_id.as_deref()),
    });

    let ops_str: Vec<&str> = plan.ops.iter().map(|o| o.name()).collect();
    let sizes_str: Vec<String> = plan
        .sizes
        .iter()
        .map(|(s, n)| format!("{} x {n}", format_size(*s)))
        .collect();
    println!("cairn bench");
    println!("  endpoint:    {} (region {})", args.endpoint, args.region);
    println!("  bucket:      {} (prefix {prefix})", args.bucket);
    println!("  concurrency: {concurrency}");
    println!("  sizes:       {}", sizes_str.join(", "));
    println!("  ops:         {}", ops_str.join(","));
    if let Some(sse) = args.sse {
        println!("  encryption:  {sse:?}");
    }
    if let Some(max) = plan.sizes.iter().map(|(s, _)| *s).max() {
        let peak = max.saturating_mul(concurrency as u64);
        if peak > 4 * size::GIB {
            eprintln!(
                "warning: up to {} of object buffers in flight ({} x {concurrency})",
                format_size(peak),
                format_size(max)
            );
        }
    }

    match s3.ensure_bucket().await? {
        BucketState::Created => println!("  (created bucket {})", args.bucket),
        BucketState::Existed => {}
    }
    println!();

    let mut results: Vec<PhaseResult> = Vec::new();
    for &(size, count) in &plan.sizes {
        // objects known to exist under this size prefix (for the LIST check)
        let mut present = count as u64;
        for &op in &plan.ops {
            let r = match op {
                Op::Put => phase_put(&s3, &prefix, size, count, concurrency).await?,
                Op::Get => phase_get(&s3, &prefix, size, count, concurrency).await?,
                Op::List => phase_list(&s3, &prefix, size, present).await,
                Op::Delete => phase_delete(&s3, &prefix, size, count, concurrency).await?,
            };
            if op == Op::Put {
                present = r.ops;
            }
            eprintln!(
                "{:<6} {:>6}: {} ok, {} errors in {:.2}s",
                r.op,
                format_size(size),
                r.ops,
                r.errors,
                r.elapsed.as_secs_f64()
            );
            for e in &r.sample_errors {
                eprintln!("    error: {e}");
            }
            results.push(r);
        }
    }

    println!();
    let rows: Vec<_> = results.iter().map(PhaseResult::summary).collect();
    print!("{}", format_table(&rows));
    println!("(MB/s = 10^6 payload bytes per second of phase wall time; list rows count pages, fetched sequentially)");

    let errors: u64 = results.iter().map(|r| r.errors).sum();
    if errors > 0 {
        bail!("{errors} operation(s) failed");
    }
    Ok(())
}

/// Run `op(key)` for the keys of objects `0..n` of `size` under `prefix`,
/// with `concurrency` workers.
/// Each call returns its own measured latency and payload bytes, so that
/// preparation (content generation) and checks (verification) stay out of
/// the latency numbers.
async fn run_parallel<F, Fut>(
    name: &'static str,
    prefix: &str,
    size: u64,
    n: usize,
    concurrency: usize,
    has_payload: bool,
    op: F,
) -> anyhow::Result<PhaseResult>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<(Duration, u64)>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.min(n) {
        let op = Arc::clone(&op);
        let next = Arc::clone(&next);
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut r = PhaseResult {
                bytes: has_payload.then_some(0),
                ..Default::default()
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let key = object_key(&prefix, size, i);
                match op(key.clone()).await {
                    Ok((lat, bytes)) => {
                        r.ops += 1;
                        r.latencies_ns
                            .push(u64::try_from(lat.as_nanos()).unwrap_or(u64::MAX));
                        if let Some(b) = r.bytes.as_mut() {
                            *b += bytes;
                        }
                    }
                    Err(e) => r.record_error(format!("{key}: {e:#}")),
                }
            }
            r
        }));
    }
    let mut total = PhaseResult {
        op: name,
        size,
        bytes: has_payload.then_some(0),
        ..Default::default()
    };
    for t in tasks {
        let r = t.await.map_err(|e| anyhow!("{name} worker failed: {e}"))?;
        total.merge(r);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

async fn generate(key: String, size: u64) -> anyhow::Result<Bytes> {
    let len = usize::try_from(size)?;
    if size >= BLOCKING_THRESHOLD {
        let v = tokio::task::spawn_blocking(move || content::generate(&key, len)).await?;
        Ok(Bytes::from(v))
    } else {
        Ok(Bytes::from(content::generate(&key, len)))
    }
}

async fn verify(key: String, size: u64, data: Bytes) -> anyhow::Result<()> {
    let len = usize::try_from(size)?;
    let res = if size >= BLOCKING_THRESHOLD {
        tokio::task::spawn_blocking(move || content::verify(&key, len, &data)).await?
    } else {
        content::verify(&key, len, &data)
    };
    res.map_err(|e| anyhow!("GET verification failed: {e}"))
}

async fn phase_put(
    s3: &Arc<S3>,
    prefix: &str,
    size: u64,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<PhaseResult> {
    let s3 = Arc::clone(s3);
    run_parallel("put", prefix, size, n, concurrency, true, move |key| {
        let s3 = Arc::clone(&s3);
        async move {
            let body = generate(key.clone(), size).await?;
            let t = Instant::now();
            s3.put_object(&key, body).await?;
            Ok((t.elapsed(), size))
        }
    })
    .await
}

async fn phase_get(
    s3: &Arc<S3>,
    prefix: &str,
    size: u64,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<PhaseResult> {
    let s3 = Arc::clone(s3);
    run_parallel("get", prefix, size, n, concurrency, true, move |key| {
        let s3 = Arc::clone(&s3);
        async move {
            let t = Instant::now();
            let body = s3.get_object(&key).await?;
            let lat = t.elapsed();
            verify(key, size, body).await?;
            Ok((lat, size))
        }
    })
    .await
}

async fn phase_delete(
    s3: &Arc<S3>,
    prefix: &str,
    size: u64,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<PhaseResult> {
    let s3 = Arc::clone(s3);
    run_parallel("delete", prefix, size, n, concurrency, false, move |key| {
        let s3 = Arc::clone(&s3);
        async move {
            let t = Instant::now();
            s3.delete_object(&key).await?;
            Ok((t.elapsed(), 0))
        }
    })
    .await
}

/// List the size prefix page by page (pages are inherently sequential),
/// timing each page, and check the listing matches what was written.
async fn phase_list(s3: &S3, prefix: &str, size: u64, expected: u64) -> PhaseResult {
    let list_prefix = size_prefix(prefix, size);
    let mut r = PhaseResult {
        op: "list",
        size,
        ..Default::default()
    };
    let start = Instant::now();
    let mut token: Option<String> = None;
    let mut listed: u64 = 0;
    let mut wrong_size: u64 = 0;
    let mut complete = false;
    // guard against a server that never stops paginating
    let max_pages = expected / LIST_PAGE as u64 + 10;
    for _ in 0..max_pages {
        let t = Instant::now();
        match s3
            .list_page(&list_prefix, LIST_PAGE, token.as_deref())
            .await
        {
            Ok(page) => {
                r.latencies_ns
                    .push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                r.ops += 1;
                listed += page.contents.len() as u64;
                wrong_size += page
                    .contents
                    .iter()
                    .filter(|c| c.size.is_some_and(|s| s != size))
                    .count() as u64;
                match page.next_continuation_token {
                    Some(next) => token = Some(next),
                    None => {
                        complete = true;
                        break;
                    }
                }
            }
            Err(e) => {
                r.record_error(format!("{e:#}"));
                break;
            }
        }
    }
    r.elapsed = start.elapsed();
    if r.errors == 0 {
        if !complete {
            r.record_error(format!(
                "listing of {list_prefix} did not finish after {max_pages} pages"
            ));
        } else if listed != expected {
            r.record_error(format!(
                "listed {listed} objects under {list_prefix}, expected {expected}"
            ));
        }
    }
    if wrong_size > 0 {
        r.record_error(format!(
            "{wrong_size} listed objects under {list_prefix} have a size other than {size}"
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        let mut v = vec!["cairn-bench", "--access-key", "ak", "--secret-key", "sk"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| c.bench)
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--concurrency"));
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.sizes, vec![4096, 16 * 1024 * 1024]);
        assert_eq!(a.concurrency, 16);
        assert_eq!(a.ops, vec![Op::Put, Op::Get, Op::List, Op::Delete]);
        assert_eq!(a.bucket, "cairn-bench");
        assert!(!a.keep);
        let p = Plan::from_args(&a).unwrap();
        assert_eq!(p.sizes, vec![(4096, 2000), (16 * 1024 * 1024, 64)]);
    }

    #[test]
    fn overrides() {
        let a = parse(&[
            "-c",
            "4",
            "--sizes",
            "1MiB,0,8KiB",
            "--objects",
            "10",
            "--ops",
            "delete,put,get,put",
        ])
        .unwrap();
        assert_eq!(a.concurrency, 4);
        let p = Plan::from_args(&a).unwrap();
        assert_eq!(p.sizes, vec![(1 << 20, 10), (0, 10), (8192, 10)]);
        assert_eq!(p.ops, vec![Op::Put, Op::Get, Op::Delete]);

        let a = parse(&["--sizes", "4KiB,1MiB", "--objects", "5,3", "--keep"]).unwrap();
        let p = Plan::from_args(&a).unwrap();
        assert_eq!(p.sizes, vec![(4096, 5), (1 << 20, 3)]);
        assert_eq!(p.ops, vec![Op::Put, Op::Get, Op::List]);

        let a = parse(&["--sizes", "4KiB,1MiB", "--objects", "5,3,1"]).unwrap();
        assert!(Plan::from_args(&a).is_err());
        let a = parse(&["--ops", "delete", "--keep"]).unwrap();
        assert!(Plan::from_args(&a).is_err());
    }

    #[test]
    fn bad_input_is_rejected_by_clap() {
        assert!(parse(&["-c", "0"]).is_err());
        assert!(parse(&["--objects", "0"]).is_err());
        assert!(parse(&["--sizes", "4XB"]).is_err());
        assert!(parse(&["--ops", "put,scan"]).is_err());
        assert!(parse(&["--timeout", "-1"]).is_err());
    }

    #[test]
    fn keys() {
        assert_eq!(object_key("bench-x/", 4096, 7), "bench-x/4KiB/00000007");
        assert_eq!(size_prefix("bench-x/", 16 << 20), "bench-x/16MiB/");
        let id = run_id();
        assert_eq!(id.len(), 12);
    }
}
