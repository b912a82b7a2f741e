//! One pass: read the ledger and plan once to learn which projects need a listing; then, project by
//! project and each as soon as its own listing is complete, plan again, adopt and create, under the
//! guard that no create is sent without a complete listing of its project from this pass. One
//! project's trouble (a long 429 pause, a slow listing) holds no other project back.

use super::PassOptions;
use super::Reconciler;
use super::clock::now_unix;
use super::create::{CreateJob, CreateOutcome, near_match_reason};
use super::delete::{DeleteJob, DeleteOutcome};
use super::halt::Halt;
use super::list::Abandon;
use super::refresh::remote_state_change;
use super::update::UpdateJob;
use crate::ledger::{Change, LedgerError, NotHeld};
use crate::lock::LockExt;
use crate::metrics;
use crate::model::{
    DesiredLink, DesiredProject, DesiredState, FxMap, FxSet, GroupId, LinkKey, Record,
    RemoteConnection,
};
use crate::phases;
use crate::plan::{
    self, Action, ChangedWhy, CreateReason, Hold, ListedState, Listings, PlanSettings,
    RemoteListing, unheld_in,
};
use crate::progress::Progress;
use crate::report::{
    ChangedLink, FailedLink, PassReport, RenamedLink, hold_reason, rename_unclear_reason,
};
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("could not read the ledger")]
    Ledger(#[from] LedgerError),
    /// The ledger is no longer this process's to create from: its SQLite files were deleted or
    /// replaced (it must exit 1, so that a restart takes the lock again), or it lost the lease of
    /// a shared ledger (it stands by).
    #[error(transparent)]
    NotHeld(#[from] NotHeld),
}

/// How many remote-state changes wait for the ledger at once: two of its group commits' worth
/// (it takes up to 4,096 queued changes per transaction), so it never waits for the pass.
const REMOTE_STATE_WRITES: usize = 8192;

/// A create the plan asks for, before the pass hands it to a task.
struct Job {
    link: Box<DesiredLink>,
    reason: CreateReason,
    in_flight_until: Option<i64>,
    prior_attempts: u32,
}

/// What every project of a pass shares.
struct Shared<'p> {
    options: &'p PassOptions,
    now: i64,
    settings: PlanSettings,
    report: Mutex<PassReport>,
    /// Every record, in key order.
    records: &'p [Record],
    /// Every id a record holds, when some project is listed: what a listing is reduced by and what
    /// no plan adopts.
    held: &'p FxSet<&'p str>,
    /// Ids that a record already holds, or that this pass adopts or creates: never adopted twice.
    /// Only creates read them: the records' ids go in (`seed`) when a first project has creates.
    claimed: Mutex<HashSet<String>>,
    seed: Once,
    conflicts: AtomicU64,
    progress: PassProgress,
    halt: Halt,
    /// Whether the manifests declare any link at all: without one, nothing is pruned.
    declared_any: bool,
    /// Deletes this pass may still send, all projects together (`prune.max_per_pass`).
    deletes_left: AtomicU32,
}

impl Shared<'_> {
    /// Takes one of the pass's deletes, if any is left.
    fn take_delete(&self) -> bool {
        self.deletes_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    fn claimed(&self) -> &Mutex<HashSet<String>> {
        self.seed.call_once(|| {
            self.claimed
                .lock_or_recover()
                .extend(self.records.iter().filter_map(|r| r.atlas_id.clone()));
        });
        &self.claimed
    }
}

impl Reconciler {
    /// One pass. Errors when the ledger cannot be read or written, and when the ledger files this
    /// process holds were replaced (then no further create is sent); everything else is in the report.
    pub async fn run_pass(
        &self,
        desired: &DesiredState,
        options: &PassOptions,
    ) -> Result<PassReport, PassError> {
        let started = Instant::now();
        self.ledger.check_held()?;
        // One clock for the whole pass, read before any listing starts: every plan of the pass sees
        // the same links as due, and a window that ends by `now` ended before the listings began.
        let now = now_unix();
        let requests_before = self.counters.requests.load(Ordering::Relaxed);
        let rate_limited_before = self.counters.rate_limited.load(Ordering::Relaxed);
        let halt = Halt::new(&options.cancel);
        // The caller's options with the pass's own stop, which a replaced ledger also triggers.
        let pass_options = PassOptions {
            cancel: halt.token(),
            ..options.clone()
        };

        // The writer's copy in memory (see `LedgerHandle::snapshot`), let go before the gauges take
        // the next one.
        let snapshot = self.ledger.snapshot().await?;
        phases::mark("ledger read");
        // In key order (as the ledger keeps them), so that a project's records are together.
        let records: Cow<'_, [Record]> = if snapshot.is_sorted_by(|a, b| a.key <= b.key) {
            Cow::Borrowed(snapshot.as_slice())
        } else {
            let mut sorted = snapshot.to_vec();
            sorted.sort_by(|a, b| a.key.cmp(&b.key));
            Cow::Owned(sorted)
        };
        let settings = self.policy.plan_settings();
        let mut to_list: BTreeSet<GroupId> = BTreeSet::new();
        if options.list_all {
            to_list.extend(desired.projects.keys().cloned());
            to_list.extend(
                records
                    .chunk_by(|a, b| a.key.group_id == b.key.group_id)
                    .map(|own| own[0].key.group_id.clone()),
            );
        } else {
            // Of the first plan, only which projects it needs listed (`Plan::projects_to_list`):
            // its actions, one for every link, are not kept. With `list_all` every project is
            // listed anyway, and the plan would only cost time.
            plan::plan_each(desired, &records, &Listings::new(), now, &settings, |a| {
                if a.needs_listing() {
                    to_list.insert(a.key().group_id.clone());
                }
            });
            phases::mark("first plan");
        }

        // Each listing is reduced as it arrives (`RemoteListing::reduce`): of the connections that
        // records hold, only what the plan and the ledger read is kept.
        let held: FxSet<&str> = if to_list.is_empty() {
            FxSet::default()
        } else {
            let mut held = FxSet::with_capacity_and_hasher(records.len(), Default::default());
            held.extend(records.iter().filter_map(|r| r.atlas_id.as_deref()));
            held
        };
        // Every project declared or recorded, with its links and its records.
        let mut projects: BTreeMap<&GroupId, (Option<&DesiredProject>, &[Record])> = desired
            .projects
            .iter()
            .map(|(g, p)| (g, (Some(p), &[][..])))
            .collect();
        for own in records.chunk_by(|a, b| a.key.group_id == b.key.group_id) {
            projects.entry(&own[0].key.group_id).or_default().1 = own;
        }
        let shared = Shared {
            options: &pass_options,
            now,
            settings,
            report: Mutex::new(PassReport::new(now, desired.link_count())),
            records: &records,
            held: &held,
            claimed: Mutex::new(HashSet::new()),
            seed: Once::new(),
            conflicts: AtomicU64::new(0),
            progress: PassProgress::new(
                options.progress.clone(),
                desired.link_count() as u64,
                projects.len(),
            ),
            halt,
            declared_any: desired.link_count() > 0,
            deletes_left: AtomicU32::new(settings.prune.max_per_pass),
        };
        let mut running: FuturesUnordered<_> = projects
            .iter()
            .map(|(group, (project, own))| {
                let list = to_list.contains(*group);
                self.run_project(&shared, group, *project, own, list)
            })
            .collect();
        // A ledger that cannot be written stops the pass's calls, but the calls in flight finish
        // and are recorded: no project is dropped half-way.
        let mut failed: Option<PassError> = None;
        while let Some(result) = running.next().await {
            if let Err(e) = result
                && failed.is_none()
            {
                shared.halt.cancel();
                failed = Some(e);
            }
        }
        drop(running);
        phases::mark("projects");
        shared.progress.finish();
        if let Some(e) = shared.halt.replaced() {
            return Err(e.into());
        }
        if let Some(e) = failed {
            return Err(e);
        }

        let Shared {
            report, conflicts, ..
        } = shared;
        let mut report = report
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        report.conflicts = conflicts.load(Ordering::Relaxed);
        report.interrupted = options.cancel.is_cancelled();
        report.api_calls = self.counters.requests.load(Ordering::Relaxed) - requests_before;
        report.rate_limited =
            self.counters.rate_limited.load(Ordering::Relaxed) - rate_limited_before;
        report.duration = started.elapsed();
        report.sort();
        drop(projects);
        drop(held);
        drop(records);
        drop(snapshot);
        phases::mark("pass done");
        self.update_gauges(desired, &report).await;
        phases::mark("gauges");
        Ok(report)
    }

    /// One project's part of a pass: its listing (if it needs one), its plan from that listing,
    /// then its adoptions and creates. Started for every project at once, so a project's creates
    /// start as soon as its own listing is complete.
    async fn run_project(
        &self,
        shared: &Shared<'_>,
        group: &GroupId,
        project: Option<&DesiredProject>,
        records: &[Record],
        list: bool,
    ) -> Result<(), PassError> {
        let options = shared.options;
        let (listing, list_failure) = if list {
            match self.list_project(group, &options.cancel).await {
                Ok(connections) => {
                    let mut listing = RemoteListing::new(connections);
                    // Most listed ids are held by the project's own records: asked of their small
                    // set first, the set of every record's id (a cache miss or two per lookup at a
                    // million) is asked only about the rest.
                    let own: FxSet<&str> = records
                        .iter()
                        .filter_map(|r| r.atlas_id.as_deref())
                        .collect();
                    listing.reduce(|id| own.contains(id) || shared.held.contains(id));
                    (Some(listing), None)
                }
                Err(Abandon::Cancelled) => (None, Some("interrupted".to_owned())),
                Err(Abandon::Failed(e)) => {
                    tracing::error!(project = %group, error = %e, "could not list the project's connections");
                    (None, Some(e.to_string()))
                }
            }
        } else {
            (None, None)
        };
        if let Some(listing) = &listing {
            // Before the plan, which reads the snapshot and not the ledger, so these writes do not
            // change it.
            self.record_remote_states(records, listing, shared.now)
                .await?;
        }

        let mut jobs: Vec<Job> = Vec::new();
        let mut adoptions: Vec<(Box<DesiredLink>, Box<RemoteConnection>)> = Vec::new();
        let mut updates: Vec<UpdateJob> = Vec::new();
        // Guarded prune: ledger marks (undeclared since, declared again, deletion seen through)
        // and the deletes this project's plan asks for.
        let mut marks: Vec<Change> = declared_again(project, records, shared.now);
        let mut deletes: Vec<(LinkKey, String)> = Vec::new();
        {
            let mut report = shared.report.lock_or_recover();
            let report = &mut *report;
            // Each action is handled as the plan makes it: a plan held whole would be an action per link.
            plan::plan_project_each(
                project,
                records,
                listing.as_ref(),
                shared.held,
                shared.now,
                &shared.settings,
                shared.declared_any,
                |action| match action {
                    Action::Create { link, reason } => {
                        // The guard of "never a duplicate": a create needs a complete listing of
                        // its project from this pass, whatever the plan says.
                        if listing.is_none() {
                            let why = match &list_failure {
                                Some(why) => {
                                    format!("not created: listing the project failed: {why}")
                                }
                                None => "not created: the project was not listed in this pass"
                                    .to_owned(),
                            };
                            report.not_attempted.push(FailedLink::new(&link.key, why));
                        } else {
                            let prior_attempts = prior_attempts(records, &link);
                            jobs.push(Job {
                                link,
                                reason,
                                in_flight_until: None,
                                prior_attempts,
                            });
                        }
                    }
                    Action::Adopt { link, remote } => adoptions.push((link, remote)),
                    Action::Unchanged { key, .. } => match &list_failure {
                        // `--once` promises every link was seen in a listing of this pass.
                        Some(why) if options.list_all => report.unverified.push(FailedLink::new(
                            &key,
                            format!("not verified: listing the project failed: {why}"),
                        )),
                        _ => report.unchanged += 1,
                    },
                    // The plan makes an update only from this project's listing.
                    Action::Update { link, atlas_id, .. } => {
                        updates.push(UpdateJob { link, atlas_id })
                    }
                    Action::Changed {
                        key,
                        recorded,
                        desired,
                        why,
                        ..
                    } => {
                        let reason = why.reason();
                        match &reason {
                            None => {
                                tracing::warn!(link = %key, recorded = %recorded.short(), desired = %desired.short(),
                                "the manifest changed a link that already exists; atlas-linkd never deletes or recreates it")
                            }
                            Some(reason) => {
                                tracing::warn!(link = %key, recorded = %recorded.short(), desired = %desired.short(),
                                "dnsDomain not updated: {reason}")
                            }
                        }
                        if matches!(why, ChangedWhy::DnsDomainRefused { .. }) {
                            self.count_update(metrics::update_outcome::REFUSED);
                        }
                        report.changed.push(ChangedLink::new(&key, reason));
                    }
                    Action::Orphaned {
                        key,
                        hold,
                        undeclared_since_unix,
                        ..
                    } => {
                        // A prune candidate: the grace period counts from the first pass that
                        // finds it undeclared, whether prune is on yet or not.
                        if hold.is_some() && undeclared_since_unix.is_none() {
                            marks.push(mark_undeclared(&key, shared.now));
                        }
                        if let Some(
                            Hold::Grace { until_unix }
                            | Hold::InUse { until_unix }
                            | Hold::Failed { until_unix, .. },
                        ) = &hold
                        {
                            report.note_due(*until_unix);
                        }
                        match hold {
                            None | Some(Hold::Disabled) => {
                                tracing::warn!(link = %key, "recorded in the ledger but no longer declared; left in place");
                                report.orphaned.push(key);
                            }
                            Some(h @ Hold::InUse { .. }) => {
                                report.in_use.push(FailedLink::new(&key, hold_reason(&h)));
                            }
                            Some(h) => {
                                tracing::info!(link = %key, reason = h.as_str(), "no longer declared; prune holds it back");
                                report
                                    .held_back
                                    .push(FailedLink::new(&key, hold_reason(&h)));
                            }
                        }
                    }
                    Action::Delete { key, atlas_id } => {
                        if undeclared_since(records, &key).is_none() {
                            marks.push(mark_undeclared(&key, shared.now));
                        }
                        deletes.push((key, atlas_id));
                    }
                    Action::Deleting { key, gone, .. } => {
                        if gone {
                            tracing::info!(link = %key, "deletion complete: no longer listed; record dropped");
                            marks.push(Change::Forget { key });
                        } else {
                            report.deleting.push(key);
                        }
                    }
                    Action::Waiting {
                        key,
                        until_unix,
                        last_error,
                        ..
                    } => {
                        report.note_due(until_unix);
                        report.waiting.push(FailedLink::new(
                            &key,
                            format!(
                                "waiting until {} after failure: {}",
                                crate::report::format_unix(until_unix),
                                last_error.unwrap_or_default()
                            ),
                        ));
                    }
                    Action::Conflict {
                        link,
                        remote_id,
                        fields,
                    } => {
                        let why = near_match_reason(&remote_id, &fields);
                        tracing::error!(link = %link.key, "{why}");
                        report.conflicted.push(FailedLink::new(&link.key, why));
                    }
                    Action::Rename {
                        link,
                        from,
                        atlas_id,
                    } => marks.push(Change::Renamed {
                        key: link.key,
                        from,
                        atlas_id,
                        at_unix: shared.now,
                    }),
                    Action::RenameUnclear { link, candidates } => {
                        let why = rename_unclear_reason(&candidates);
                        tracing::error!(link = %link.key, "{why}");
                        report.conflicted.push(FailedLink::new(&link.key, why));
                    }
                    Action::InFlight { link, until_unix } => {
                        if options.wait_for_settle {
                            // Decided by a listing after the window, inside this pass.
                            let prior_attempts = prior_attempts(records, &link);
                            jobs.push(Job {
                                link,
                                reason: CreateReason::Resume,
                                in_flight_until: Some(until_unix),
                                prior_attempts,
                            });
                        } else {
                            report.add_in_flight(&link.key, until_unix);
                        }
                    }
                },
            );
        }
        if let Some(listing) = &listing {
            // Adopted by this plan: managed from now on. Held ids were moved out by `reduce`.
            let adopted: HashSet<&str> = adoptions.iter().map(|(_, r)| r.id.as_str()).collect();
            let (found, copies) = unheld_in(
                group,
                listing,
                |id| adopted.contains(id) || shared.held.contains(id),
                project,
                |key| {
                    let i = records.binary_search_by(|r| r.key.cmp(key)).ok()?;
                    records[i].connection()
                },
            );
            self.metrics.set_unmanaged(group.as_str(), found.len());
            self.metrics.set_duplicates(group.as_str(), copies.len());
            for u in &found {
                tracing::warn!(project = %group, atlas_id = %u.atlas_id,
                    "unmanaged connection: in Atlas, neither declared nor recorded (billed; never touched)");
            }
            for d in &copies {
                tracing::error!(project = %group, link = %d.name, atlas_id = %d.atlas_id, held = %d.held_atlas_id,
                    "duplicate connection: an exact copy of a declared link that already has its connection (billed; never deleted by atlas-linkd: delete it in Atlas)");
            }
            let mut report = shared.report.lock_or_recover();
            report.unmanaged.extend(found);
            report.duplicates.extend(copies);
        }
        drop(listing);
        shared.progress.planned(jobs.len());
        if !updates.is_empty() {
            self.run_updates(updates, options, &shared.halt, &shared.report)
                .await;
        }
        if jobs.is_empty() && adoptions.is_empty() && marks.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        // Before the project's batch: nothing is written or created for a ledger that is no
        // longer the one this process holds.
        if !shared.halt.may_create(&self.ledger) {
            return Ok(());
        }
        self.apply_marks(marks, &shared.report).await?;

        // Adoptions before creates of the same project: a create's verification must not adopt
        // what a link of this plan adopted. Concurrently, so the ledger commits them in a few
        // transactions rather than one each.
        futures::future::try_join_all(
            adoptions
                .iter()
                .map(|(link, remote)| self.record_adoption(link, remote)),
        )
        .await?;
        let claimed = if jobs.is_empty() {
            &shared.claimed
        } else {
            shared.claimed()
        };
        claimed
            .lock_or_recover()
            .extend(adoptions.iter().map(|(_, remote)| remote.id.clone()));
        {
            let mut report = shared.report.lock_or_recover();
            for (link, remote) in adoptions {
                tracing::info!(link = %link.key, atlas_id = %remote.id, "adopted an existing connection");
                report.adopted.push(link.key);
            }
        }

        futures::stream::iter(jobs)
            .map(|job| async move {
                let create = CreateJob {
                    link: &job.link,
                    reason: job.reason,
                    prior_attempts: job.prior_attempts,
                    in_flight_until: job.in_flight_until,
                    claimed,
                    records: shared.records,
                    conflicts: &shared.conflicts,
                    halt: &shared.halt,
                };
                let outcome = self.create_one(create, options).await;
                shared.progress.create_ended();
                (job.link.key, outcome)
            })
            .buffer_unordered(self.policy.per_project_concurrency)
            .for_each(|(key, outcome)| {
                report_outcome(&mut shared.report.lock_or_recover(), key, outcome);
                futures::future::ready(())
            })
            .await;

        // Deletes after the project's creates, each taking one of the pass's `max_per_pass`.
        futures::stream::iter(deletes)
            .map(|(key, atlas_id)| async move {
                if !shared.take_delete() {
                    let outcome = DeleteOutcome::Skipped(hold_reason(&Hold::Cap));
                    return (key, Ok(outcome));
                }
                let declared = project.is_some_and(|p| p.links.contains_key(&key.name));
                let job = DeleteJob {
                    key: &key,
                    atlas_id: &atlas_id,
                    declared,
                    halt: &shared.halt,
                };
                let outcome = self.delete_one(job, options).await;
                (key, outcome)
            })
            .buffer_unordered(self.policy.per_project_concurrency)
            .for_each(|(key, outcome)| {
                report_delete(&mut shared.report.lock_or_recover(), key, outcome);
                futures::future::ready(())
            })
            .await;
        Ok(())
    }

    /// Writes a project's prune marks and renames at once (the ledger commits them in a few transactions). A mark
    /// the ledger refuses (its row is not what the plan saw) is reported, not a failure of the pass:
    /// the writer reads its rows again for the next pass. Any other ledger error fails the pass.
    async fn apply_marks(
        &self,
        marks: Vec<Change>,
        report: &Mutex<PassReport>,
    ) -> Result<(), LedgerError> {
        let results = futures::future::join_all(marks.into_iter().map(|c| async move {
            // The ledger takes its own copy; this one names the outcome.
            let result = self.ledger.apply(c.clone()).await;
            (c, result)
        }))
        .await;
        for (change, result) in results {
            let key = change.key();
            match result {
                Ok(()) => {
                    if let Change::Renamed { from, atlas_id, .. } = &change {
                        tracing::info!(link = %key, from = %from.name, atlas_id,
                            "renamed: the record moves to the new name; nothing sent to Atlas");
                        report
                            .lock_or_recover()
                            .renamed
                            .push(RenamedLink::new(key, from));
                    }
                }
                Err(e) if e.is_refused() => {
                    tracing::error!(link = %key, error = %e, "the ledger refused a change");
                    report
                        .lock_or_recover()
                        .ledger_refused
                        .push(FailedLink::new(key, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Records the Atlas state of every recorded connection of a project that its listing shows,
    /// where it changed. Only a listing of the record's own project speaks for it.
    async fn record_remote_states(
        &self,
        records: &[Record],
        listing: &RemoteListing,
        now: i64,
    ) -> Result<(), LedgerError> {
        if records.iter().all(|r| r.atlas_id.is_none()) {
            return Ok(());
        }
        let listed: FxMap<&str, ListedState<'_>> = listing.states().collect();
        let changes = records.iter().filter_map(|record| {
            let id = record.atlas_id.as_deref()?;
            remote_state_change(record, listed.get(id)?, now)
        });
        // Concurrently, so the ledger commits them in a few transactions rather than one each; but
        // a bounded number at a time: after Atlas filled in its outputs, every record changes, and a
        // million changes and their waiting futures at once cost gigabytes.
        futures::stream::iter(changes.map(|c| self.ledger.apply(c)))
            .buffer_unordered(REMOTE_STATE_WRITES)
            .try_for_each(|()| futures::future::ready(Ok(())))
            .await
    }

    /// `atlas_linkd_links{status}` and `atlas_linkd_remote_links{state}` after a pass.
    async fn update_gauges(&self, desired: &DesiredState, report: &PassReport) {
        let m = &self.metrics;
        let set = |status: &str, n: usize| m.links.with_label_values(&[status]).set(n as i64);
        set(metrics::link_status::DESIRED, desired.link_count());
        set(
            metrics::link_status::CONVERGED,
            report.created.len()
                + report.adopted.len()
                + report.renamed.len()
                + report.unchanged
                + report.updated.len(),
        );
        set(
            metrics::link_status::PENDING,
            report.not_attempted.len() + report.in_flight.len() + report.unverified.len(),
        );
        set(metrics::link_status::CONFLICT, report.conflicted.len());
        set(
            metrics::link_status::FAILED,
            report.failed.len() + report.waiting.len(),
        );
        set(metrics::link_status::CHANGED, report.changed.len());
        // Every undeclared record still in the ledger, whatever prune does about it.
        set(
            metrics::link_status::ORPHANED,
            report.orphaned.len()
                + report.held_back.len()
                + report.in_use.len()
                + report.deleting.len()
                + report.deleted.len(),
        );

        if let Ok(records) = self.ledger.snapshot().await {
            self.set_remote_links_gauge(desired, &records);
            let mut managed: BTreeSet<&str> = records
                .chunk_by(|a, b| a.key.group_id == b.key.group_id)
                .map(|own| own[0].key.group_id.as_str())
                .collect();
            managed.extend(desired.projects.keys().map(GroupId::as_str));
            self.metrics.retain_unmanaged(|p| managed.contains(p));
        }
    }
}

/// The failures the ledger already counts for `link`, from its project's records (in key order).
fn prior_attempts(records: &[Record], link: &DesiredLink) -> u32 {
    records
        .binary_search_by(|r| r.key.cmp(&link.key))
        .map_or(0, |i| records[i].attempts)
}

/// The marks that clear "undeclared since" of the project's records that are declared again.
fn declared_again(project: Option<&DesiredProject>, records: &[Record], now: i64) -> Vec<Change> {
    let Some(project) = project else {
        return Vec::new();
    };
    records
        .iter()
        .filter(|r| {
            r.prune.undeclared_since_unix.is_some() && project.links.contains_key(&r.key.name)
        })
        .map(|r| Change::Undeclared {
            key: r.key.clone(),
            since_unix: None,
            at_unix: now,
        })
        .collect()
}

fn mark_undeclared(key: &LinkKey, now: i64) -> Change {
    Change::Undeclared {
        key: key.clone(),
        since_unix: Some(now),
        at_unix: now,
    }
}

/// Since when the record of `key` (in the project's records, in key order) is undeclared.
fn undeclared_since(records: &[Record], key: &LinkKey) -> Option<i64> {
    records
        .binary_search_by(|r| r.key.cmp(key))
        .ok()
        .and_then(|i| records[i].prune.undeclared_since_unix)
}

/// A delete's outcome, into the report.
fn report_delete(
    report: &mut PassReport,
    key: LinkKey,
    outcome: Result<DeleteOutcome, LedgerError>,
) {
    match outcome {
        Ok(DeleteOutcome::Deleted) => report.deleted.push(key),
        // Gone before we asked: nothing left to report but that it is no longer recorded.
        Ok(DeleteOutcome::Gone) => {}
        Ok(DeleteOutcome::InUse(why)) => report.in_use.push(FailedLink::new(&key, why)),
        Ok(DeleteOutcome::Failed(why)) => report.failed.push(FailedLink::new(&key, why)),
        Ok(DeleteOutcome::Skipped(why)) => report.held_back.push(FailedLink::new(&key, why)),
        Ok(DeleteOutcome::Interrupted) => report.not_attempted.push(FailedLink::new(
            &key,
            "interrupted before its delete was sent".to_owned(),
        )),
        Err(e) => {
            report.ledger_errors += 1;
            report
                .failed
                .push(FailedLink::new(&key, format!("ledger write failed: {e}")))
        }
    }
}

/// A create's outcome, into the report.
fn report_outcome(
    report: &mut PassReport,
    key: crate::model::LinkKey,
    outcome: Result<CreateOutcome, LedgerError>,
) {
    match outcome {
        Ok(CreateOutcome::Created) => report.created.push(key),
        Ok(CreateOutcome::Verified { after_conflict }) => {
            if after_conflict {
                report.adopted.push(key);
            } else {
                report.created.push(key);
            }
        }
        Ok(CreateOutcome::Failed(reason)) => report.failed.push(FailedLink::new(&key, reason)),
        Ok(CreateOutcome::NearMatch(reason)) => {
            report.conflicted.push(FailedLink::new(&key, reason))
        }
        Ok(CreateOutcome::Undecided(reason)) => {
            report.unverified.push(FailedLink::new(&key, reason))
        }
        Ok(CreateOutcome::InFlight { until_unix }) => report.add_in_flight(&key, until_unix),
        Ok(CreateOutcome::Interrupted) => report.not_attempted.push(FailedLink::new(
            &key,
            "interrupted before its create completed".to_string(),
        )),
        Err(e) => {
            report.ledger_errors += 1;
            report
                .failed
                .push(FailedLink::new(&key, format!("ledger write failed: {e}")))
        }
    }
}

/// The `Progress` hook of a pass whose projects plan at different times: `start` is called once
/// every project's plan is known (so its count of creates is exact), and the creates that ended
/// before then are caught up at once.
struct PassProgress {
    progress: Option<Arc<dyn Progress>>,
    declared: u64,
    state: Mutex<ProgressState>,
}

#[derive(Default)]
struct ProgressState {
    /// Projects whose plan is not known yet.
    unplanned: usize,
    creates: u64,
    done: u64,
    started: bool,
}

impl PassProgress {
    fn new(progress: Option<Arc<dyn Progress>>, declared: u64, projects: usize) -> PassProgress {
        PassProgress {
            progress,
            declared,
            state: Mutex::new(ProgressState {
                unplanned: projects,
                ..ProgressState::default()
            }),
        }
    }

    fn start(&self, state: &mut ProgressState) {
        if state.started {
            return;
        }
        state.started = true;
        if let Some(p) = &self.progress {
            p.start(self.declared, state.creates);
            if state.done > 0 {
                p.advance(state.done);
            }
        }
    }

    /// A project's plan is known: `creates` of its links go through a create.
    fn planned(&self, creates: usize) {
        let mut state = self.state.lock_or_recover();
        state.creates = state.creates.saturating_add(creates as u64);
        state.unplanned = state.unplanned.saturating_sub(1);
        if state.unplanned == 0 {
            self.start(&mut state);
        }
    }

    fn create_ended(&self) {
        let mut state = self.state.lock_or_recover();
        state.done = state.done.saturating_add(1);
        if state.started
            && let Some(p) = &self.progress
        {
            p.advance(state.done);
        }
    }

    fn finish(&self) {
        let mut state = self.state.lock_or_recover();
        self.start(&mut state);
        if let Some(p) = &self.progress {
            p.finish();
        }
    }
}
