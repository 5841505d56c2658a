//! `cairn_gossip_members{state}`: the members gossip knows, by health (`up`, `suspect`,
//! `down`; this node counts as up), read at scrape time. Every state is always present, so a
//! query for `down` members finds a 0 rather than nothing.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{classify, Health, Shared};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The health states a member can be counted in (gossip never reports a peer `Unknown`).
const STATES: [(Health, &str); 3] = [
    (Health::Up, "up"),
    (Health::Suspect, "suspect"),
    (Health::Down, "down"),
];

/// Members by state: (up, suspect, down), this node included as up.
fn count(health: impl Iterator<Item = Health>) -> [i64; 3] {
    let mut n = [1, 0, 0];
    for h in health {
        if let Some(i) = STATES.iter().position(|(s, _)| *s == h) {
            n[i] += 1;
        }
    }
    n
}

pub(super) struct MembersCollector(pub(super) Arc<Shared>);

impl std::fmt::Debug for MembersCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MembersCollector")
    }
}

impl Collector for MembersCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = Instant::now();
        let counts = {
            let inner = self.0.inner.lock();
            count(
                inner
                    .peers
                    .values()
                    .map(|p| classify(p, now, self.0.dead_after)),
            )
        };
        let family = Family::<StateLabels, Gauge>::default();
        for ((_, state), n) in STATES.iter().zip(counts) {
            family.get_or_create(&StateLabels { state }).set(n);
        }
        let e = encoder.encode_descriptor(
            "gossip_members",
            "Cluster members as this node's gossip sees them, by health (itself included, as up)",
            None,
            family.metric_type(),
        )?;
        family.encode(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_itself_as_up() {
        assert_eq!(count(std::iter::empty()), [1, 0, 0]);
        assert_eq!(
            count([Health::Up, Health::Down, Health::Suspect, Health::Down].into_iter()),
            [2, 1, 2]
        );
    }
}
