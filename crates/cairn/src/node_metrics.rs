//! Node-wide metrics that belong to no single crate: what this node is
//! (`cairn_node_info{node_id,version,zone}` = 1), when it started
//! (`cairn_node_start_time_seconds`), the disk under the data directory
//! (`cairn_disk_total_bytes`, `cairn_disk_free_bytes` — available to the server, read at scrape
//! time), the metadata database holding every Raft log and state machine
//! (`cairn_meta_db_bytes`, `<data>/meta/meta.redb`, read at scrape time) and the bytes the data
//! directory holds (`cairn_data_dir_bytes`, recomputed in the background every
//! [`DATA_DIR_SCAN`] because walking a large chunk tree is not free).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// How often the data directory's size is recomputed.
pub const DATA_DIR_SCAN: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    node_id: String,
    version: String,
    zone: String,
}

/// Total and available bytes of the file system holding `path`.
pub fn disk_space(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((
        (st.f_blocks as u64).saturating_mul(frsize),
        (st.f_bavail as u64).saturating_mul(frsize),
    ))
}

/// Bytes of the regular files under `dir` (symbolic links are not followed; entries that
/// vanish during the walk are skipped).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

/// The node-wide gauges; register with [`NodeMetrics::register`], keep the data directory
/// size fresh with [`NodeMetrics::spawn_scanner`].
#[derive(Clone)]
pub struct NodeMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    data_dir: PathBuf,
    info: InfoLabels,
    started_secs: i64,
    /// -1 until the first scan finished.
    data_dir_bytes: AtomicI64,
}

impl NodeMetrics {
    pub fn new(data_dir: PathBuf, node_id: &str, zone: Option<&str>) -> Self {
        let started_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Self {
            inner: Arc::new(Inner {
                data_dir,
                info: InfoLabels {
                    node_id: node_id.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    zone: zone.unwrap_or_default().to_string(),
                },
                started_secs,
                data_dir_bytes: AtomicI64::new(-1),
            }),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.inner.clone()));
    }

    /// Recomputes the data directory's size now (blocking: call from a blocking thread).
    pub fn scan_data_dir(&self) {
        let bytes = dir_bytes(&self.inner.data_dir);
        self.inner
            .data_dir_bytes
            .store(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Scans the data directory at once and then every `every`, until `shutdown` turns true.
    pub fn spawn_scanner(&self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let m = me.clone();
                if tokio::task::spawn_blocking(move || m.scan_data_dir())
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => return,
                }
                if *shutdown.borrow() {
                    return;
                }
            }
        });
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = Gauge::<i64, AtomicI64>::default();
    g.set(value);
    let e = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(e)
}

impl Collector for Inner {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let info = Family::<InfoLabels, Gauge>::default();
        info.get_or_create(&self.info).set(1);
        let e = encoder.encode_descriptor(
            "node_info",
            "This node: its id, the cairn version and its zone (always 1)",
            None,
            info.metric_type(),
        )?;
        info.encode(e)?;
        gauge(
            &mut encoder,
            "node_start_time_seconds",
            "When this node started, in seconds since the Unix epoch",
            self.started_secs,
        )?;
        match disk_space(&self.data_dir) {
            Ok((total, free)) => {
                let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                gauge(
                    &mut encoder,
                    "disk_total_bytes",
                    "Size of the file system holding the data directory",
                    to_i64(total),
                )?;
                gauge(
                    &mut encoder,
                    "disk_free_bytes",
                    "Bytes available to the server on the file system holding the data directory",
                    to_i64(free),
                )?;
            }
            Err(e) => tracing::debug!(error = %e, "statvfs of the data directory"),
        }
        if let Ok(meta) = std::fs::metadata(self.data_dir.join("meta").join("meta.redb")) {
            gauge(
                &mut encoder,
                "meta_db_bytes",
                "Size of the metadata database (every Raft group's log and state machine)",
                i64::try_from(meta.len()).unwrap_or(i64::MAX),
            )?;
        }
        let used = self.data_dir_bytes.load(Ordering::Relaxed);
        if used >= 0 {
            gauge(
                &mut encoder,
                "data_dir_bytes",
                "Bytes of the files in the data directory (chunks, metadata, keys)",
                used,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &NodeMetrics) -> String {
        let mut registry = Registry::with_prefix("cairn");
        m.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn data_dir_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("chunks/ab/cd")).unwrap();
        std::fs::write(dir.path().join("chunks/ab/cd/x"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir_all(dir.path().join("meta")).unwrap();
        std::fs::write(dir.path().join("meta/meta.redb"), vec![0u8; 24]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 1024);

        let m = NodeMetrics::new(dir.path().to_path_buf(), "n1", Some("a"));
        let before = text(&m);
        assert!(
            !before.contains("cairn_data_dir_bytes"),
            "no size before the first scan:\n{before}"
        );
        m.scan_data_dir();
        let out = text(&m);
        assert!(out.contains("cairn_data_dir_bytes 1024"), "{out}");
        assert!(
            out.contains(&format!(
                "cairn_node_info{{node_id=\"n1\",version=\"{}\",zone=\"a\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{out}"
        );
        assert!(out.contains("cairn_disk_total_bytes "), "{out}");
        assert!(out.contains("cairn_disk_free_bytes "), "{out}");
        assert!(out.contains("cairn_node_start_time_seconds "), "{out}");
        assert!(out.contains("cairn_meta_db_bytes 24"), "{out}");
        let (total, free) = disk_space(dir.path()).unwrap();
        assert!(total > 0 && free <= total);
    }

    #[test]
    fn missing_dir_has_no_disk_gauges() {
        let m = NodeMetrics::new(PathBuf::from("/nonexistent/cairn-test"), "n1", None);
        let out = text(&m);
        assert!(!out.contains("cairn_disk_free_bytes"), "{out}");
        assert!(out.contains("zone=\"\""), "{out}");
    }
}
