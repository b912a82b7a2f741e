//! Creating one link, exactly once: the intent first, the create, then what `decide` says of its
//! outcome, down to a listing that decides a create whose answer was lost.

use super::clock::{instant_at_unix, now_unix, now_unix_ceil};
use super::decide::{self, Attempts, IfAbsent, Next, Op};
use super::halt::Halt;
use super::list::{Abandon, count_attempt};
use super::{PassOptions, Reconciler};
use crate::atlas::{ApiError, ErrorClass};
use crate::ledger::{Change, LedgerError};
use crate::lock::LockExt;
use crate::metrics;
use crate::model::{DesiredLink, Record, RemoteConnection};
use crate::plan::CreateReason;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One link to create, with what its create needs to know of the pass.
pub(super) struct CreateJob<'a> {
    pub(super) link: &'a DesiredLink,
    pub(super) reason: CreateReason,
    /// Failures the ledger already counts for this link: the wait after a new failure grows with them.
    pub(super) prior_attempts: u32,
    /// An earlier create of this link may still be committed by Atlas until this instant (unix
    /// seconds): nothing is sent before a listing that starts after it has decided.
    pub(super) in_flight_until: Option<i64>,
    pub(super) claimed: &'a Mutex<HashSet<String>>,
    /// Every record of the pass, in key order: which one holds a connection a 409 is about.
    pub(super) records: &'a [Record],
    pub(super) conflicts: &'a AtomicU64,
    /// Checked before each intent is written: a create is never sent once the ledger this process
    /// holds was replaced.
    pub(super) halt: &'a Halt,
}

/// A create whose outcome is not known yet, and how a listing will decide it.
#[derive(Debug, Clone, Copy)]
struct Doubt {
    /// The listing that decides must start no earlier than this.
    since: tokio::time::Instant,
    /// `since` on the wall clock, for the report and the ledger's follow-up.
    until_unix: i64,
    if_absent: IfAbsent,
    /// A 409 started it: a match found is adopted (it was there before us), not "created".
    after_conflict: bool,
}

/// The result of one link's create, as the pass reports it.
pub(super) enum CreateOutcome {
    Created,
    /// The create's outcome was uncertain (or a 409); a listing found the connection, so it is recorded.
    Verified {
        after_conflict: bool,
    },
    Failed(String),
    /// A connection that shares the link's identity but differs elsewhere exists: neither adopted
    /// nor created beside.
    NearMatch(String),
    /// Possibly committed by Atlas, and no listing could tell: the next pass decides.
    Undecided(String),
    /// Possibly committed by Atlas, and the pass does not wait (the daemon): decided after this.
    InFlight {
        until_unix: i64,
    },
    Interrupted,
}

impl Reconciler {
    /// Creates one link, exactly once. See the module documentation for the protocol.
    pub(super) async fn create_one(
        &self,
        job: CreateJob<'_>,
        options: &PassOptions,
    ) -> Result<CreateOutcome, LedgerError> {
        let CreateJob {
            link,
            reason,
            prior_attempts,
            in_flight_until,
            claimed,
            records,
            conflicts,
            halt,
        } = job;
        let cancel = &options.cancel;
        let group = &link.key.group_id;
        let gate = self.gate(group);
        if cancel.is_cancelled() {
            return Ok(CreateOutcome::Interrupted);
        }
        tracing::debug!(link = %link.key, ?reason, "creating");

        let mut backoff = self.policy.backoff();
        let mut attempts = Attempts::default();
        // Set while an earlier attempt may have created the connection: nothing is sent again until
        // a listing that starts after its settle window shows it absent.
        let mut doubt = in_flight_until.map(|until_unix| Doubt {
            since: instant_at_unix(until_unix),
            until_unix,
            if_absent: IfAbsent::CreateAgain,
            after_conflict: false,
        });
        loop {
            if let Some(d) = doubt.take() {
                if !options.wait_for_settle && d.since > tokio::time::Instant::now() {
                    return Ok(CreateOutcome::InFlight {
                        until_unix: d.until_unix,
                    });
                }
                let listing = match self.verify_listing(group, d.since, cancel).await {
                    Ok(listing) => listing,
                    Err(Abandon::Cancelled) => return Ok(CreateOutcome::Interrupted),
                    Err(Abandon::Failed(e)) => {
                        // Still in doubt, which is not a failure of the link: nothing is written, so
                        // the record stays what it was: the intent this create wrote when it was sent
                        // (or, for a create resumed from an earlier pass, that pass's record, intent or
                        // failed, with its `sent_unix`). The link is reported unverified, which
                        // schedules no follow-up pass: the next pass that comes (resync, file change,
                        // SIGHUP, the next `--once`) lists the project before any create and adopts
                        // a match; an intent waits out no failure delay, a failed record still does.
                        return Ok(CreateOutcome::Undecided(format!(
                            "a create got no answer, and the project could not be listed to check whether Atlas committed it (the next pass lists first): {e}"
                        )));
                    }
                };
                if let Some(remote) = self.claim_match(link, &listing, claimed) {
                    return self.record_verified(link, &remote, d.after_conflict).await;
                }
                if let Some(why) = near_match_in(link, &listing, claimed) {
                    tracing::error!(link = %link.key, "{why}");
                    return Ok(CreateOutcome::NearMatch(why));
                }
                // The match exists, and another record of ours holds it: the link is that one
                // under another name (a rename the plan could not pair), not missing.
                if let Some(why) = held_match(link, &listing, records) {
                    tracing::error!(link = %link.key, "{why}");
                    return Ok(CreateOutcome::NearMatch(why));
                }
                match d.if_absent {
                    IfAbsent::CreateAgain => {}
                    IfAbsent::GiveUp(why) => {
                        if !d.after_conflict {
                            self.count_create(metrics::outcome::FAILURE);
                        }
                        return self
                            .record_failure(link, prior_attempts, why.to_owned())
                            .await;
                    }
                }
            }

            let (result, sent, sent_unix) = {
                let Some(permit) = gate.admit(&self.global, cancel).await else {
                    return Ok(CreateOutcome::Interrupted);
                };
                // An intent in a ledger that is no longer at its path is durable nowhere, and
                // another process may be creating from a fresh one.
                if !halt.may_create(&self.ledger) {
                    return Ok(CreateOutcome::Interrupted);
                }
                // Durable before the request leaves, and stamped as late as possible: the settle
                // window of an unanswered create counts from here.
                let intent_began = std::time::Instant::now();
                let sent_unix = now_unix_ceil();
                self.ledger
                    .apply(Change::Intent {
                        key: link.key.clone(),
                        spec: link.spec.clone(),
                        fingerprint: link.fingerprint,
                        at_unix: sent_unix,
                    })
                    .await?;
                // On a shared ledger the request leaves only while the lease holds and soon after
                // its intent: a successor's settle window counts from `sent_unix`.
                if !self.ledger.may_send(intent_began) {
                    if halt.may_create(&self.ledger) {
                        tracing::warn!(link = %link.key,
                            "the intent took longer than the send margin to commit: the create is not sent, and is settled like an unanswered one");
                    }
                    return Ok(CreateOutcome::Interrupted);
                }
                let sent = tokio::time::Instant::now();
                let result = self.client.create(group, &link.spec).await;
                permit.observe(match &result {
                    Ok(answer) => &answer.rate_limit,
                    Err(e) => &e.rate_limit,
                });
                (result, sent, sent_unix)
            };
            let e = match result {
                Ok(answer) => {
                    let id = answer.value.id;
                    self.ledger
                        .apply(Change::Created {
                            key: link.key.clone(),
                            atlas_id: id.clone(),
                            at_unix: now_unix(),
                        })
                        .await?;
                    claimed.lock_or_recover().insert(id.clone());
                    self.count_create(metrics::outcome::SUCCESS);
                    tracing::info!(link = %link.key, atlas_id = %id, "created");
                    return Ok(CreateOutcome::Created);
                }
                Err(e) => e,
            };
            if e.class == ErrorClass::Conflict {
                conflicts.fetch_add(1, Ordering::Relaxed);
                self.count_create(metrics::outcome::CONFLICT);
            }
            count_attempt(&mut attempts, &e.class);
            let step = backoff.next().unwrap_or(self.policy.max_backoff);
            match decide::decide(Op::Create, &e.class, attempts, &self.policy.limits(), step) {
                Next::PauseProject { wait } => self.pause_project(&gate, group, wait),
                Next::Retry { after } => {
                    self.count_retry(super::retry_reason(&e));
                    if !self.wait(after, cancel).await {
                        return Ok(CreateOutcome::Interrupted);
                    }
                }
                Next::Verify {
                    after_sent,
                    if_absent,
                } => {
                    let after_conflict = e.class == ErrorClass::Conflict;
                    if after_conflict {
                        tracing::warn!(link = %link.key, error = %e, "409 Conflict; listing the project to resolve it");
                    } else {
                        self.count_retry(metrics::retry_reason::AMBIGUOUS);
                        tracing::warn!(link = %link.key, error = %e, settle_secs = after_sent.as_secs(),
                            "the create may have reached Atlas; deciding by a listing after its settle window");
                    }
                    doubt = Some(Doubt {
                        since: sent.checked_add(after_sent).unwrap_or(sent),
                        until_unix: sent_unix.saturating_add(after_sent.as_secs() as i64),
                        if_absent,
                        after_conflict,
                    });
                }
                Next::GiveUp => return self.give_up(link, prior_attempts, &e).await,
            }
        }
    }

    fn count_create(&self, outcome: &str) {
        self.metrics
            .creates_total
            .with_label_values(&[outcome])
            .inc();
    }

    /// The first unclaimed listed connection that matches `link`, now claimed by it.
    fn claim_match(
        &self,
        link: &DesiredLink,
        listing: &[RemoteConnection],
        claimed: &Mutex<HashSet<String>>,
    ) -> Option<RemoteConnection> {
        let mut claimed = claimed.lock_or_recover();
        let remote = listing
            .iter()
            .find(|c| !claimed.contains(&c.id) && link.spec.matches(c))?;
        claimed.insert(remote.id.clone());
        Some(remote.clone())
    }

    /// Records an existing connection as `link`'s, without a create.
    pub(super) async fn record_adoption(
        &self,
        link: &DesiredLink,
        remote: &RemoteConnection,
    ) -> Result<(), LedgerError> {
        self.ledger
            .apply(Change::Adopted {
                key: link.key.clone(),
                spec: link.spec.clone(),
                fingerprint: link.fingerprint,
                atlas_id: remote.id.clone(),
                remote_state: remote.state.clone(),
                remote_error: remote.error_message.clone(),
                outputs: remote.outputs.clone(),
                at_unix: now_unix(),
            })
            .await?;
        self.metrics.adoptions_total.inc();
        Ok(())
    }

    /// A listing showed the connection an uncertain create (or a 409) was about: record it.
    async fn record_verified(
        &self,
        link: &DesiredLink,
        remote: &RemoteConnection,
        after_conflict: bool,
    ) -> Result<CreateOutcome, LedgerError> {
        if after_conflict {
            // We did not make it (Atlas refused our create): it was there already.
            self.record_adoption(link, remote).await?;
            tracing::info!(link = %link.key, atlas_id = %remote.id, "409 resolved: adopted the existing connection");
        } else {
            self.ledger
                .apply(Change::Created {
                    key: link.key.clone(),
                    atlas_id: remote.id.clone(),
                    at_unix: now_unix(),
                })
                .await?;
            self.count_create(metrics::outcome::SUCCESS);
            tracing::info!(link = %link.key, atlas_id = %remote.id, "created (confirmed by listing after an uncertain answer)");
        }
        Ok(CreateOutcome::Verified { after_conflict })
    }

    async fn give_up(
        &self,
        link: &DesiredLink,
        prior_attempts: u32,
        e: &ApiError,
    ) -> Result<CreateOutcome, LedgerError> {
        self.count_create(metrics::outcome::FAILURE);
        tracing::error!(link = %link.key, error = %e, "create failed");
        self.record_failure(link, prior_attempts, e.to_string())
            .await
    }

    async fn record_failure(
        &self,
        link: &DesiredLink,
        prior_attempts: u32,
        reason: String,
    ) -> Result<CreateOutcome, LedgerError> {
        let attempts = prior_attempts.saturating_add(1);
        let now = now_unix();
        let wait = self.policy.failure_wait(attempts);
        self.ledger
            .apply(Change::Failed {
                key: link.key.clone(),
                spec: link.spec.clone(),
                fingerprint: link.fingerprint,
                error: reason.clone(),
                next_attempt_unix: now.saturating_add(wait.as_secs() as i64),
                at_unix: now,
            })
            .await?;
        Ok(CreateOutcome::Failed(reason))
    }
}

/// Why `link` may not be created: the first unclaimed connection in `listing` that shares its
/// identity but differs in other fields. Never adopted, never created beside.
fn near_match_in(
    link: &DesiredLink,
    listing: &[RemoteConnection],
    claimed: &Mutex<HashSet<String>>,
) -> Option<String> {
    let claimed = claimed.lock_or_recover();
    listing
        .iter()
        .filter(|c| !claimed.contains(&c.id))
        .find_map(|c| {
            let fields = link.spec.near_match(c)?;
            Some(near_match_reason(&c.id, &fields))
        })
}

/// Why `link` is not created when a listed connection that matches it exactly is held by another
/// record of ours; `None` when none is.
fn held_match(
    link: &DesiredLink,
    listing: &[RemoteConnection],
    records: &[Record],
) -> Option<String> {
    let remote = listing.iter().find(|c| link.spec.matches(c))?;
    let holder = records
        .iter()
        .find(|r| r.key != link.key && r.atlas_id.as_deref() == Some(remote.id.as_str()))?;
    Some(format!(
        "conflict: connection {} matches this link exactly but is held by {} ({}); atlas-linkd \
         neither creates another nor takes it over: if this link is {} renamed, remove the old \
         name from the manifests and its record moves on the next pass",
        remote.id,
        holder.key,
        holder.phase.as_str(),
        holder.key.name
    ))
}

/// The report's words for a near-match conflict.
pub(super) fn near_match_reason(remote_id: &str, fields: &[&str]) -> String {
    format!(
        "conflict: connection {remote_id} points at the same far end but differs in {}; \
         atlas-linkd neither adopts it nor creates another beside it: make the manifest say what \
         Atlas has, or delete the connection in Atlas",
        fields.join(", ")
    )
}
