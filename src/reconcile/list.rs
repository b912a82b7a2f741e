//! Listing a project completely, page by page, under its gate and the error policy; and sharing one
//! listing among the uncertain creates of a project that wait for it.

use super::Reconciler;
use super::decide::{self, Attempts, Next, Op};
use crate::atlas::{ApiError, ErrorClass};
use crate::model::{GroupId, RemoteConnection};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Why a call was abandoned for this pass.
pub(super) enum Abandon {
    Cancelled,
    Failed(ApiError),
}

impl Reconciler {
    /// Lists one project completely, each page under the project's gate and the error policy.
    /// Any page that cannot be had fails the whole listing: a partial listing proves nothing.
    pub(super) async fn list_project(
        &self,
        group: &GroupId,
        cancel: &CancellationToken,
    ) -> Result<Vec<RemoteConnection>, Abandon> {
        let gate = self.gate(group);
        let mut pager = self.client.pager(group);
        let mut backoff = self.policy.backoff();
        let mut attempts = Attempts::default();
        loop {
            // Before asking for a slot: the last page ended the listing, and a slot taken only to
            // learn that would queue this finished listing (and its memory) behind every other
            // project's first call.
            if pager.is_complete() {
                return Ok(pager.into_items());
            }
            let result = {
                let Some(permit) = gate.admit(&self.global, cancel).await else {
                    return Err(Abandon::Cancelled);
                };
                let result = pager.advance().await;
                permit.observe(&match &result {
                    Ok(_) => pager.rate_limit(),
                    Err(e) => e.rate_limit,
                });
                result
            };
            let e = match result {
                Ok(Some(_)) => {
                    attempts = Attempts::default();
                    backoff = self.policy.backoff();
                    continue;
                }
                Ok(None) => return Ok(pager.into_items()),
                Err(e) => e,
            };
            count_attempt(&mut attempts, &e.class);
            let step = backoff.next().unwrap_or(self.policy.max_backoff);
            match decide::decide(Op::List, &e.class, attempts, &self.policy.limits(), step) {
                Next::PauseProject { wait } => self.pause_project(&gate, group, wait),
                Next::Retry { after } => {
                    self.count_retry(super::retry_reason(&e));
                    tracing::debug!(project = %group, error = %e, ?after, "listing failed; retrying");
                    if !self.wait(after, cancel).await {
                        return Err(Abandon::Cancelled);
                    }
                }
                Next::GiveUp | Next::Verify { .. } => return Err(Abandon::Failed(e)),
            }
        }
    }

    /// A complete listing of `group` that started no earlier than `since`: one another task already
    /// took, else a new one, after waiting for `since`. Concurrent doubts in one project therefore
    /// cost one listing, not one each.
    pub(super) async fn verify_listing(
        &self,
        group: &GroupId,
        since: tokio::time::Instant,
        cancel: &CancellationToken,
    ) -> Result<Arc<Vec<RemoteConnection>>, Abandon> {
        let gate = self.gate(group);
        let mut cached = gate.verify.lock().await;
        if let Some((taken, listing)) = cached.as_ref()
            && *taken >= since
        {
            return Ok(listing.clone());
        }
        let wait = since.saturating_duration_since(tokio::time::Instant::now());
        if !wait.is_zero() {
            tracing::warn!(project = %group, wait_secs = wait.as_secs_f64().ceil() as u64,
                "waiting for the settle window of creates that got no answer: Atlas may still commit them, so only a listing after it can tell");
            if !self.wait(wait, cancel).await {
                return Err(Abandon::Cancelled);
            }
        }
        let started = tokio::time::Instant::now();
        let listing = Arc::new(self.list_project(group, cancel).await?);
        *cached = Some((started, listing.clone()));
        Ok(listing)
    }
}

/// Counts a failed attempt where `decide` expects it.
pub(super) fn count_attempt(attempts: &mut Attempts, class: &ErrorClass) {
    match class {
        ErrorClass::RateLimited { .. } => {
            attempts.rate_limited = attempts.rate_limited.saturating_add(1)
        }
        _ => attempts.failures = attempts.failures.saturating_add(1),
    }
}
