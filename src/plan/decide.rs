//! `plan()`: the pure decision of what a pass does, link by link.

use super::index::{Claimed, ProjectIndex};
use super::{
    Action, ChangedWhy, CreateReason, Hold, Listings, Plan, PlanSettings, RemoteListing, unheld_in,
};
use crate::model::{
    DesiredLink, DesiredProject, DesiredState, Fingerprint, FxMap, FxSet, GroupId, LinkKey, Phase,
    Record, RemoteState,
};

/// Whether a record was made from the spec a link now declares.
fn same_spec(record: &Record, link: &DesiredLink) -> bool {
    // Fingerprints recorded before regions and the MSK scheme were canonicalised may differ for
    // the same spec; the recorded spec, fingerprinted today, settles it. Parsed only when the
    // fingerprints differ, which is rare.
    record.fingerprint == link.fingerprint
        || record
            .spec()
            .is_ok_and(|spec| spec.fingerprint() == link.fingerprint)
}

/// Whether a record's spec differs from `link`'s only in `dnsDomain`: the recorded spec with the
/// declared domain fingerprints as the declared spec, so every other field is the same (as
/// canonicalised today). Called only when the specs differ.
fn only_dns_domain_differs(record: &Record, link: &DesiredLink) -> bool {
    record.spec().is_ok_and(|mut spec| {
        spec.dns_domain.clone_from(&link.spec.dns_domain);
        spec.fingerprint() == link.fingerprint
    })
}

/// What a link created or adopted with another spec gets: an update of its `dnsDomain` when that
/// is the only difference and the listing shows the connection in a state Atlas takes a PATCH in
/// (`IDLE`, or no domain yet, and not being deleted); else `changed`, with why.
fn changed_or_update(
    record: &Record,
    link: &DesiredLink,
    index: Option<&ProjectIndex<'_>>,
) -> Action {
    let changed = |why| Action::Changed {
        key: link.key.clone(),
        atlas_id: record.atlas_id.clone(),
        recorded: record.fingerprint,
        desired: link.fingerprint,
        why,
    };
    if !only_dns_domain_differs(record, link) {
        return changed(ChangedWhy::Spec);
    }
    if link.spec.dns_domain.is_none() {
        return changed(ChangedWhy::DnsDomainRemoved);
    }
    let Some(index) = index else {
        return changed(ChangedWhy::DnsDomainUnlisted);
    };
    let Some(listed) = record.atlas_id.as_deref().and_then(|id| index.listed(id)) else {
        return changed(ChangedWhy::DnsDomainNotListed);
    };
    let state = listed.state;
    let deleting = state.is_some_and(RemoteState::is_deleting);
    let idle = state == Some(&RemoteState::Idle);
    match (&record.atlas_id, deleting, idle || !listed.has_dns_domain) {
        (Some(id), false, true) => Action::Update {
            link: Box::new(link.clone()),
            atlas_id: id.clone(),
            remote_state: state.cloned(),
            recorded: record.fingerprint,
        },
        _ => changed(ChangedWhy::DnsDomainRefused {
            state: state.cloned(),
        }),
    }
}

/// Decides what a pass does. Pure: the same inputs give the same plan.
///
/// `now_unix` must be taken before any of `listings` was started (see the module documentation).
pub fn plan(
    desired: &DesiredState,
    records: &[Record],
    listings: &Listings,
    now_unix: i64,
    settings: &PlanSettings,
) -> Plan {
    let mut actions = Vec::with_capacity(desired.link_count().max(records.len()));
    plan_each(desired, records, listings, now_unix, settings, |a| {
        actions.push(a)
    });
    let mut managed: FxSet<&str> = records
        .iter()
        .filter_map(|r| r.atlas_id.as_deref())
        .collect();
    managed.extend(actions.iter().filter_map(|a| match a {
        Action::Adopt { remote, .. } => Some(remote.id.as_str()),
        _ => None,
    }));
    // What each declared link's record holds, for telling a copy of it from an unmanaged one;
    // only a listing can show a copy.
    let held: FxMap<&LinkKey, &str> = if listings.is_empty() {
        FxMap::default()
    } else {
        records
            .iter()
            .filter_map(|r| Some((&r.key, r.connection()?)))
            .collect()
    };
    let mut unmanaged = Vec::new();
    let mut duplicates = Vec::new();
    for (group, listing) in listings {
        let (u, d) = unheld_in(
            group,
            listing,
            |id| managed.contains(id),
            desired.projects.get(group),
            |key| held.get(key).copied(),
        );
        unmanaged.extend(u);
        duplicates.extend(d);
    }
    Plan {
        actions,
        unmanaged,
        duplicates,
    }
}

/// `plan`, handing each action to `each` in the plan's order instead of collecting them: a pass
/// acts on them one at a time, and a plan of a million links, nearly all unchanged, would
/// otherwise be held whole (well over 100 MB) only to be counted.
pub fn plan_each(
    desired: &DesiredState,
    records: &[Record],
    listings: &Listings,
    now_unix: i64,
    settings: &PlanSettings,
    mut each: impl FnMut(Action),
) {
    let sorted = sorted(records);
    let mut claimed = Claimed::lazy(&sorted);
    let indexes: FxMap<&GroupId, ProjectIndex> = listings
        .iter()
        .map(|(g, l)| (g, ProjectIndex::new(l)))
        .collect();
    let mut prune = PruneRun::new(desired.link_count() > 0);
    plan_links(
        desired.links(),
        &sorted,
        |group| indexes.get(group),
        &mut claimed,
        now_unix,
        settings,
        &mut prune,
        &mut each,
    );
}

/// The plan of one project: the actions `plan_each` gives for the links and records of `group`,
/// in the same order, from the project's own listing (if it was listed). A pass plans each project
/// as soon as its listing is complete, so one project's trouble holds no other back.
///
/// `records` are the records of this project (any order); `taken` is every id that a record of
/// ANY project holds, so that adoption stays one-to-one across the whole ledger (it is read only
/// when `listing` is given). `declared_any`: whether the manifests declare any link at all, in
/// any project (without one, nothing is pruned). `prune.max_per_pass` caps this project's deletes;
/// the pass caps them across projects.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_project_each(
    project: Option<&DesiredProject>,
    records: &[Record],
    listing: Option<&RemoteListing>,
    taken: &FxSet<&str>,
    now_unix: i64,
    settings: &PlanSettings,
    declared_any: bool,
    mut each: impl FnMut(Action),
) {
    let sorted = sorted(records);
    let mut claimed = Claimed::given(taken);
    let index = listing.map(ProjectIndex::new);
    let mut prune = PruneRun::new(declared_any);
    plan_links(
        project.into_iter().flat_map(|p| p.links.values()),
        &sorted,
        |_| index.as_ref(),
        &mut claimed,
        now_unix,
        settings,
        &mut prune,
        &mut each,
    );
}

/// What prune decisions of one plan share.
struct PruneRun {
    declared_any: bool,
    /// Deletes planned so far.
    deletes: u32,
}

impl PruneRun {
    fn new(declared_any: bool) -> PruneRun {
        PruneRun {
            declared_any,
            deletes: 0,
        }
    }
}

/// The action for a record no link declares: delete, deleting, or orphaned with what holds it back.
fn undeclared(
    r: &Record,
    index: Option<&ProjectIndex<'_>>,
    now_unix: i64,
    settings: &PlanSettings,
    prune: &mut PruneRun,
    rename_candidate: bool,
) -> Action {
    let key = r.key.clone();
    if r.phase == Phase::Deleting {
        let gone = match (index, r.atlas_id.as_deref()) {
            (Some(ix), Some(id)) => !ix.by_id.contains_key(id),
            (Some(_), None) => true,
            (None, _) => false,
        };
        return Action::Deleting {
            key,
            atlas_id: r.atlas_id.clone(),
            listed: index.is_some(),
            gone,
        };
    }
    let hold = match (r.atlas_id.as_deref(), r.phase) {
        (Some(_), Phase::Created | Phase::Adopted) if rename_candidate => Some(Hold::MaybeRenamed),
        (Some(id), Phase::Created | Phase::Adopted) => {
            match prune_hold(r, id, index, now_unix, settings, prune) {
                None => {
                    return Action::Delete {
                        key,
                        atlas_id: id.to_owned(),
                    };
                }
                hold => hold,
            }
        }
        _ => None,
    };
    Action::Orphaned {
        key,
        atlas_id: r.atlas_id.clone(),
        phase: r.phase,
        undeclared_since_unix: r.prune.undeclared_since_unix,
        hold,
    }
}

/// What holds a prune candidate back, in the order of "Guarded prune"; `None`: delete it (and it
/// counts against the cap).
fn prune_hold(
    r: &Record,
    id: &str,
    index: Option<&ProjectIndex<'_>>,
    now_unix: i64,
    settings: &PlanSettings,
    prune: &mut PruneRun,
) -> Option<Hold> {
    let p = &settings.prune;
    if !p.enabled {
        return Some(Hold::Disabled);
    }
    if !prune.declared_any {
        return Some(Hold::NoLinksDeclared);
    }
    if let Some(until_unix) = r.next_attempt_unix
        && now_unix < until_unix
    {
        return Some(if r.prune.in_use {
            Hold::InUse { until_unix }
        } else {
            Hold::Failed {
                until_unix,
                last_error: r.last_error.clone(),
            }
        });
    }
    let since = r.prune.undeclared_since_unix.unwrap_or(now_unix);
    let until_unix = since.saturating_add(p.grace_secs);
    if now_unix < until_unix {
        return Some(Hold::Grace { until_unix });
    }
    let Some(ix) = index else {
        return Some(Hold::NotListed);
    };
    if !ix.by_id.contains_key(id) {
        return Some(Hold::Gone);
    }
    if prune.deletes >= p.max_per_pass {
        return Some(Hold::Cap);
    }
    prune.deletes += 1;
    None
}

/// `records` in key order, sorted only if they are not already (the ledger returns them sorted).
fn sorted(records: &[Record]) -> Vec<&Record> {
    let mut sorted: Vec<&Record> = records.iter().collect();
    if !sorted.is_sorted_by(|a, b| a.key <= b.key) {
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
    }
    sorted
}

/// Renames: a declared link with no record (or only a failed create's, or one whose connection is
/// being deleted) that takes over the row of an undeclared one of its project, because that row
/// holds a connection made from exactly the link's spec.
#[derive(Default)]
struct Renames<'a> {
    /// New key -> the record it takes over (one candidate, wanted by no other link).
    to: FxMap<&'a LinkKey, &'a Record>,
    /// The keys of the records taken over: no longer orphans.
    from: FxSet<&'a LinkKey>,
    /// A link that more than one record could be, or whose record another link could be too:
    /// nothing is moved and nothing created; the candidates are named.
    unclear: FxMap<&'a LinkKey, Vec<LinkKey>>,
    /// Records that an unclear link could be: prune holds them back.
    candidates: FxSet<&'a LinkKey>,
}

impl<'a> Renames<'a> {
    /// From `links` and `sorted` records, both in key order: one merge walk finds the declared
    /// links without a record and the undeclared records holding a connection; only when both
    /// exist (rare) are they paired by project and fingerprint.
    fn find(links: impl Iterator<Item = &'a DesiredLink>, sorted: &[&'a Record]) -> Renames<'a> {
        let mut new_links: Vec<&'a DesiredLink> = Vec::new();
        let mut undeclared: Vec<&'a Record> = Vec::new();
        let holds = |r: &Record| r.connection().is_some();
        let mut pending = sorted.iter().copied().peekable();
        for link in links {
            while let Some(r) = pending.next_if(|r| r.key < link.key) {
                if holds(r) {
                    undeclared.push(r);
                }
            }
            // A link without a record, or whose record holds no connection of ours that is not
            // on its way out (a failed create, or an old connection being deleted): declared
            // again under a name whose row is still seeing its deletion through, it is a rename
            // back, and creating it would duplicate the connection the other name holds.
            match pending.next_if(|r| r.key == link.key) {
                None => new_links.push(link),
                Some(r) if matches!(r.phase, Phase::Failed | Phase::Deleting) => {
                    new_links.push(link)
                }
                Some(_) => {}
            }
            while pending.next_if(|r| r.key == link.key).is_some() {}
        }
        undeclared.extend(pending.filter(|r| holds(r)));
        let mut renames = Renames::default();
        if new_links.is_empty() || undeclared.is_empty() {
            return renames;
        }
        let mut by_spec: FxMap<(&GroupId, Fingerprint), Vec<&'a Record>> = FxMap::default();
        for r in undeclared {
            by_spec
                .entry((&r.key.group_id, r.fingerprint))
                .or_default()
                .push(r);
        }
        let mut wanted_by: FxMap<&LinkKey, usize> = FxMap::default();
        for link in &new_links {
            let wanted = by_spec.get(&(&link.key.group_id, link.fingerprint));
            for r in wanted.into_iter().flatten() {
                *wanted_by.entry(&r.key).or_default() += 1;
            }
        }
        for link in new_links {
            let Some(candidates) = by_spec.get(&(&link.key.group_id, link.fingerprint)) else {
                continue;
            };
            match candidates.as_slice() {
                [only] if wanted_by.get(&only.key) == Some(&1) => {
                    renames.to.insert(&link.key, only);
                    renames.from.insert(&only.key);
                }
                several => {
                    renames.candidates.extend(several.iter().map(|r| &r.key));
                    renames
                        .unclear
                        .insert(&link.key, several.iter().map(|r| r.key.clone()).collect());
                }
            }
        }
        renames
    }
}

/// The plan of `links` (in key order) against `sorted` records (in key order).
#[allow(clippy::too_many_arguments)]
fn plan_links<'a, 'i>(
    links: impl Iterator<Item = &'a DesiredLink> + Clone,
    sorted: &[&'a Record],
    index_of: impl Fn(&GroupId) -> Option<&'i ProjectIndex<'a>>,
    claimed: &mut Claimed<'a>,
    now_unix: i64,
    settings: &PlanSettings,
    prune: &mut PruneRun,
    each: &mut impl FnMut(Action),
) where
    'a: 'i,
{
    // Desired links come in key order (nested BTreeMaps); with records in key order too (as
    // `Ledger::records` returns them), one merge pass pairs them, finds the orphans and yields a
    // sorted plan, with no hashing and no sort.
    let renames = Renames::find(links.clone(), sorted);
    let mut orphan = |r: &Record| {
        if renames.from.contains(&r.key) {
            // Planned as its new name's `Rename`.
            return None;
        }
        Some(undeclared(
            r,
            index_of(&r.key.group_id),
            now_unix,
            settings,
            &mut *prune,
            renames.candidates.contains(&r.key),
        ))
    };
    let mut pending = sorted.iter().copied().peekable();
    for link in links {
        while let Some(r) = pending.next_if(|r| r.key < link.key) {
            if let Some(a) = orphan(r) {
                each(a);
            }
        }
        // A duplicated key in `records` cannot come from the ledger (it is the primary key);
        // the first one wins and the rest are skipped.
        let record = pending.next_if(|r| r.key == link.key);
        while pending.next_if(|r| r.key == link.key).is_some() {}
        let index = index_of(&link.key.group_id);
        if let Some(from) = renames.to.get(&link.key) {
            each(Action::Rename {
                link: Box::new(link.clone()),
                from: from.key.clone(),
                atlas_id: from.atlas_id.clone().unwrap_or_default(),
            });
            continue;
        }
        if let Some(candidates) = renames.unclear.get(&link.key) {
            each(Action::RenameUnclear {
                link: Box::new(link.clone()),
                candidates: candidates.clone(),
            });
            continue;
        }
        let reason = match record {
            None => CreateReason::New,
            Some(r) => match r.phase {
                Phase::Created | Phase::Adopted => {
                    if !same_spec(r, link) {
                        each(changed_or_update(r, link, index));
                        continue;
                    }
                    match (&r.atlas_id, index) {
                        (Some(id), Some(ix)) if !ix.by_id.contains_key(id.as_str()) => {
                            CreateReason::Recreate
                        }
                        (Some(id), ix) => {
                            // A listing is fresher than the record.
                            let fresh = ix.and_then(|ix| ix.by_id.get(id.as_str()));
                            each(Action::Unchanged {
                                key: link.key.clone(),
                                atlas_id: id.clone(),
                                remote_state: match fresh {
                                    Some(state) => state.cloned(),
                                    None => r.remote_state.clone(),
                                },
                            });
                            continue;
                        }
                        // Recorded as done but without an id: the record cannot vouch for
                        // anything, so treat it like an unknown outcome.
                        (None, _) => CreateReason::Resume,
                    }
                }
                Phase::Intent => CreateReason::Resume,
                // Declared again while its old connection is being deleted: a new one.
                Phase::Deleting => CreateReason::Recreate,
                Phase::Failed => {
                    let due = r.next_attempt_unix.is_none_or(|t| t <= now_unix);
                    if !due && same_spec(r, link) {
                        each(Action::Waiting {
                            key: link.key.clone(),
                            until_unix: r.next_attempt_unix.unwrap_or(now_unix),
                            attempts: r.attempts,
                            last_error: r.last_error.clone(),
                        });
                        continue;
                    }
                    CreateReason::Retry
                }
            },
        };
        // Before any create: the steps of "Before a create" in the module documentation.
        let in_flight_until = record
            .filter(|r| matches!(r.phase, Phase::Intent | Phase::Failed))
            .and_then(|r| r.sent_unix)
            .map(|sent| sent.saturating_add(settings.settle_secs));
        if let Some(ix) = index
            && let Some(remote) = ix.find(&link.spec, &claimed.view())
        {
            claimed.adopt(remote.id.as_str());
            each(Action::Adopt {
                link: Box::new(link.clone()),
                remote: Box::new(remote.clone()),
            });
        } else if let Some(ix) = index
            && let Some((remote, fields)) = ix.near(&link.spec, &claimed.view())
        {
            each(Action::Conflict {
                link: Box::new(link.clone()),
                remote_id: remote.id.clone(),
                fields,
            });
        } else if let Some(until_unix) = in_flight_until
            && now_unix < until_unix
        {
            each(Action::InFlight {
                link: Box::new(link.clone()),
                until_unix,
            });
        } else {
            each(Action::Create {
                link: Box::new(link.clone()),
                reason,
            });
        }
    }
    for r in pending {
        if let Some(a) = orphan(r) {
            each(a);
        }
    }
}
