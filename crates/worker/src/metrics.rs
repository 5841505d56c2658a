//! `cairn_worker_*` metrics (names as registered in the node's `cairn`-prefixed registry):
//! `worker_state{worker,state}` (1 for the current state, 0 for the others),
//! `worker_items_total{worker}`, `worker_bytes_total{worker}`, `worker_errors_total{worker}`,
//! `worker_queue_length{worker}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::WorkerState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WorkerLabel {
    pub worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub worker: String,
    pub state: String,
}

#[derive(Clone, Default)]
pub(crate) struct WorkerMetrics {
    pub state: Family<StateLabels, Gauge>,
    pub items: Family<WorkerLabel, Counter>,
    pub bytes: Family<WorkerLabel, Counter>,
    pub errors: Family<WorkerLabel, Counter>,
    pub queue: Family<WorkerLabel, Gauge>,
}

fn label(worker: &str) -> WorkerLabel {
    WorkerLabel {
        worker: worker.to_string(),
    }
}

impl WorkerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "worker_state",
            "Background worker state: 1 for the state the worker is in, 0 for the others",
            self.state.clone(),
        );
        registry.register(
            "worker_items",
            "Items done by a background worker (chunks collected, references delivered, ...)",
            self.items.clone(),
        );
        registry.register(
            "worker_bytes",
            "Bytes moved or checked by a background worker",
            self.bytes.clone(),
        );
        registry.register(
            "worker_errors",
            "Failed steps of a background worker",
            self.errors.clone(),
        );
        registry.register(
            "worker_queue_length",
            "Items a background worker knows are waiting",
            self.queue.clone(),
        );
    }

    pub fn items(&self, worker: &str) -> Counter {
        self.items.get_or_create(&label(worker)).clone()
    }

    pub fn bytes(&self, worker: &str) -> Counter {
        self.bytes.get_or_create(&label(worker)).clone()
    }

    pub fn errors(&self, worker: &str) -> Counter {
        self.errors.get_or_create(&label(worker)).clone()
    }

    pub fn queue(&self, worker: &str) -> Gauge {
        self.queue.get_or_create(&label(worker)).clone()
    }

    /// Sets the state gauges of `worker` so exactly `state` reads 1.
    pub fn set_state(&self, worker: &str, state: WorkerState) {
        for s in WorkerState::ALL {
            let labels = StateLabels {
                worker: worker.to_string(),
                state: s.as_str().to_string(),
            };
            self.state.get_or_create(&labels).set(i64::from(s == state));
        }
    }
}
