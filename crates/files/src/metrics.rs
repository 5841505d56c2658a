//! Prometheus metrics of the FileService.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: String,
}

/// Calls and bytes of the FileService. Cheap to clone; counts even when not registered.
#[derive(Clone, Default)]
pub struct FileMetrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    calls: Family<CallLabels, Counter>,
    received: Counter,
    sent: Counter,
}

impl FileMetrics {
    /// Registers under the `files_` prefix: `files_calls_total{method,code}` (the code a call
    /// started with; a download that fails mid-stream still counts as `Ok`),
    /// `files_received_bytes_total`, `files_sent_bytes_total`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("files");
        r.register(
            "calls",
            "FileService calls by method and gRPC status code",
            self.inner.calls.clone(),
        );
        r.register(
            "received_bytes",
            "File bytes received by uploads",
            self.inner.received.clone(),
        );
        r.register(
            "sent_bytes",
            "File bytes sent by downloads",
            self.inner.sent.clone(),
        );
    }

    pub(crate) fn call(&self, method: &str, code: tonic::Code) {
        self.inner
            .calls
            .get_or_create(&CallLabels {
                method: method.to_owned(),
                code: format!("{code:?}"),
            })
            .inc();
    }

    pub(crate) fn received(&self) -> Counter {
        self.inner.received.clone()
    }

    pub(crate) fn sent(&self) -> Counter {
        self.inner.sent.clone()
    }
}
