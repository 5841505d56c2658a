//! `cairn mb|rb|cp|ls|rm`: thin clients of a node's FileService (its RPC port).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cairn_files::{Credentials, FileClient, ListFilesRequest, UploadOptions};

use crate::identity;

const SCHEME: &str = "cairn://";
/// Files at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

/// A progress bar on stderr for moving `total` bytes, or None when stderr is not a terminal
/// or the file is small.
fn progress_bar(total: u64, verb: &str) -> Option<indicatif::ProgressBar> {
    if total < PROGRESS_MIN_BYTES || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(verb.to_string());
    Some(bar)
}

/// A reader that advances a progress bar by what it reads.
struct ProgressReader<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for ProgressReader<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &r {
            self.bar.inc((buf.filled().len() - before) as u64);
        }
        r
    }
}

/// Where the node is and how to sign calls to it.
#[derive(clap::Args)]
pub struct Connection {
    /// RPC endpoint (host:port) of any node.
    #[arg(long, env = "CAIRN_ENDPOINT", default_value = "127.0.0.1:7000")]
    endpoint: String,
    /// Access key (the node's ACCESS_KEY).
    #[arg(long, env = "ACCESS_KEY", hide_env_values = true)]
    access_key: Option<String>,
    /// Secret key (the node's SECRET_KEY); used to sign calls, never sent.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// A node's data directory to read generated credentials from (`credentials.toml`);
    /// without keys or this, `./data` is tried.
    #[arg(long, env = "STORAGE_PATH")]
    data_dir: Option<PathBuf>,
    /// The cluster CA certificate (PEM) to verify the node with; default
    /// `<data-dir>/tls/ca.pem`.
    #[arg(long, env = "CAIRN_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint (hex) of the cluster CA certificate, instead of a CA file.
    #[arg(long, env = "CAIRN_CA_FINGERPRINT")]
    ca_fingerprint: Option<String>,
}

impl Connection {
    fn credentials(&self) -> anyhow::Result<Credentials> {
        // An empty variable (`ACCESS_KEY=`) counts as unset.
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let (access, secret) = match (set(&self.access_key), set(&self.secret_key)) {
            (Some(a), Some(s)) => (a, s),
            (Some(_), None) => anyhow::bail!("--access-key given without --secret-key"),
            (None, Some(_)) => anyhow::bail!("--secret-key given without --access-key"),
            (None, None) => {
                let dir = self
                    .data_dir
                    .clone()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or_else(|| PathBuf::from("data"));
                identity::stored_credentials(&dir)?.with_context(|| {
                    format!(
                        "no credentials: pass --access-key and --secret-key (or set ACCESS_KEY \
                         and SECRET_KEY), or --data-dir of a node that generated them \
                         ({} has no credentials.toml)",
                        dir.display()
                    )
                })?
            }
        };
        Ok(Credentials::new(&access, &secret)?)
    }

    /// How the node's certificate is verified: `--ca-fingerprint`, `--ca-file`, or the CA in
    /// the data directory.
    fn ca(&self) -> anyhow::Result<cairn_trust::CaSource> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        if let Some(f) = set(&self.ca_fingerprint) {
            return Ok(cairn_trust::CaSource::Fingerprint(f));
        }
        let path = match self.ca_file.clone().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => p,
            None => {
                let dir = self
                    .data_dir
                    .clone()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or_else(|| PathBuf::from("data"));
                let p = dir.join("tls").join("ca.pem");
                anyhow::ensure!(
                    p.exists(),
                    "no cluster CA to verify the node with: pass --ca-file (CAIRN_CA_FILE) or --ca-fingerprint (CAIRN_CA_FINGERPRINT), or --data-dir of a node ({} does not exist)",
                    p.display()
                );
                p
            }
        };
        let bytes = std::fs::read(&path)
            .with_context(|| format!("reading the CA file {}", path.display()))?;
        Ok(cairn_trust::CaSource::Cert(bytes))
    }

    async fn client(&self) -> anyhow::Result<FileClient> {
        let creds = self.credentials()?;
        let tls = cairn_trust::tls::ca_client_config(&self.ca()?).context("the cluster CA")?;
        FileClient::connect_tls(&self.endpoint, creds, tls)
            .await
            .map_err(|e| match e {
                cairn_files::ClientError::Connect { .. } => anyhow::anyhow!(
                    "{e} (is the node's certificate from the cluster CA given by --ca-file / --ca-fingerprint / --data-dir?)"
                ),
                e => e.into(),
            })
    }
}

#[derive(clap::Args)]
pub struct MbArgs {
    /// Bucket name, or `cairn://bucket`.
    bucket: String,
    #[command(flatten)]
    conn: Connection,
}

#[derive(clap::Args)]
pub struct RbArgs {
    /// Bucket name, or `cairn://bucket`; it must be empty.
    bucket: String,
    #[command(flatten)]
    conn: Connection,
}

#[derive(clap::Args)]
pub struct CpArgs {
    /// `<local file>` or `-` (stdin) to upload; `cairn://bucket/key` to download.
    source: String,
    /// `cairn://bucket/key` (a key ending in `/` or none: the file's name is appended) to
    /// upload; a local path, a directory or `-` (stdout) to download.
    destination: String,
    /// Content-Type to store (default: guessed from the file extension).
    #[arg(long)]
    content_type: Option<String>,
    /// User metadata `name=value` (S3's x-amz-meta-*); repeatable.
    #[arg(long = "meta", value_name = "NAME=VALUE")]
    meta: Vec<String>,
    #[command(flatten)]
    conn: Connection,
}

#[derive(clap::Args)]
pub struct LsArgs {
    /// `cairn://bucket[/prefix]`; none: list buckets.
    url: Option<String>,
    /// List every key under the prefix instead of one level (no `/` roll-up).
    #[arg(long, short)]
    recursive: bool,
    #[command(flatten)]
    conn: Connection,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// `cairn://bucket/key` of each file to delete.
    #[arg(required = true)]
    urls: Vec<String>,
    #[command(flatten)]
    conn: Connection,
}

/// A `cairn://bucket/key` URL (key may be empty).
#[derive(Debug, PartialEq, Eq)]
struct Remote {
    bucket: String,
    key: String,
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.bucket, self.key)
    }
}

/// `Some(remote)` for a `cairn://` URL, `None` for a local path; an error for other URLs.
fn parse_remote(s: &str) -> anyhow::Result<Option<Remote>> {
    let Some(rest) = s.strip_prefix(SCHEME) else {
        if let Some((scheme, _)) = s.split_once("://") {
            anyhow::bail!(
                "invalid URL `{s}`: unsupported scheme `{scheme}://`, expected {SCHEME}bucket/key"
            );
        }
        return Ok(None);
    };
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    anyhow::ensure!(
        !bucket.is_empty(),
        "invalid URL `{s}`: no bucket, expected {SCHEME}bucket/key"
    );
    Ok(Some(Remote {
        bucket: bucket.to_string(),
        key: key.to_string(),
    }))
}

fn require_remote(s: &str) -> anyhow::Result<Remote> {
    parse_remote(s)?.with_context(|| format!("`{s}` is not a {SCHEME}bucket/key URL"))
}

fn require_file(s: &str) -> anyhow::Result<Remote> {
    let r = require_remote(s)?;
    anyhow::ensure!(
        !r.key.is_empty(),
        "`{s}` names a bucket, not a file: expected {SCHEME}bucket/key"
    );
    Ok(r)
}

fn bucket_arg(s: &str) -> anyhow::Result<String> {
    match parse_remote(s)? {
        Some(r) => {
            anyhow::ensure!(r.key.is_empty(), "`{s}` names a file, not a bucket");
            Ok(r.bucket)
        }
        None => Ok(s.to_string()),
    }
}

fn timestamp(ms: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "????-??-?? ??:??:??".into())
}

/// A Content-Type for common extensions; empty (the server's default) otherwise.
fn guess_content_type(path: &Path) -> String {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        _ => "",
    }
    .to_string()
}

fn parse_meta(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--meta `{kv}`: expected NAME=VALUE"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

pub async fn mb(a: MbArgs) -> anyhow::Result<()> {
    let bucket = bucket_arg(&a.bucket)?;
    let client = a.conn.client().await?;
    client.create_bucket(&bucket).await?;
    println!("make_bucket: {SCHEME}{bucket}");
    Ok(())
}

pub async fn rb(a: RbArgs) -> anyhow::Result<()> {
    let bucket = bucket_arg(&a.bucket)?;
    let client = a.conn.client().await?;
    client.delete_bucket(&bucket).await?;
    println!("remove_bucket: {SCHEME}{bucket}");
    Ok(())
}

pub async fn cp(a: CpArgs) -> anyhow::Result<()> {
    let src = parse_remote(&a.source)?;
    let dst = parse_remote(&a.destination)?;
    match (src, dst) {
        (None, Some(dst)) => upload(&a, dst).await,
        (Some(src), None) => download(&a, src).await,
        (Some(_), Some(_)) => anyhow::bail!(
            "copying between two {SCHEME} URLs is not supported; download and upload instead"
        ),
        (None, None) => anyhow::bail!("one side of cp must be a {SCHEME}bucket/key URL"),
    }
}

async fn upload(a: &CpArgs, mut dst: Remote) -> anyhow::Result<()> {
    let stdin = a.source == "-";
    let path = Path::new(&a.source);
    if dst.key.is_empty() || dst.key.ends_with('/') {
        anyhow::ensure!(
            !stdin,
            "give the key to upload stdin to: {SCHEME}{}/<key>",
            dst.bucket
        );
        let name = path
            .file_name()
            .with_context(|| format!("`{}` has no file name to use as the key", a.source))?;
        dst.key.push_str(&name.to_string_lossy());
    }
    // Checked before connecting, so a typo in the path is reported as such.
    if !stdin {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read `{}`", a.source))?;
        anyhow::ensure!(meta.is_file(), "`{}` is not a regular file", a.source);
    }
    let opts = UploadOptions {
        size: None,
        content_type: a
            .content_type
            .clone()
            .unwrap_or_else(|| guess_content_type(path)),
        metadata: parse_meta(&a.meta)?,
    };
    let client = a.conn.client().await?;
    let size = match stdin {
        true => None,
        false => Some(std::fs::metadata(path)?.len()),
    };
    let info = match (stdin, size.and_then(|n| progress_bar(n, "upload"))) {
        (true, _) => {
            client
                .upload(&dst.bucket, &dst.key, tokio::io::stdin(), opts, "stdin")
                .await
        }
        (false, None) => client.upload_file(path, &dst.bucket, &dst.key, opts).await,
        (false, Some(bar)) => {
            let name = a.source.clone();
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot read `{name}`"))?;
            // Declared, so a file changing underneath is refused (as `upload_file` does).
            let opts = UploadOptions { size, ..opts };
            let reader = ProgressReader {
                inner: file,
                bar: bar.clone(),
            };
            let r = client
                .upload(&dst.bucket, &dst.key, reader, opts, &name)
                .await;
            bar.finish_and_clear();
            r
        }
    }
    .with_context(|| format!("upload of `{}` to {dst} failed", a.source))?;
    println!("upload: {} to {dst} ({} bytes)", a.source, info.size);
    Ok(())
}

async fn download(a: &CpArgs, src: Remote) -> anyhow::Result<()> {
    anyhow::ensure!(
        !src.key.is_empty(),
        "`{}` names a bucket, not a file: expected {SCHEME}bucket/key",
        a.source
    );
    let client = a.conn.client().await?;
    if a.destination == "-" {
        let mut out = tokio::io::stdout();
        client
            .download_to(&src.bucket, &src.key, &mut out, "stdout")
            .await
            .with_context(|| format!("download of {src} failed"))?;
        return Ok(());
    }
    let mut path = PathBuf::from(&a.destination);
    if a.destination.ends_with('/') || path.is_dir() {
        let name = src.key.rsplit('/').next().unwrap_or_default();
        anyhow::ensure!(
            !name.is_empty(),
            "`{}` ends with `/`: name the local file to download it to",
            a.source
        );
        path.push(name);
    }
    // The size is asked first only when a bar may be shown.
    let bar = match std::io::stderr().is_terminal() {
        true => client
            .stat(&src.bucket, &src.key)
            .await
            .ok()
            .and_then(|i| progress_bar(i.size, "download")),
        false => None,
    };
    let r = match &bar {
        Some(bar) => {
            client
                .download_file_with_progress(&src.bucket, &src.key, &path, &|n| bar.inc(n))
                .await
        }
        None => client.download_file(&src.bucket, &src.key, &path).await,
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let info = r.with_context(|| format!("download of {src} to `{}` failed", path.display()))?;
    println!(
        "download: {src} to {} ({} bytes)",
        path.display(),
        info.size
    );
    Ok(())
}

pub async fn ls(a: LsArgs) -> anyhow::Result<()> {
    let target = a.url.as_deref().map(require_remote).transpose()?;
    let client = a.conn.client().await?;
    let Some(target) = target else {
        for b in client.list_buckets().await? {
            println!("{}  {}", timestamp(b.created_ms), b.name);
        }
        return Ok(());
    };
    let mut token = String::new();
    loop {
        let page = client
            .list(ListFilesRequest {
                bucket: target.bucket.clone(),
                prefix: target.key.clone(),
                delimiter: if a.recursive {
                    String::new()
                } else {
                    "/".into()
                },
                continuation_token: token,
                ..ListFilesRequest::default()
            })
            .await?;
        for p in &page.common_prefixes {
            println!("{:>19}  {:>12}  {p}", "", "PRE");
        }
        for f in &page.files {
            println!(
                "{}  {:>12}  {}",
                timestamp(f.last_modified_ms),
                f.size,
                f.key
            );
        }
        if page.next_continuation_token.is_empty() {
            return Ok(());
        }
        token = page.next_continuation_token;
    }
}

pub async fn rm(a: RmArgs) -> anyhow::Result<()> {
    let targets = a
        .urls
        .iter()
        .map(|u| require_file(u))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = a.conn.client().await?;
    for t in targets {
        client
            .delete(&t.bucket, &t.key)
            .await
            .with_context(|| format!("delete of {t} failed"))?;
        println!("delete: {t}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(parse_remote("./local").unwrap(), None);
        assert_eq!(parse_remote("-").unwrap(), None);
        assert_eq!(
            parse_remote("cairn://b/a/b.txt").unwrap(),
            Some(Remote {
                bucket: "b".into(),
                key: "a/b.txt".into()
            })
        );
        assert_eq!(
            parse_remote("cairn://b").unwrap(),
            Some(Remote {
                bucket: "b".into(),
                key: String::new()
            })
        );
        assert!(parse_remote("cairn://").is_err());
        assert!(parse_remote("cairn:///k").is_err());
        assert!(parse_remote("s3://b/k").is_err());
        assert!(require_file("cairn://b/").is_err());
        assert_eq!(bucket_arg("cairn://b").unwrap(), "b");
        assert!(bucket_arg("cairn://b/k").is_err());
    }

    #[test]
    fn helpers() {
        assert_eq!(guess_content_type(Path::new("a/B.JPG")), "image/jpeg");
        assert_eq!(guess_content_type(Path::new("noext")), "");
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(
            parse_meta(&["a=b=c".into()])
                .unwrap()
                .get("a")
                .map(String::as_str),
            Some("b=c")
        );
        assert!(parse_meta(&["nokv".into()]).is_err());
    }
}
