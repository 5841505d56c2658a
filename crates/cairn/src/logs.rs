//! Logging of `cairn server`: the `tracing` subscriber and the node's recent log lines.
//!
//! - One filter for everything (`LOG`, e.g. `info,cairn_raft=debug`), replaceable at run time
//!   through [`Logs::set_filter`] (`PUT /log-level`).
//! - stderr in `LOG_FORMAT=plain` (human lines; ANSI colour only when stderr is a terminal and
//!   `NO_COLOR` is unset) or `json` (one object per line: `time`, `level`, `target`,
//!   `message`, then the event's fields and those of its enclosing spans, e.g. `request_id`).
//! - A ring buffer of the last [`RING_LINES`] lines and a broadcast of each new one, read by
//!   `GET /logs` and `GET /logs/stream`.
//!
//! Every request runs in a span carrying its `request_id` (S3: `s3_request`, management API:
//! `admin_request`, made by [`request_span`]), so each line logged while serving it names it.

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// Lines kept for `GET /logs`.
pub const RING_LINES: usize = 4096;
/// Lines a slow `/logs/stream` reader may fall behind before it is told it missed some.
const LIVE_BACKLOG: usize = 1024;

/// One log line as `/logs` returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Position in this node's log since it started (increasing by one per line).
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The module that logged, e.g. `cairn_raft::registry`.
    pub target: String,
    pub message: String,
    /// The event's fields and those of its enclosing spans (inner ones win), e.g. `request_id`.
    #[serde(default)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

impl LogLine {
    /// The line as `LOG_FORMAT=json` writes it: fields flattened next to the core keys.
    pub fn to_json(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("time".into(), self.time.clone().into());
        m.insert("level".into(), self.level.clone().into());
        m.insert("target".into(), self.target.clone().into());
        m.insert("message".into(), self.message.clone().into());
        for (k, v) in &self.fields {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        serde_json::Value::Object(m).to_string()
    }

    /// The line as `cairn logs` prints it.
    pub fn to_plain(&self) -> String {
        let mut out = format!(
            "{} {:>5} {}: {}",
            self.time, self.level, self.target, self.message
        );
        for (k, v) in &self.fields {
            match v {
                serde_json::Value::String(s) => out.push_str(&format!(" {k}={s}")),
                other => out.push_str(&format!(" {k}={other}")),
            }
        }
        out
    }
}

/// Which lines a reader wants.
#[derive(Clone, Debug, Default)]
pub struct LineFilter {
    /// At least this severe (`warn` keeps WARN and ERROR).
    pub level: Option<Level>,
    /// Target prefix, e.g. `cairn_raft` or `cairn_raft::handoff`.
    pub target: Option<String>,
}

/// Why a filter or level was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("unknown level {0:?}: use error, warn, info, debug or trace")]
    Level(String),
    #[error("invalid log filter {filter:?}: {reason}")]
    Filter { filter: String, reason: String },
    #[error("the log filter cannot be changed: {0}")]
    Reload(String),
}

impl LineFilter {
    /// From query parameters (`level`, `target`); empty values mean no restriction.
    pub fn parse(level: Option<&str>, target: Option<&str>) -> Result<Self, LogError> {
        let level = match level.map(str::trim).filter(|l| !l.is_empty()) {
            Some(l) => Some(
                l.parse::<Level>()
                    .map_err(|_| LogError::Level(l.to_string()))?,
            ),
            None => None,
        };
        Ok(Self {
            level,
            target: target
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from),
        })
    }

    pub fn matches(&self, line: &LogLine) -> bool {
        if let Some(want) = self.level {
            // tracing orders levels by verbosity: ERROR < WARN < ... < TRACE.
            match line.level.parse::<Level>() {
                Ok(l) if l <= want => {}
                _ => return false,
            }
        }
        match &self.target {
            Some(t) => line.target.starts_with(t.as_str()),
            None => true,
        }
    }
}

struct Inner {
    ring: Mutex<VecDeque<LogLine>>,
    capacity: usize,
    seq: AtomicU64,
    live: broadcast::Sender<LogLine>,
    filter: Mutex<String>,
    reload: Option<reload::Handle<EnvFilter, Registry>>,
    json_stderr: bool,
}

/// The node's log: recent lines, live lines and the filter. Cheap to clone.
#[derive(Clone)]
pub struct Logs {
    inner: Arc<Inner>,
}

impl Logs {
    /// A log keeping `capacity` lines, not installed as the global subscriber (tests; the
    /// server uses [`init`]).
    #[cfg(test)]
    pub fn new(capacity: usize) -> Self {
        Self::build(capacity, "info".into(), None, false)
    }

    fn build(
        capacity: usize,
        filter: String,
        reload: Option<reload::Handle<EnvFilter, Registry>>,
        json_stderr: bool,
    ) -> Self {
        let (live, _) = broadcast::channel(LIVE_BACKLOG);
        Self {
            inner: Arc::new(Inner {
                ring: Mutex::new(VecDeque::with_capacity(capacity.min(RING_LINES))),
                capacity: capacity.max(1),
                seq: AtomicU64::new(0),
                live,
                filter: Mutex::new(filter),
                reload,
                json_stderr,
            }),
        }
    }

    /// The layer that records lines into this log (and writes JSON lines to stderr when the
    /// log was made with `LOG_FORMAT=json`).
    pub fn layer(&self) -> CaptureLayer {
        CaptureLayer { logs: self.clone() }
    }

    /// The current filter, e.g. `info,openraft=warn`.
    pub fn filter(&self) -> String {
        lock(&self.inner.filter).clone()
    }

    /// Replaces the filter of every output; returns the previous one.
    pub fn set_filter(&self, filter: &str) -> Result<String, LogError> {
        let filter = filter.trim();
        if filter.is_empty() {
            return Err(LogError::Filter {
                filter: filter.into(),
                reason: "empty".into(),
            });
        }
        let parsed = EnvFilter::builder()
            .parse(filter)
            .map_err(|e| LogError::Filter {
                filter: filter.into(),
                reason: e.to_string(),
            })?;
        if let Some(handle) = &self.inner.reload {
            handle
                .reload(parsed)
                .map_err(|e| LogError::Reload(e.to_string()))?;
        }
        Ok(std::mem::replace(
            &mut *lock(&self.inner.filter),
            filter.to_string(),
        ))
    }

    /// The last `limit` lines matching `f` with a sequence number above `after`, oldest first.
    pub fn recent(&self, f: &LineFilter, after: u64, limit: usize) -> Vec<LogLine> {
        let ring = lock(&self.inner.ring);
        let mut out: Vec<LogLine> = ring
            .iter()
            .rev()
            .filter(|l| l.seq > after && f.matches(l))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Lines logged from now on (a receiver that falls [`LIVE_BACKLOG`] lines behind is told
    /// how many it missed).
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.inner.live.subscribe()
    }

    /// Writes `line` (JSON on stderr when so configured) and, if `keep`, records it.
    fn push(&self, mut line: LogLine, keep: bool) {
        if self.inner.json_stderr {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{}", line.to_json());
        }
        if !keep {
            return;
        }
        line.seq = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut ring = lock(&self.inner.ring);
            if ring.len() >= self.inner.capacity {
                ring.pop_front();
            }
            ring.push_back(line.clone());
        }
        let _ = self.inner.live.send(line);
    }
}

/// A poisoned lock still holds usable log state (a panic elsewhere must not stop logging).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the global subscriber: `filter` (`LOG`; an invalid one falls back to `info`, with
/// a warning) and `format` (`plain` or `json`).
pub fn init(filter: &str, format: &str) -> Logs {
    let (env, used, bad) = match EnvFilter::builder().parse(filter) {
        Ok(f) => (f, filter.to_string(), None),
        Err(e) => (
            EnvFilter::new("info"),
            "info".to_string(),
            Some(e.to_string()),
        ),
    };
    let (filter_layer, handle) = reload::Layer::new(env);
    let json = format == "json";
    let logs = Logs::build(RING_LINES, used, Some(handle), json);
    let plain = (!json).then(|| {
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour)
            .with_target(false)
    });
    let _ = tracing_subscriber::registry()
        .with(filter_layer)
        .with(plain)
        .with(logs.layer())
        .try_init();
    if let Some(reason) = bad {
        tracing::warn!(filter, %reason, "invalid LOG filter: using `info`");
    }
    logs
}

/// Records events into a [`Logs`].
pub struct CaptureLayer {
    logs: Logs,
}

/// The formatted fields of a span, kept in its extensions.
struct SpanFields(BTreeMap<String, serde_json::Value>);

#[derive(Default)]
struct Fields {
    message: Option<String>,
    map: BTreeMap<String, serde_json::Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, v: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.map.insert(field.name().to_string(), v);
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

/// Transport-level chatter below INFO (per-frame, per-flush) is not kept: streaming the log
/// to a reader would log its own writes, feeding itself.
fn transport_chatter(target: &str, level: &Level) -> bool {
    *level > Level::INFO
        && ["hyper", "h2", "tower", "rustls", "tokio_util", "tonic"]
            .iter()
            .any(|p| target.starts_with(p))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(f.map));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let mut f = Fields::default();
        values.record(&mut f);
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            match ext.get_mut::<SpanFields>() {
                Some(SpanFields(m)) => m.extend(f.map),
                None => ext.insert(SpanFields(f.map)),
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let keep = !transport_chatter(meta.target(), meta.level());
        if !keep && !self.logs.inner.json_stderr {
            return;
        }
        let mut fields = BTreeMap::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(m)) = span.extensions().get::<SpanFields>() {
                    fields.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut f = Fields::default();
        event.record(&mut f);
        fields.extend(f.map);
        self.logs.push(
            LogLine {
                seq: 0,
                time: now_rfc3339(),
                level: meta.level().to_string(),
                target: meta.target().to_string(),
                message: f.message.unwrap_or_default(),
                fields,
            },
            keep,
        );
    }
}

/// Middleware of the management API: runs each request in an `admin_request` span with a
/// fresh `request_id` (also returned as `x-request-id`).
pub async fn request_span(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let span = tracing::info_span!(
        "admin_request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path()
    );
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Instrument;

    fn capture(logs: &Logs) -> impl Subscriber + Send + Sync {
        tracing_subscriber::registry().with(logs.layer())
    }

    #[test]
    fn lines_carry_the_fields_of_their_spans() {
        let logs = Logs::new(16);
        tracing::subscriber::with_default(capture(&logs), || {
            let span = tracing::info_span!("s3_request", request_id = "abc123", method = "GET");
            let _g = span.enter();
            tracing::info!(bytes = 7u64, "served");
        });
        let lines = logs.recent(&LineFilter::default(), 0, 10);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l.message, "served");
        assert_eq!(l.level, "INFO");
        assert_eq!(l.fields["request_id"], "abc123");
        assert_eq!(l.fields["bytes"], 7);
        let json: serde_json::Value = serde_json::from_str(&l.to_json()).unwrap();
        assert_eq!(json["request_id"], "abc123");
        assert_eq!(json["message"], "served");
        assert!(l.to_plain().contains("request_id=abc123"));
    }

    #[tokio::test]
    async fn async_spans_reach_every_line_of_a_request() {
        let logs = Logs::new(16);
        let _d = tracing::subscriber::set_default(capture(&logs));
        async {
            tracing::info!("one");
            tokio::task::yield_now().await;
            tracing::warn!("two");
        }
        .instrument(tracing::info_span!("admin_request", request_id = "r1"))
        .await;
        let lines = logs.recent(&LineFilter::default(), 0, 10);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.fields["request_id"] == "r1"));
    }

    #[test]
    fn ring_keeps_the_last_lines_and_filters() {
        let logs = Logs::new(3);
        tracing::subscriber::with_default(capture(&logs), || {
            tracing::info!(target: "cairn_raft::registry", "a");
            tracing::warn!(target: "cairn_raft::handoff", "b");
            tracing::error!(target: "cairn_s3", "c");
            tracing::debug!(target: "cairn_raft::registry", "d");
        });
        let all = logs.recent(&LineFilter::default(), 0, 100);
        assert_eq!(
            all.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["b", "c", "d"],
            "oldest line dropped"
        );
        assert_eq!(all.iter().map(|l| l.seq).collect::<Vec<_>>(), [2, 3, 4]);
        let warn = LineFilter::parse(Some("warn"), None).unwrap();
        assert_eq!(
            logs.recent(&warn, 0, 100)
                .iter()
                .map(|l| l.message.as_str())
                .collect::<Vec<_>>(),
            ["b", "c"]
        );
        let raft = LineFilter::parse(None, Some("cairn_raft")).unwrap();
        assert_eq!(logs.recent(&raft, 0, 100).len(), 2);
        assert_eq!(
            logs.recent(&raft, 0, 1)[0].message,
            "d",
            "limit keeps the newest"
        );
        assert_eq!(logs.recent(&LineFilter::default(), 3, 100).len(), 1);
        assert!(LineFilter::parse(Some("loud"), None).is_err());
    }

    #[tokio::test]
    async fn subscribers_see_new_lines() {
        let logs = Logs::new(8);
        let mut rx = logs.subscribe();
        tracing::subscriber::with_default(capture(&logs), || tracing::info!("live"));
        let l = rx.recv().await.unwrap();
        assert_eq!(l.message, "live");
    }

    #[test]
    fn transport_debug_lines_are_not_kept() {
        let logs = Logs::new(8);
        tracing::subscriber::with_default(capture(&logs), || {
            tracing::debug!(target: "hyper::proto::h1::io", "flushed 100 bytes");
            tracing::info!(target: "hyper::server", "kept");
        });
        let lines = logs.recent(&LineFilter::default(), 0, 10);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].message, "kept");
    }

    #[test]
    fn filters_are_checked_before_they_replace_the_current_one() {
        let logs = Logs::new(8);
        assert!(logs.set_filter("info,cairn_raft=loud").is_err());
        assert!(logs.set_filter("  ").is_err());
        assert_eq!(logs.filter(), "info");
        assert_eq!(logs.set_filter("debug,h2=warn").unwrap(), "info");
        assert_eq!(logs.filter(), "debug,h2=warn");
    }
}
