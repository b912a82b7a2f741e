//! In-place `dnsDomain` updates: the PATCH of each link the plan marks `update`, through its
//! project's gate, with `decide`'s policy; then the declared spec in the ledger.
//!
//! Unlike a create, an update cannot duplicate anything: a PATCH that reached Atlas without our
//! hearing the answer set the domain, and sending it again sets the same domain. So there is no
//! intent and no settle window: a lost answer is simply retried (`decide::Op::Update`). One catch:
//! the lost PATCH may have moved the connection past `IDLE` with its new domain, and then Atlas
//! refuses the repeat (400). So when a PATCH gives up after one whose answer was lost, a get of the
//! connection decides: the declared domain there means the update happened. A failure writes
//! nothing, so the record keeps the spec Atlas is known to hold and the next pass plans the update
//! again.

use super::clock::now_unix;
use super::decide::{self, Attempts, Next, Op};
use super::halt::Halt;
use super::list::count_attempt;
use super::{PassOptions, Reconciler};
use crate::ledger::{Change, LedgerError};
use crate::lock::LockExt;
use crate::metrics::update_outcome;
use crate::model::DesiredLink;
use crate::report::{FailedLink, PassReport};
use futures::StreamExt;
use std::sync::Mutex;

/// A link whose `dnsDomain` the plan updates in place.
pub(super) struct UpdateJob {
    pub(super) link: Box<DesiredLink>,
    pub(super) atlas_id: String,
}

/// How one update ended, as the pass reports it.
pub(super) enum UpdateOutcome {
    Updated,
    Failed(String),
    Interrupted,
}

impl Reconciler {
    /// A project's updates, in parallel up to the per-project cap, each outcome into `report`.
    pub(super) async fn run_updates(
        &self,
        jobs: Vec<UpdateJob>,
        options: &PassOptions,
        halt: &Halt,
        report: &Mutex<PassReport>,
    ) {
        futures::stream::iter(jobs)
            .map(|job| async move {
                let outcome = self.update_one(&job, options, halt).await;
                (job.link.key, outcome)
            })
            .buffer_unordered(self.policy.per_project_concurrency)
            .for_each(|(key, outcome)| {
                let mut report = report.lock_or_recover();
                match outcome {
                    Ok(UpdateOutcome::Updated) => report.updated.push(key),
                    Ok(UpdateOutcome::Failed(reason)) => {
                        report.failed.push(FailedLink::new(&key, reason))
                    }
                    Ok(UpdateOutcome::Interrupted) => report.not_attempted.push(FailedLink::new(
                        &key,
                        "interrupted before its dnsDomain update completed".to_owned(),
                    )),
                    // Atlas has the domain; the record still says the old spec, so the next pass
                    // plans the update again, which sets the same domain.
                    Err(e) => report.failed.push(FailedLink::new(
                        &key,
                        format!("dnsDomain updated, but the ledger write failed: {e}"),
                    )),
                }
                futures::future::ready(())
            })
            .await;
    }

    /// Sets the connection's `dnsDomain` to the declared one and records the declared spec.
    pub(super) async fn update_one(
        &self,
        job: &UpdateJob,
        options: &PassOptions,
        halt: &Halt,
    ) -> Result<UpdateOutcome, LedgerError> {
        let link = &job.link;
        let group = &link.key.group_id;
        let cancel = &options.cancel;
        // The plan makes an update only for a declared domain; this guards the invariant.
        let Some(domain) = link.spec.dns_domain.as_deref() else {
            return Ok(UpdateOutcome::Failed(
                "no dnsDomain is declared; nothing to update".to_owned(),
            ));
        };
        let gate = self.gate(group);
        let mut backoff = self.policy.backoff();
        let mut attempts = Attempts::default();
        // Set once a PATCH got no answer or a 5xx: it may have taken effect.
        let mut maybe_applied = false;
        loop {
            if cancel.is_cancelled() {
                return Ok(UpdateOutcome::Interrupted);
            }
            let result = {
                let Some(permit) = gate.admit(&self.global, cancel).await else {
                    return Ok(UpdateOutcome::Interrupted);
                };
                // Its outcome could not be recorded in a ledger that is no longer at its path.
                if !halt.may_create(&self.ledger) {
                    return Ok(UpdateOutcome::Interrupted);
                }
                let result = self
                    .client
                    .update_dns_domain(group, &job.atlas_id, domain)
                    .await;
                permit.observe(match &result {
                    Ok(answer) => &answer.rate_limit,
                    Err(e) => &e.rate_limit,
                });
                result
            };
            let e = match result {
                Ok(_) => return self.record_update(job, domain).await,
                Err(e) => e,
            };
            count_attempt(&mut attempts, &e.class);
            let step = backoff.next().unwrap_or(self.policy.max_backoff);
            match decide::decide(Op::Update, &e.class, attempts, &self.policy.limits(), step) {
                Next::PauseProject { wait } => self.pause_project(&gate, group, wait),
                Next::Retry { after } => {
                    maybe_applied |= e.status.is_none_or(|s| s >= 500);
                    self.count_retry(super::retry_reason(&e));
                    if !self.wait(after, cancel).await {
                        return Ok(UpdateOutcome::Interrupted);
                    }
                }
                // `decide` verifies creates only; an update that reached this arm gives up.
                Next::Verify { .. } | Next::GiveUp => {
                    if maybe_applied && self.shows_domain(job, domain, options).await {
                        tracing::info!(link = %link.key, atlas_id = %job.atlas_id, error = %e,
                            "a dnsDomain update whose answer was lost had taken effect");
                        return self.record_update(job, domain).await;
                    }
                    self.count_update(update_outcome::FAILED);
                    tracing::error!(link = %link.key, atlas_id = %job.atlas_id, error = %e,
                        "dnsDomain update failed");
                    return Ok(UpdateOutcome::Failed(format!(
                        "dnsDomain update failed (the next pass tries again): {e}"
                    )));
                }
            }
        }
    }

    /// Atlas holds the declared domain: the ledger records the declared spec.
    async fn record_update(
        &self,
        job: &UpdateJob,
        domain: &str,
    ) -> Result<UpdateOutcome, LedgerError> {
        let link = &job.link;
        self.ledger
            .apply(Change::SpecUpdated {
                key: link.key.clone(),
                spec: link.spec.clone(),
                fingerprint: link.fingerprint,
                at_unix: now_unix(),
            })
            .await?;
        self.count_update(update_outcome::UPDATED);
        tracing::info!(link = %link.key, atlas_id = %job.atlas_id, dns_domain = domain,
            "updated the connection's dnsDomain");
        Ok(UpdateOutcome::Updated)
    }

    /// Whether one get of the connection (through the project's gate) shows `domain`; false when the
    /// get fails, which leaves the update to the next pass.
    async fn shows_domain(&self, job: &UpdateJob, domain: &str, options: &PassOptions) -> bool {
        let group = &job.link.key.group_id;
        let gate = self.gate(group);
        let Some(permit) = gate.admit(&self.global, &options.cancel).await else {
            return false;
        };
        let result = self.client.get(group, &job.atlas_id).await;
        permit.observe(match &result {
            Ok(answer) => &answer.rate_limit,
            Err(e) => &e.rate_limit,
        });
        match result {
            // `LinkSpec` keeps domains lower-cased; Atlas echoes them as sent.
            Ok(answer) => answer
                .value
                .dns_domain
                .is_some_and(|d| d.eq_ignore_ascii_case(domain)),
            Err(e) => {
                tracing::warn!(link = %job.link.key, error = %e,
                    "could not get the connection to check whether a lost dnsDomain update took effect");
                false
            }
        }
    }

    pub(super) fn count_update(&self, outcome: &str) {
        self.metrics
            .updates_total
            .with_label_values(&[outcome])
            .inc();
    }
}
