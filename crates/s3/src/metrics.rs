//! Prometheus metrics of the S3 front end, and the access hook that learns each request's
//! operation name for them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use s3s::access::{S3Access, S3AccessContext};
use s3s::S3Result;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: String,
}

fn duration_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Metrics of the S3 listener. Cheap to clone.
#[derive(Clone)]
pub struct S3Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    requests: Family<RequestLabels, Counter>,
    duration: Family<OpLabels, Histogram, fn() -> Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    in_flight: Gauge,
    refused: Family<ReasonLabels, Counter>,
}

/// Every `reason` of `s3_refused_total`, created at zero so dashboards find each series before
/// the first refusal.
pub const REFUSAL_REASONS: [&str; 9] = [
    "connections",
    "in_flight",
    "body_idle_timeout",
    "not_implemented",
    "sigv2",
    "sigv2_signature",
    "sigv2_date",
    "presigned_expiry",
    "unsigned_header",
];

impl Default for S3Metrics {
    fn default() -> Self {
        let refused = Family::<ReasonLabels, Counter>::default();
        for reason in REFUSAL_REASONS {
            let _ = refused.get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            });
        }
        Self {
            inner: Arc::new(Inner {
                requests: Family::default(),
                duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
                bytes_in: Counter::default(),
                bytes_out: Counter::default(),
                in_flight: Gauge::default(),
                refused,
            }),
        }
    }
}

impl S3Metrics {
    /// Creates the metrics and registers them under the `s3_` prefix:
    /// `s3_requests_total{op,method,status}`, `s3_request_duration_seconds{op}`,
    /// `s3_received_bytes_total`, `s3_sent_bytes_total`, `s3_requests_in_flight`,
    /// `s3_refused_total{reason}` (the [`REFUSAL_REASONS`]).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("s3");
        r.register(
            "requests",
            "S3 requests by operation, HTTP method and status",
            m.inner.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from request to response headers, by operation",
            m.inner.duration.clone(),
        );
        r.register(
            "received_bytes",
            "Request body bytes received",
            m.inner.bytes_in.clone(),
        );
        r.register(
            "sent_bytes",
            "Response body bytes sent",
            m.inner.bytes_out.clone(),
        );
        r.register(
            "requests_in_flight",
            "S3 requests being handled",
            m.inner.in_flight.clone(),
        );
        r.register(
            "refused",
            "Connections and requests refused before reaching the S3 API, by reason",
            m.inner.refused.clone(),
        );
        m
    }

    pub(crate) fn refused_counter(&self, reason: &str) -> Counter {
        self.inner
            .refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .clone()
    }

    pub(crate) fn refused(&self, reason: &str) {
        self.refused_counter(reason).inc();
    }

    pub(crate) fn bytes_in(&self) -> Counter {
        self.inner.bytes_in.clone()
    }

    pub(crate) fn bytes_out(&self) -> Counter {
        self.inner.bytes_out.clone()
    }

    pub(crate) fn in_flight(&self) -> Gauge {
        self.inner.in_flight.clone()
    }

    pub(crate) fn observe(&self, op: &str, method: &str, status: u16, elapsed: Duration) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                op: op.to_owned(),
                method: method.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.inner
            .duration
            .get_or_create(&OpLabels { op: op.to_owned() })
            .observe(elapsed.as_secs_f64());
    }
}

/// Carried in a request's extensions: filled with the S3 operation name once s3s has routed it.
#[derive(Clone, Default)]
pub(crate) struct OpSlot(Arc<Mutex<Option<String>>>);

impl OpSlot {
    pub(crate) fn get(&self) -> Option<String> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, op: &str) {
        let mut g = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Some(op.to_owned());
    }
}

/// s3s access hook: records the operation name in the request's [`OpSlot`], then applies the
/// default policy (a valid signature is required; s3s has already verified it).
pub(crate) struct OpRecorder {
    _metrics: S3Metrics,
}

impl OpRecorder {
    pub(crate) fn new(metrics: S3Metrics) -> Self {
        Self { _metrics: metrics }
    }
}

#[async_trait::async_trait]
impl S3Access for OpRecorder {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_owned();
        if let Some(slot) = cx.extensions_mut().get::<OpSlot>() {
            slot.set(&op);
        }
        // Anonymous requests are decided by `access.rs` (a bucket policy may allow them).
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_encodes() {
        let mut registry = Registry::default();
        let m = S3Metrics::register(&mut registry);
        m.observe("GetObject", "GET", 200, Duration::from_millis(3));
        m.bytes_in().inc_by(10);
        m.bytes_out().inc_by(20);
        m.refused("connections");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("s3_requests_total{op=\"GetObject\",method=\"GET\",status=\"200\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("s3_request_duration_seconds_count{op=\"GetObject\"} 1"),
            "{out}"
        );
        assert!(out.contains("s3_received_bytes_total 10"), "{out}");
        assert!(out.contains("s3_sent_bytes_total 20"), "{out}");
        assert!(
            out.contains("s3_refused_total{reason=\"connections\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("s3_refused_total{reason=\"unsigned_header\"} 0"),
            "every reason exists before its first refusal:\n{out}"
        );
    }

    #[test]
    fn every_refusal_reason_in_the_code_is_listed() {
        let sources = [include_str!("guard.rs"), include_str!("serve.rs")];
        for src in sources {
            for (i, _) in src.match_indices("reason: \"") {
                let rest = &src[i + "reason: \"".len()..];
                let reason = &rest[..rest.find('"').unwrap()];
                assert!(
                    REFUSAL_REASONS.contains(&reason),
                    "refusal reason {reason:?} is missing from REFUSAL_REASONS"
                );
            }
        }
    }

    #[test]
    fn op_slot() {
        let s = OpSlot::default();
        assert_eq!(s.get(), None);
        s.clone().set("PutObject");
        assert_eq!(s.get().as_deref(), Some("PutObject"));
    }
}
