//! Caps that can be changed while the listener serves (the cluster configuration's
//! `limits.s3_max_connections` / `limits.s3_max_inflight`). A cap is a semaphore; growing it
//! adds permits, shrinking it forgets free permits at once and the rest as they come back
//! (a permit in use is never revoked: the requests it admitted finish).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// A resizable cap on things held at once.
pub struct Limit {
    sem: Arc<Semaphore>,
    /// The cap now.
    size: Mutex<usize>,
    /// Permits still out that must be forgotten when they come back (after a shrink).
    debt: AtomicUsize,
}

impl Limit {
    /// A cap of `size` (at least 1).
    pub fn new(size: usize) -> Arc<Self> {
        let size = size.max(1);
        Arc::new(Self {
            sem: Arc::new(Semaphore::new(size)),
            size: Mutex::new(size),
            debt: AtomicUsize::new(0),
        })
    }

    /// The cap now.
    pub fn size(&self) -> usize {
        *self.size.lock()
    }

    /// Changes the cap to `size` (at least 1).
    pub fn resize(&self, size: usize) {
        let size = size.max(1);
        let mut cur = self.size.lock();
        if size > *cur {
            let mut add = size - *cur;
            // First cancel what a shrink still owed.
            let owed = self.debt.load(Ordering::Acquire);
            let pay = add.min(owed);
            self.debt.fetch_sub(pay, Ordering::AcqRel);
            add -= pay;
            self.sem.add_permits(add);
        } else {
            let remove = *cur - size;
            let forgotten = self.sem.forget_permits(remove);
            self.debt.fetch_add(remove - forgotten, Ordering::AcqRel);
        }
        *cur = size;
    }

    /// A permit if one is free (after settling what a shrink still owes).
    pub fn try_acquire(&self) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        if self.debt.load(Ordering::Acquire) > 0 {
            let _held = self.size.lock();
            let owed = self.debt.load(Ordering::Acquire);
            let forgotten = self.sem.forget_permits(owed);
            self.debt.fetch_sub(forgotten, Ordering::AcqRel);
        }
        self.sem.clone().try_acquire_owned()
    }
}

/// The caps of one S3 listener.
#[derive(Clone)]
pub struct S3Limits {
    /// Open connections.
    pub connections: Arc<Limit>,
    /// Requests being handled.
    pub in_flight: Arc<Limit>,
}

impl S3Limits {
    pub fn new(max_connections: usize, max_in_flight: usize) -> Self {
        Self {
            connections: Limit::new(max_connections),
            in_flight: Limit::new(max_in_flight),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(l: &Limit) -> Vec<OwnedSemaphorePermit> {
        let mut v = Vec::new();
        while let Ok(p) = l.try_acquire() {
            v.push(p);
        }
        v
    }

    #[test]
    fn growing_and_shrinking_change_what_can_be_held() {
        let l = Limit::new(3);
        assert_eq!(hold(&l).len(), 3);
        l.resize(5);
        assert_eq!(hold(&l).len(), 5);
        l.resize(2);
        assert_eq!(l.size(), 2);
        assert_eq!(hold(&l).len(), 2);
    }

    #[test]
    fn shrinking_below_what_is_held_takes_effect_as_permits_return() {
        let l = Limit::new(4);
        let mut held = hold(&l);
        assert_eq!(held.len(), 4);
        l.resize(1);
        assert!(l.try_acquire().is_err());
        held.truncate(1); // three come back: all owed
        assert!(l.try_acquire().is_err());
        held.clear(); // the last one comes back: one free
        let p = l.try_acquire();
        assert!(p.is_ok());
        assert!(l.try_acquire().is_err());
        drop(p);
        // Growing while a debt is outstanding cancels it first.
        let l = Limit::new(4);
        let held = hold(&l);
        l.resize(1); // owes 3
        l.resize(3); // owes 1
        drop(held);
        assert_eq!(hold(&l).len(), 3);
    }
}
