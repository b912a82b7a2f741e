//! The reconcile executor: one pass from plan to Atlas, parallel, rate-limited, retrying, exactly once.
//!
//! A pass is level-triggered: it never asks why it was woken. It reads the ledger, plans, lists every
//! project that has something to create (a listing is the only proof that a connection does not exist
//! yet), and, project by project as each listing is complete, plans again with it and carries the
//! plan out:
//!
//! - every API call, lists included, takes a token from its project's `governor` limiter shaped like
//!   Atlas's bucket, and holds a slot of the global and the per-project concurrency caps while in flight;
//! - an intent is durable in the ledger before a create is sent, and each outcome reaches the ledger
//!   before it reaches the report or the metrics;
//! - a 429 pauses the whole project until `Retry-After` (capped at `retry.max_backoff_secs`), not just
//!   the call that got it;
//! - a call that cannot have changed Atlas (a connection never made; any failed page of a listing) is
//!   sent again after a jittered backoff, up to `retry.max_attempts`; 401, 403 and the other 4xx give
//!   up for the pass;
//! - a create that may have reached Atlas without our hearing the answer (any 5xx, a timeout, a reset
//!   once sent) is never sent again blind: Atlas may still commit it until `sent + settle_secs`, and only
//!   a complete listing that starts after that instant decides it (adopt the match, else send again, or
//!   give up after `retry.max_attempts`); `--once` waits for that window, the daemon schedules a
//!   follow-up pass at its end;
//! - a 409 on a create means Atlas refused it, so it made nothing, but something conflicts: a listing
//!   taken at once adopts the match, else the link fails for this pass.
//!
//! Which of these follows a failed call is decided by one pure function, `decide::decide`, from the
//! error's class and the limits of `Policy`; the loops here only carry its `Next` out. How fast and
//! hard a pass pushes (caps, bucket, backoff, failure delays) is `Policy`.
//!
//! Files: `policy` (the numbers), `gate` (a project's bucket, slots and 429 pause), `clock`,
//! `observer` (API calls into metrics), `list` (listing a project), `create` (creating one link),
//! `delete` (deleting one undeclared link: guarded prune, off unless `prune.enabled`),
//! `pass` (a whole pass and its "never a duplicate" guard), `halt` (a pass's stop when the ledger it
//! holds was replaced), `refresh` (list and record states without planning: `outputs --refresh`,
//! `--once --wait`), `update` (in-place `dnsDomain` updates, PATCH); `decide` and `budget` as above.

mod budget;
mod clock;
mod create;
pub(crate) mod decide;
mod delete;
mod gate;
mod halt;
mod list;
mod observer;
mod pass;
mod policy;
mod refresh;
mod update;

pub(crate) use clock::instant_at_unix;
pub use clock::now_unix;
pub(crate) use observer::{CallCounters, MetricsObserver};
pub use pass::PassError;
pub use policy::Policy;
pub(crate) use policy::prune_settings;
pub use refresh::Refreshed;
pub(crate) use refresh::{Unlisted, refresh_projects};

use crate::atlas::{ApiError, AtlasClient};
use crate::ledger::LedgerHandle;
use crate::lock::LockExt;
use crate::metrics::{self, Metrics};
use crate::model::GroupId;
use crate::progress::Progress;
use gate::ProjectGate;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What a caller asks of one pass.
#[derive(Clone, Default)]
pub struct PassOptions {
    /// List every managed project, not only those with something to create: the daemon's resync, which
    /// refreshes each connection's Atlas state and notices connections that disappeared.
    pub list_all: bool,
    /// Wait within the pass for creates in flight at Atlas to settle, then decide them by a listing
    /// (`--once`). Without it (the daemon), such links are reported in flight and the report says when
    /// a follow-up pass can decide them.
    pub wait_for_settle: bool,
    /// Stop starting calls; in-flight calls finish and are recorded.
    pub cancel: CancellationToken,
    pub progress: Option<Arc<dyn Progress>>,
}

/// The executor. Long-lived in the daemon: its per-project limiters outlive a pass, as Atlas's buckets do.
pub struct Reconciler {
    client: AtlasClient,
    ledger: LedgerHandle,
    metrics: Metrics,
    policy: Policy,
    global: Arc<Semaphore>,
    projects: Mutex<HashMap<GroupId, Arc<ProjectGate>>>,
    counters: Arc<CallCounters>,
}

impl Reconciler {
    pub(crate) fn new(
        client: AtlasClient,
        ledger: LedgerHandle,
        metrics: Metrics,
        policy: Policy,
        counters: Arc<CallCounters>,
    ) -> Reconciler {
        Reconciler {
            client,
            ledger,
            metrics,
            global: Arc::new(Semaphore::new(policy.concurrency)),
            policy,
            projects: Mutex::new(HashMap::new()),
            counters,
        }
    }

    /// The ledger this reconciler writes: how a test compares the rows it keeps in memory with SQLite.
    pub fn ledger(&self) -> &LedgerHandle {
        &self.ledger
    }

    /// Revokes the OAuth token (if any) and closes the ledger, flushing what is queued.
    pub async fn shutdown(self) {
        self.client.shutdown().await;
        if let Err(e) = self.ledger.close().await {
            tracing::error!(error = %e, "closing the ledger failed");
        }
    }

    /// Applies a reloaded config's limits between passes (the daemon's SIGHUP). A project's bucket and
    /// slots are rebuilt only when their shape changed, since they mirror Atlas's live bucket; a rebuilt
    /// bucket starts full, and a 429 from Atlas then paces us if it was not.
    pub fn set_policy(&mut self, policy: Policy) {
        let projects_changed = policy.per_project_concurrency
            != self.policy.per_project_concurrency
            || policy.bucket_capacity != self.policy.bucket_capacity
            || policy.bucket_refill != self.policy.bucket_refill
            || policy.bucket_period != self.policy.bucket_period;
        if policy.concurrency != self.policy.concurrency {
            self.global = Arc::new(Semaphore::new(policy.concurrency));
        }
        if projects_changed {
            self.projects
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
        self.policy = policy;
    }

    fn gate(&self, group: &GroupId) -> Arc<ProjectGate> {
        self.projects
            .lock_or_recover()
            .entry(group.clone())
            .or_insert_with(|| Arc::new(ProjectGate::new(&self.policy)))
            .clone()
    }

    /// Sleeps unless cancelled; false when cancelled.
    async fn wait(&self, delay: Duration, cancel: &CancellationToken) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = cancel.cancelled() => false,
        }
    }

    fn count_retry(&self, reason: &'static str) {
        self.metrics
            .api_retries_total
            .with_label_values(&[reason])
            .inc();
    }

    /// After a 429: Atlas's bucket is empty; no call to the project until `wait` has passed.
    fn pause_project(&self, gate: &ProjectGate, group: &GroupId, wait: Duration) {
        self.count_retry(metrics::retry_reason::RATE_LIMITED);
        gate.drain();
        let now = tokio::time::Instant::now();
        // `decide` caps `wait` at `max_backoff`; the fallback only guards the arithmetic.
        let until = now.checked_add(wait).unwrap_or(now);
        // Rounded up, so the time named is never before the pause ends.
        let wait_secs = i64::try_from(
            wait.as_secs()
                .saturating_add(u64::from(wait.subsec_nanos() > 0)),
        )
        .unwrap_or(i64::MAX);
        let until_unix = now_unix().saturating_add(wait_secs);
        gate.pause(until);
        // Once per pause (not per concurrent 429 that it covers), at warn: a pause stops every call
        // to the project, so it must not pass silently.
        if self.metrics.note_pause(group.as_str(), until, until_unix) {
            tracing::warn!(group_id = %group, wait_ms = wait.as_millis() as u64,
                until = %crate::report::format_unix(until_unix),
                "Atlas's rate limit for the project is exhausted (429); pausing its calls until then");
        }
    }
}

/// The `atlas_linkd_api_retries_total` reason of a call sent again after `Next::Retry`.
fn retry_reason(e: &ApiError) -> &'static str {
    match e.status {
        Some(s) if s >= 500 => metrics::retry_reason::SERVER_ERROR,
        Some(_) => metrics::retry_reason::OTHER,
        None => metrics::retry_reason::CONNECTION,
    }
}
