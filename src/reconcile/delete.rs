//! Deleting one undeclared link (guarded prune): checked again just before the call, sent through
//! the project's gate like a create, and its outcome recorded before the report hears of it.

use super::clock::now_unix;
use super::decide::{self, Attempts, Next, Op};
use super::halt::Halt;
use super::list::count_attempt;
use super::{PassOptions, Reconciler};
use crate::ledger::{Change, LedgerError};
use crate::metrics::delete_outcome;
use crate::model::LinkKey;

/// One delete the plan asks for.
pub(super) struct DeleteJob<'a> {
    pub(super) key: &'a LinkKey,
    pub(super) atlas_id: &'a str,
    /// Whether the manifests of this pass declare the link after all (checked just before the call).
    pub(super) declared: bool,
    pub(super) halt: &'a Halt,
}

/// The result of one delete, as the pass reports it.
#[derive(Debug)]
pub(super) enum DeleteOutcome {
    /// 202: the record is now `deleting`.
    Deleted,
    /// 404: gone already; the record is dropped.
    Gone,
    /// 400 `STREAM_PRIVATE_LINK_IN_USE`: tried again after the failure delay.
    InUse(String),
    /// Any other failure: tried again after the failure delay.
    Failed(String),
    /// Not sent: declared after all, or the record changed, or the ledger is no longer ours.
    Skipped(String),
    Interrupted,
}

impl Reconciler {
    /// Deletes one undeclared link, retrying what `decide` retries within the pass.
    pub(super) async fn delete_one(
        &self,
        job: DeleteJob<'_>,
        options: &PassOptions,
    ) -> Result<DeleteOutcome, LedgerError> {
        let DeleteJob {
            key,
            atlas_id,
            declared,
            halt,
        } = job;
        let cancel = &options.cancel;
        let group = &key.group_id;
        let gate = self.gate(group);
        let mut backoff = self.policy.backoff();
        let mut attempts = Attempts::default();
        loop {
            let result = {
                let Some(permit) = gate.admit(&self.global, cancel).await else {
                    return Ok(DeleteOutcome::Interrupted);
                };
                // At the moment of the delete: still undeclared, still recorded as this connection,
                // created or adopted, and the ledger still the one this process holds.
                if !halt.may_create(&self.ledger) {
                    return Ok(DeleteOutcome::Interrupted);
                }
                if declared {
                    return Ok(DeleteOutcome::Skipped(
                        "declared again; not deleted".to_owned(),
                    ));
                }
                if let Some(why) = self.no_longer_candidate(key, atlas_id).await? {
                    return Ok(DeleteOutcome::Skipped(why));
                }
                let result = self.client.delete(group, atlas_id).await;
                permit.observe(match &result {
                    Ok(answer) => &answer.rate_limit,
                    Err(e) => &e.rate_limit,
                });
                result
            };
            let e = match result {
                Ok(_) => {
                    self.ledger
                        .apply(Change::Deleting {
                            key: key.clone(),
                            at_unix: now_unix(),
                        })
                        .await?;
                    self.count_delete(delete_outcome::DELETED);
                    tracing::info!(link = %key, atlas_id, "deleted (pruned): no longer declared");
                    return Ok(DeleteOutcome::Deleted);
                }
                Err(e) => e,
            };
            if e.status == Some(404) {
                self.ledger
                    .apply(Change::Forget { key: key.clone() })
                    .await?;
                self.count_delete(delete_outcome::GONE);
                tracing::info!(link = %key, atlas_id, "already gone from Atlas; record dropped");
                return Ok(DeleteOutcome::Gone);
            }
            if e.is_in_use() {
                self.count_delete(delete_outcome::IN_USE);
                tracing::warn!(link = %key, atlas_id, error = %e, "not deleted: a stream connection still uses it; tried again after the failure delay");
                let until = self.record_refusal(key, true, e.to_string()).await?;
                return Ok(DeleteOutcome::InUse(format!(
                    "not deleted: a stream connection still uses it (STREAM_PRIVATE_LINK_IN_USE); tried again after {}",
                    crate::report::format_unix(until)
                )));
            }
            count_attempt(&mut attempts, &e.class);
            let step = backoff.next().unwrap_or(self.policy.max_backoff);
            match decide::decide(Op::Delete, &e.class, attempts, &self.policy.limits(), step) {
                Next::PauseProject { wait } => self.pause_project(&gate, group, wait),
                Next::Retry { after } => {
                    self.count_retry(super::retry_reason(&e));
                    if !self.wait(after, cancel).await {
                        return Ok(DeleteOutcome::Interrupted);
                    }
                }
                // Only creates are verified by a listing; `decide` never asks it of a delete.
                Next::Verify { .. } | Next::GiveUp => {
                    self.count_delete(delete_outcome::FAILED);
                    tracing::error!(link = %key, atlas_id, error = %e, "delete failed");
                    let until = self.record_refusal(key, false, e.to_string()).await?;
                    return Ok(DeleteOutcome::Failed(format!(
                        "delete failed (tried again after {}): {e}",
                        crate::report::format_unix(until)
                    )));
                }
            }
        }
    }

    /// Why the ledger's current record of `key` is no longer a candidate for deleting `atlas_id`.
    async fn no_longer_candidate(
        &self,
        key: &LinkKey,
        atlas_id: &str,
    ) -> Result<Option<String>, LedgerError> {
        let records = self.ledger.snapshot().await?;
        let current = records
            .binary_search_by(|r| r.key.cmp(key))
            .ok()
            .map(|i| &records[i]);
        Ok(match current {
            Some(r) if r.connection() == Some(atlas_id) => None,
            _ => Some("the ledger no longer records it as this connection; not deleted".to_owned()),
        })
    }

    /// Records a refused or failed delete; returns when it is tried again.
    async fn record_refusal(
        &self,
        key: &LinkKey,
        in_use: bool,
        error: String,
    ) -> Result<i64, LedgerError> {
        let now = now_unix();
        // The failure delay, not doubled: a link in use is freed by a person, at any time.
        let until = now
            .saturating_add(i64::try_from(self.policy.failure_delay.as_secs()).unwrap_or(i64::MAX));
        self.ledger
            .apply(Change::DeleteRefused {
                key: key.clone(),
                in_use,
                error,
                next_attempt_unix: until,
                at_unix: now,
            })
            .await?;
        Ok(until)
    }

    fn count_delete(&self, outcome: &str) {
        self.metrics
            .deletes_total
            .with_label_values(&[outcome])
            .inc();
    }
}
