//! A bytes-per-second budget that can be changed while workers run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A rate limit shared by a worker and whoever tunes it (configuration applied live).
/// `0` means unlimited. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct RateLimit {
    bytes_per_sec: Arc<AtomicU64>,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (0: unlimited).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: Arc::new(AtomicU64::new(bytes_per_sec)),
        }
    }

    /// Changes the limit; running workers see it at their next step.
    pub fn set(&self, bytes_per_sec: u64) {
        self.bytes_per_sec.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// The current limit (0: unlimited).
    pub fn get(&self) -> u64 {
        self.bytes_per_sec.load(Ordering::Relaxed)
    }

    /// How long a worker that moved `bytes` in a step begun at `started` must wait so that its
    /// average stays within the limit. Returns `None` when no wait is needed.
    pub fn delay_after(&self, bytes: u64, started: Instant) -> Option<Duration> {
        let rate = self.get();
        if rate == 0 || bytes == 0 {
            return None;
        }
        let budget = Duration::from_secs_f64(bytes as f64 / rate as f64);
        budget
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let r = RateLimit::new(0);
        assert_eq!(r.delay_after(1 << 30, Instant::now()), None);
    }

    #[test]
    fn waits_for_the_bytes_budget_and_follows_changes() {
        let r = RateLimit::new(1000);
        let d = r.delay_after(500, Instant::now()).unwrap();
        assert!(
            d <= Duration::from_millis(500) && d > Duration::from_millis(400),
            "{d:?}"
        );
        r.set(1_000_000);
        let d = r.delay_after(500, Instant::now());
        assert!(d.is_none_or(|d| d <= Duration::from_millis(1)), "{d:?}");
    }
}
