//! One pass: read the ledger, plan, list, plan again, then adopt and create in parallel per project,
//! under the guard that no create is sent without a complete listing of its project from this pass.

use super::PassOptions;
use super::Reconciler;
use super::clock::now_unix;
use super::create::{CreateJob, CreateOutcome, near_match_reason};
use super::refresh::remote_state_change;
use crate::ledger::LedgerError;
use crate::metrics;
use crate::model::{DesiredLink, DesiredState, FxMap, FxSet, GroupId, LinkKey, Phase, Record};
use crate::phases;
use crate::plan::{self, Action, CreateReason, ListedState, Listings};
use crate::report::{FailedLink, PassReport};
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("could not read the ledger")]
    Ledger(#[from] LedgerError),
}

/// How many remote-state changes wait for the ledger at once: two of its group commits' worth
/// (it takes up to 4,096 queued changes per transaction), so it never waits for the pass.
const REMOTE_STATE_WRITES: usize = 8192;

/// A create the plan asks for, before the pass hands it to a task.
struct Job {
    link: Box<DesiredLink>,
    reason: CreateReason,
    in_flight_until: Option<i64>,
}

impl Reconciler {
    /// One pass. Errors only when the ledger cannot be read; everything else is in the report.
    pub async fn run_pass(
        &self,
        desired: &DesiredState,
        options: &PassOptions,
    ) -> Result<PassReport, PassError> {
        let started = Instant::now();
        // One clock for the whole pass, read before any listing starts: every plan of the pass sees
        // the same links as due, and a window that ends by `now` ended before the listings began.
        let now = now_unix();
        let requests_before = self.counters.requests.load(Ordering::Relaxed);
        let rate_limited_before = self.counters.rate_limited.load(Ordering::Relaxed);
        let cancel = &options.cancel;
        let mut report = PassReport::new(now, desired.link_count());

        // The writer's copy in memory (see `LedgerHandle::snapshot`), let go before the gauges take
        // the next one.
        let records = self.ledger.snapshot().await?;
        phases::mark("ledger read");
        let settings = self.policy.plan_settings();
        // Of the first plan, only which projects it needs listed (`Plan::projects_to_list`): its
        // actions, one for every link, are not kept.
        let mut to_list: BTreeSet<GroupId> = BTreeSet::new();
        plan::plan_each(desired, &records, &Listings::new(), now, &settings, |a| {
            if a.needs_listing() {
                to_list.insert(a.key().group_id.clone());
            }
        });
        phases::mark("first plan");
        if options.list_all {
            to_list.extend(desired.projects.keys().cloned());
            to_list.extend(records.iter().map(|r| r.key.group_id.clone()));
        }

        // Each listing is reduced as it arrives (`RemoteListing::reduce`): of the connections that
        // records hold, only what the plan and the ledger read is kept.
        let held: FxSet<&str> = if to_list.is_empty() {
            FxSet::default()
        } else {
            records
                .iter()
                .filter_map(|r| r.atlas_id.as_deref())
                .collect()
        };
        let (listings, list_failures) = self.list_projects(&to_list, &held, cancel).await;
        drop(held);
        phases::mark("listings");
        // Before the second plan, which reads the snapshot taken above and not the ledger, so these
        // writes do not change it.
        self.record_remote_states(&records, &listings, now).await?;
        phases::mark("remote states recorded");

        let mut jobs: BTreeMap<GroupId, Vec<Job>> = BTreeMap::new();
        let mut adoptions = Vec::new();
        // Each action is handled as the plan makes it: a plan held whole would be an action per link.
        plan::plan_each(desired, &records, &listings, now, &settings, |action| {
            match action {
                Action::Create { link, reason } => {
                    // The guard of "never a duplicate": a create needs a complete listing of its
                    // project from this pass, whatever the plan says.
                    let group = &link.key.group_id;
                    if !listings.contains_key(group) {
                        let why = match list_failures.get(group) {
                            Some(why) => format!("not created: listing the project failed: {why}"),
                            None => {
                                "not created: the project was not listed in this pass".to_owned()
                            }
                        };
                        report.not_attempted.push(FailedLink::new(&link.key, why));
                    } else {
                        jobs.entry(group.clone()).or_default().push(Job {
                            link,
                            reason,
                            in_flight_until: None,
                        });
                    }
                }
                Action::Adopt { link, remote } => adoptions.push((link, remote)),
                Action::Unchanged { key, .. } => match list_failures.get(&key.group_id) {
                    // `--once` promises every link was seen in a listing of this pass.
                    Some(why) if options.list_all => report.unverified.push(FailedLink::new(
                        &key,
                        format!("not verified: listing the project failed: {why}"),
                    )),
                    _ => report.unchanged += 1,
                },
                Action::Changed {
                    key,
                    recorded,
                    desired,
                    ..
                } => {
                    tracing::warn!(link = %key, recorded = %recorded.short(), desired = %desired.short(),
                        "the manifest changed a link that already exists; atlas-linkd never deletes or recreates it");
                    report.changed.push(key);
                }
                Action::Orphaned { key, .. } => {
                    tracing::warn!(link = %key, "recorded in the ledger but no longer declared; left in place");
                    report.orphaned.push(key);
                }
                Action::Waiting {
                    key,
                    until_unix,
                    last_error,
                    ..
                } => report.waiting.push(FailedLink::new(
                    &key,
                    format!(
                        "waiting until {} after failure: {}",
                        crate::report::format_unix(until_unix),
                        last_error.unwrap_or_default()
                    ),
                )),
                Action::Conflict {
                    link,
                    remote_id,
                    fields,
                } => {
                    let why = near_match_reason(&remote_id, &fields);
                    tracing::error!(link = %link.key, "{why}");
                    report.conflicted.push(FailedLink::new(&link.key, why));
                }
                Action::InFlight { link, until_unix } => {
                    if options.wait_for_settle {
                        // Decided by a listing after the window, inside this pass.
                        jobs.entry(link.key.group_id.clone())
                            .or_default()
                            .push(Job {
                                link,
                                reason: CreateReason::Resume,
                                in_flight_until: Some(until_unix),
                            });
                    } else {
                        report.add_in_flight(&link.key, until_unix);
                    }
                }
            }
        });
        phases::mark("second plan");

        // Concurrently, so the ledger commits them in a few transactions rather than one each.
        futures::future::try_join_all(
            adoptions
                .iter()
                .map(|(link, remote)| self.record_adoption(link, remote)),
        )
        .await?;
        // Ids that a record already holds, or that this pass adopts or creates: never adopted twice.
        // Only creates read them (and their prior attempts): a pass with none builds neither.
        let mut claimed: HashSet<String> = HashSet::new();
        let mut prior_attempts: HashMap<&LinkKey, u32> = HashMap::new();
        if !jobs.is_empty() {
            claimed.extend(records.iter().filter_map(|r| r.atlas_id.clone()));
            prior_attempts.extend(records.iter().map(|r| (&r.key, r.attempts)));
        }
        for (link, remote) in adoptions {
            claimed.insert(remote.id.clone());
            tracing::info!(link = %link.key, atlas_id = %remote.id, "adopted an existing connection");
            report.adopted.push(link.key);
        }
        let claimed = Arc::new(Mutex::new(claimed));

        phases::mark("actions sorted");
        let total: usize = jobs.values().map(Vec::len).sum();
        if let Some(p) = &options.progress {
            p.start(desired.link_count() as u64, total as u64);
        }
        let done = AtomicU64::new(0);
        let conflicts = AtomicU64::new(0);
        let mut projects = FuturesUnordered::new();
        for (_group, links) in jobs {
            let claimed = claimed.clone();
            let (done, conflicts, prior_attempts) = (&done, &conflicts, &prior_attempts);
            projects.push(async move {
                let per_project = self.policy.per_project_concurrency;
                futures::stream::iter(links)
                    .map(|job| {
                        let claimed = claimed.clone();
                        async move {
                            let create = CreateJob {
                                link: &job.link,
                                reason: job.reason,
                                prior_attempts: prior_attempts
                                    .get(&job.link.key)
                                    .copied()
                                    .unwrap_or(0),
                                in_flight_until: job.in_flight_until,
                                claimed: &claimed,
                                conflicts,
                            };
                            let outcome = self.create_one(create, options).await;
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            if let Some(p) = &options.progress {
                                p.advance(n);
                            }
                            (job.link.key, outcome)
                        }
                    })
                    .buffer_unordered(per_project)
                    .collect::<Vec<_>>()
                    .await
            });
        }
        while let Some(results) = projects.next().await {
            for (key, outcome) in results {
                match outcome {
                    Ok(CreateOutcome::Created) => report.created.push(key),
                    Ok(CreateOutcome::Verified { after_conflict }) => {
                        if after_conflict {
                            report.adopted.push(key);
                        } else {
                            report.created.push(key);
                        }
                    }
                    Ok(CreateOutcome::Failed(reason)) => {
                        report.failed.push(FailedLink::new(&key, reason))
                    }
                    Ok(CreateOutcome::NearMatch(reason)) => {
                        report.conflicted.push(FailedLink::new(&key, reason))
                    }
                    Ok(CreateOutcome::Undecided(reason)) => {
                        report.unverified.push(FailedLink::new(&key, reason))
                    }
                    Ok(CreateOutcome::InFlight { until_unix }) => {
                        report.add_in_flight(&key, until_unix)
                    }
                    Ok(CreateOutcome::Interrupted) => report.not_attempted.push(FailedLink::new(
                        &key,
                        "interrupted before its create completed".to_string(),
                    )),
                    Err(e) => {
                        report
                            .failed
                            .push(FailedLink::new(&key, format!("ledger write failed: {e}")));
                    }
                }
            }
        }
        if let Some(p) = &options.progress {
            p.finish();
        }

        report.conflicts = conflicts.load(Ordering::Relaxed);
        report.interrupted = cancel.is_cancelled();
        report.api_calls = self.counters.requests.load(Ordering::Relaxed) - requests_before;
        report.rate_limited =
            self.counters.rate_limited.load(Ordering::Relaxed) - rate_limited_before;
        report.duration = started.elapsed();
        report.sort();
        drop(projects);
        drop(prior_attempts);
        drop(records);
        phases::mark("pass done");
        self.update_gauges(desired, &report).await;
        phases::mark("gauges");
        Ok(report)
    }

    /// Records the Atlas state of every recorded connection that a listing shows, where it changed.
    async fn record_remote_states(
        &self,
        records: &[Record],
        listings: &Listings,
        now: i64,
    ) -> Result<(), LedgerError> {
        // Project by project (records come sorted by key, so a project's records are together): the
        // states of one listing at a time are indexed, not those of every listing at once, which at
        // a million connections took more memory than anything else at this point of the pass.
        // A record whose project was listed is looked up in every listing, as it always was; the
        // index of all of them is built only when its own listing does not show its id.
        let all: OnceLock<FxMap<&str, ListedState<'_>>> = OnceLock::new();
        let all = &all;
        let changes = records
            .chunk_by(|a, b| a.key.group_id == b.key.group_id)
            .filter_map(|project| {
                // Only a listing of the record's own project speaks for it.
                let listing = listings.get(&project[0].key.group_id)?;
                let own: FxMap<&str, ListedState<'_>> = listing.states().collect();
                Some(project.iter().filter_map(move |record| {
                    let id = record.atlas_id.as_deref()?;
                    let remote = own.get(id).or_else(|| {
                        all.get_or_init(|| listings.values().flat_map(|l| l.states()).collect())
                            .get(id)
                    })?;
                    remote_state_change(record, remote, now)
                }))
            })
            .flatten();
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
            report.created.len() + report.adopted.len() + report.unchanged,
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
        set(metrics::link_status::ORPHANED, report.orphaned.len());

        if let Ok(records) = self.ledger.snapshot().await {
            let mut states: BTreeMap<String, i64> = BTreeMap::new();
            for r in records.iter().filter(|r| {
                matches!(r.phase, Phase::Created | Phase::Adopted) && desired.get(&r.key).is_some()
            }) {
                let state = r
                    .remote_state
                    .as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| "UNKNOWN".to_string());
                *states.entry(state).or_default() += 1;
            }
            m.set_remote_states(states.iter().map(|(s, n)| (s.as_str(), *n)));
        }
    }
}
