//! Refreshing what the ledger knows of Atlas without planning: list projects, and record the state,
//! `errorMessage` and outputs that each listing shows of the recorded connections. One function for
//! `outputs --refresh` and `--once --wait`; the pass records its own listings with the same change.

use super::Reconciler;
use super::clock::now_unix;
use super::list::Abandon;
use crate::ledger::{Change, LedgerError, LedgerHandle};
use crate::model::{
    DesiredState, EndpointOutputs, GroupId, LinkKey, Phase, Record, RemoteConnection,
};
use crate::plan::{ListedState, RemoteListing};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// What a refresh saw of the projects it was asked to list.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// Each project listed completely, with the ids its listing showed: a recorded id missing from
    /// it is gone from Atlas.
    pub listed: BTreeMap<GroupId, HashSet<String>>,
    /// Each project that could not be listed, and why; its rows keep what was last recorded.
    pub failures: BTreeMap<GroupId, String>,
}

/// A connection that this many complete listings in a row did not show is taken as gone (deleted
/// outside atlas-linkd). Twice, so that a listing lagging behind a create just made cannot count it
/// gone.
const GONE_AFTER: u32 = 2;

/// The recorded connections that complete listings no longer showed, counted per link, so that
/// `--once --wait` and the daemon's readiness polls agree on when a connection is gone.
#[derive(Debug, Default)]
pub(crate) struct Unlisted {
    missing: HashMap<LinkKey, u32>,
}

impl Unlisted {
    /// Counts, for each of `records` in a project that `listed` holds (project -> ids its complete
    /// listing showed), whether its connection was missing; one that is shown again starts over.
    pub(crate) fn observe(
        &mut self,
        records: &[Record],
        listed: &BTreeMap<GroupId, HashSet<String>>,
    ) {
        for record in records {
            let (Some(ids), Some(id)) =
                (listed.get(&record.key.group_id), record.atlas_id.as_deref())
            else {
                continue;
            };
            if ids.contains(id) {
                self.missing.remove(&record.key);
            } else {
                let times = self.missing.entry(record.key.clone()).or_default();
                *times = times.saturating_add(1);
            }
        }
    }

    /// The links whose connection `GONE_AFTER` complete listings in a row did not show.
    pub(crate) fn gone(&self) -> HashSet<LinkKey> {
        self.missing
            .iter()
            .filter(|(_, n)| **n >= GONE_AFTER)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub(crate) fn clear(&mut self) {
        self.missing.clear();
    }
}

/// Lists `groups`, up to `concurrency` at once, with `list` (which decides how a call is paced and
/// retried), and records in `ledger` what each complete listing shows of the project's recorded
/// connections, where it changed. Nothing is created and no other row is touched. Errors only when
/// the ledger cannot be read or written; a project that cannot be listed is in `failures`.
pub(crate) async fn refresh_projects<F, Fut, E>(
    ledger: &LedgerHandle,
    groups: BTreeSet<GroupId>,
    concurrency: usize,
    list: F,
) -> Result<Refreshed, LedgerError>
where
    F: Fn(GroupId) -> Fut,
    Fut: Future<Output = Result<Vec<RemoteConnection>, E>>,
    E: Display,
{
    let records = ledger.snapshot().await?;
    let list = &list;
    let results: Vec<_> = futures::stream::iter(groups)
        .map(|group| async move {
            let listed = list(group.clone()).await;
            (group, listed)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    // Read after the listings, as a pass reads its clock before them: the time a change was seen.
    let now = now_unix();
    let mut refreshed = Refreshed::default();
    for (group, listed) in results {
        let connections = match listed {
            Ok(c) => c,
            Err(e) => {
                refreshed.failures.insert(group, e.to_string());
                continue;
            }
        };
        let listing = RemoteListing::new(connections);
        let by_id: HashMap<&str, ListedState<'_>> = listing.states().collect();
        for record in records.iter().filter(|r| r.key.group_id == group) {
            let Some(remote) = record.atlas_id.as_deref().and_then(|id| by_id.get(id)) else {
                continue;
            };
            if let Some(change) = remote_state_change(record, remote, now) {
                ledger.apply(change).await?;
            }
        }
        let ids = by_id.keys().map(|id| (*id).to_owned()).collect();
        refreshed.listed.insert(group, ids);
    }
    Ok(refreshed)
}

/// The change that records what a listing shows of a recorded connection, if it differs from the
/// row: the pass, `outputs --refresh` and `--once --wait` all record states through this.
pub(crate) fn remote_state_change(
    record: &Record,
    remote: &ListedState<'_>,
    now: i64,
) -> Option<Change> {
    let state = remote.state?;
    let no_outputs = EndpointOutputs::default();
    let outputs = remote.outputs.unwrap_or(&no_outputs);
    let changed = record.remote_state.as_ref() != Some(state)
        || record.remote_error.as_ref() != remote.error_message
        || record.outputs != *outputs;
    let atlas_id = record.atlas_id.as_deref()?;
    changed.then(|| Change::RemoteState {
        key: record.key.clone(),
        atlas_id: atlas_id.to_owned(),
        state: state.clone(),
        error: remote.error_message.cloned(),
        outputs: remote.outputs(),
        at_unix: now,
    })
}

impl Reconciler {
    /// `refresh_projects` with this reconciler's ledger and caps, each listing through its
    /// project's gate (bucket, slots, 429 pause) and the error policy, as the pass's listings go:
    /// the daemon's readiness poll, `--once --wait` and `outputs --refresh`.
    pub async fn refresh_projects(
        &self,
        groups: BTreeSet<GroupId>,
        cancel: &CancellationToken,
    ) -> Result<Refreshed, LedgerError> {
        refresh_projects(
            &self.ledger,
            groups,
            self.policy.concurrency,
            |group| async move {
                self.list_project(&group, cancel)
                    .await
                    .map_err(|e| match e {
                        Abandon::Cancelled => "interrupted".to_owned(),
                        Abandon::Failed(e) => e.to_string(),
                    })
            },
        )
        .await
    }
}

impl Reconciler {
    /// `atlas_linkd_remote_links{state}` from `records`: the declared links created or adopted, by
    /// the Atlas state last recorded (`UNKNOWN` before a listing showed one), as after a pass. The
    /// wait sets it after each poll, so `--metrics-file` holds the states the wait ended with.
    pub(crate) fn set_remote_links_gauge(&self, desired: &DesiredState, records: &[Record]) {
        let mut states: BTreeMap<&str, i64> = BTreeMap::new();
        // Records come in key order, so a project's records lie together and its names come in
        // the order of its links: one walk along both, where a lookup per record cost a million
        // searches (a record out of order is still looked up).
        for own in records.chunk_by(|a, b| a.key.group_id == b.key.group_id) {
            let Some(project) = desired.projects.get(&own[0].key.group_id) else {
                continue;
            };
            let mut names = project.links.keys().peekable();
            let mut declared = |name: &str| {
                while names.next_if(|n| *n < name).is_some() {}
                names.peek() == Some(&name) || project.links.contains_key(name)
            };
            for r in own.iter().filter(|r| {
                matches!(r.phase, Phase::Created | Phase::Adopted) && declared(&r.key.name)
            }) {
                let state = r.remote_state.as_ref().map_or("UNKNOWN", |s| s.as_str());
                *states.entry(state).or_default() += 1;
            }
        }
        self.metrics
            .set_remote_states(states.iter().map(|(s, n)| (*s, *n)));
    }
}
