//! One project's gate to Atlas: its mirror of Atlas's token bucket, its concurrency slots, its 429
//! pause, and the permit a call holds while in flight.

use super::budget::Budget;
use super::policy::{BucketShape, Policy};
use crate::atlas::RateLimitInfo;
use crate::lock::LockExt;
use crate::model::RemoteConnection;
use governor::RateLimiter;
use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// A project's bucket. On the same clock as tokio and the OS (`Instant`): governor's default TSC
/// clock can run fast on virtual machines, and a bucket that runs ahead of Atlas's earns 429s.
type Limiter = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;

/// One project's share of Atlas: its token bucket, its concurrency cap, its 429 pause, and the
/// last listing taken to resolve uncertain outcomes (shared so concurrent doubts cost one listing).
///
/// The bucket starts when the answer to the project's first call arrives, not when that call is
/// sent. Atlas's bucket (for a project nobody else is calling) started when it received the call,
/// which is earlier, so our view of the refill lags Atlas's and never runs ahead of it: a bucket of
/// ours that matches Atlas's then never earns a 429. Starting ours first, even by the few
/// milliseconds of a token fetch, would let it run ahead, and every 429 costs a whole second of
/// `Retry-After`.
pub(super) struct ProjectGate {
    shape: BucketShape,
    limiter: std::sync::OnceLock<Limiter>,
    /// Held by the one call that starts the bucket, until its answer arrives.
    first_call: Arc<tokio::sync::Mutex<()>>,
    slots: Semaphore,
    /// What Atlas last said is left in the project's bucket (shared with other tools).
    budget: Budget,
    paused_until: Mutex<Option<tokio::time::Instant>>,
    pub(super) verify:
        tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<Vec<RemoteConnection>>)>>,
}

/// Held while one API call is in flight.
pub(super) struct CallPermit<'a> {
    gate: &'a ProjectGate,
    /// Set for the project's first call: the bucket starts when this permit is dropped.
    first_call: Option<tokio::sync::OwnedMutexGuard<()>>,
    sent: Instant,
    _project: tokio::sync::SemaphorePermit<'a>,
    _global: tokio::sync::SemaphorePermit<'a>,
}

impl CallPermit<'_> {
    /// The answer's `RateLimit-Remaining`, if it carried one, corrects our view of the shared bucket.
    pub(super) fn observe(&self, rate_limit: &RateLimitInfo) {
        if let Some(remaining) = rate_limit.remaining {
            self.gate
                .budget
                .observe(remaining, rate_limit.limit, Instant::now());
        }
    }
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        self.gate.budget.finished();
        if self.first_call.take().is_some() {
            let quota = self.gate.shape.quota(self.sent.elapsed());
            let limiter = RateLimiter::direct_with_clock(quota, MonotonicClock);
            // The first call spent a token of Atlas's bucket.
            let _ = limiter.check();
            let _ = self.gate.limiter.set(limiter);
        }
    }
}

impl ProjectGate {
    pub(super) fn new(policy: &Policy) -> ProjectGate {
        ProjectGate {
            shape: policy.bucket_shape(),
            limiter: std::sync::OnceLock::new(),
            first_call: Arc::new(tokio::sync::Mutex::new(())),
            slots: Semaphore::new(policy.per_project_concurrency),
            budget: Budget::new(
                policy.bucket_capacity,
                policy.bucket_refill,
                policy.bucket_period,
                policy.reserve,
            ),
            paused_until: Mutex::new(None),
            verify: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits for everything one API call to the project needs: the project's slot, its 429 pause, a token
    /// from its bucket, then a global slot. The order matters: a project that is waiting for tokens
    /// must not sit on global slots other projects could use.
    pub(super) async fn admit<'a>(
        &'a self,
        global: &'a Semaphore,
        cancel: &CancellationToken,
    ) -> Option<CallPermit<'a>> {
        let gate = self;
        let project = tokio::select! {
            p = gate.slots.acquire() => p.ok()?,
            _ = cancel.cancelled() => return None,
        };
        let mut first_call = None;
        loop {
            while let Some(until) = gate.paused_until() {
                if until <= tokio::time::Instant::now() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = cancel.cancelled() => return None,
                }
            }
            // The one call that starts the bucket keeps that right across a second round.
            if first_call.is_none() {
                first_call = tokio::select! {
                    first = gate.take_token() => first,
                    _ = cancel.cancelled() => return None,
                };
            }
            // Then what Atlas says is left, less the reserve for the project's other tools.
            while let Err(wait) = gate.budget.try_send(Instant::now()) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return None,
                }
            }
            let global = tokio::select! {
                g = global.acquire() => g.ok(),
                _ = cancel.cancelled() => None,
            };
            let Some(global) = global else {
                // The call that `try_send` counted will not be sent after all.
                gate.budget.finished();
                return None;
            };
            // A 429 may have paused the project while this call waited: it waits out the pause too.
            if gate
                .paused_until()
                .is_some_and(|until| until > tokio::time::Instant::now())
            {
                gate.budget.finished();
                drop(global);
                continue;
            }
            return Some(CallPermit {
                gate,
                first_call,
                sent: Instant::now(),
                _project: project,
                _global: global,
            });
        }
    }

    /// Takes a token, or, for the project's first call, the right to make it (see the type's docs).
    async fn take_token(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        if let Some(limiter) = self.limiter.get() {
            limiter.until_ready().await;
            return None;
        }
        let guard = self.first_call.clone().lock_owned().await;
        match self.limiter.get() {
            // Another call started the bucket while this one waited.
            Some(limiter) => {
                drop(guard);
                limiter.until_ready().await;
                None
            }
            None => Some(guard),
        }
    }

    /// After a 429: Atlas's bucket is empty, so ours is emptied too, and refills from now.
    pub(super) fn drain(&self) {
        if let Some(limiter) = self.limiter.get() {
            while limiter.check().is_ok() {}
        }
        self.budget.emptied(Instant::now());
    }

    pub(super) fn pause(&self, until: tokio::time::Instant) {
        let mut paused = self.paused_until.lock_or_recover();
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    fn paused_until(&self) -> Option<tokio::time::Instant> {
        *self.paused_until.lock_or_recover()
    }
}
