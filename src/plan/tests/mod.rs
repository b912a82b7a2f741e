//! The plan: a pure comparison of desired state, ledger and remote listings, deciding what a pass does.
//!
//! No I/O and no clock: `now_unix` is a parameter, so every decision is reproducible from its inputs.
//!
//! # Before a create
//! A declared link whose create would otherwise be planned (`new`, `resume`, `retry` or `recreate`)
//! is first compared with the unclaimed connections of its project's listing, if there is one
//! (unclaimed: no record holds the id and no earlier link of this plan adopted it), lowest id first:
//! 1. an exact match (`LinkSpec::matches`) is **adopted**;
//! 2. else a near-match (`LinkSpec::near_match`: same provider, vendor and identity, the far end
//!    the link points at, but other fields differ) makes the link a **conflict**. It is neither
//!    adopted (that connection is not what the manifest asks for) nor created beside (that would
//!    point a second, billed connection at the same far end). A human resolves it, by fixing the
//!    manifest or the connection;
//! 3. else, if the create is still **in flight** at Atlas (below), nothing is sent yet;
//! 4. else the create is planned.
//!
//! # Creates still in flight at Atlas
//! A create whose answer never came (reset, timeout, gateway error), or an intent left by a process
//! that died, may still be committed by Atlas later. A record in phase `intent` or `failed` with
//! `sent_unix = t` is therefore in flight at Atlas until `until_unix = t + settle_secs`
//! (`PlanSettings`, from `reconcile.settle_secs`). While `now_unix < until_unix`, and unless
//! steps 1 and 2 above decide it, the link is `inflight`: no create, and its project is still
//! listed (`Plan::projects_to_list`) so that a later plan can adopt what Atlas committed. From
//! `now_unix == until_unix` on it is created again (reason `resume` or `retry`). A `failed`
//! record whose next attempt is not due is `waiting`, which is decided before all of this.
//!
//! Only a listing that starts after `until_unix` may decide that the lost create was not
//! committed: one taken earlier can miss a connection that Atlas commits a moment later, and a
//! create then would duplicate it. The caller guarantees this by taking `now_unix` *before* it
//! starts the listings it passes in (and `sent_unix` is rounded up to the second): so when
//! `until_unix <= now_unix`, every listing in `listings` started after the window closed.
//!
//! # JSON shape (stable; `plan --output json` prints it)
//! ```json
//! {
//!   "counts": {"create": 1, "adopt": 0, "unchanged": 0, "changed": 0, "conflict": 0,
//!              "orphaned": 0, "waiting": 0, "inflight": 0},
//!   "actions": [
//!     {"action": "create", "groupId": "…", "name": "…", "reason": "new|resume|retry|recreate",
//!      "fingerprint": "…", "spec": {…create body…}, "source": "file:line"},
//!     {"action": "adopt", "groupId": "…", "name": "…", "atlasId": "…", "remoteState": "DONE"|null,
//!      "fingerprint": "…", "source": "file:line"},
//!     {"action": "unchanged", "groupId": "…", "name": "…", "atlasId": "…", "remoteState": "DONE"|null},
//!     {"action": "changed", "groupId": "…", "name": "…", "atlasId": "…"|null,
//!      "recordedFingerprint": "…", "desiredFingerprint": "…"},
//!     {"action": "orphaned", "groupId": "…", "name": "…", "atlasId": "…"|null, "phase": "created"},
//!     {"action": "waiting", "groupId": "…", "name": "…", "untilUnix": 1700000000, "attempts": 2,
//!      "lastError": "…"|null},
//!     {"action": "conflict", "groupId": "…", "name": "…", "atlasId": "…",
//!      "fields": ["authenticationScheme", "…"], "source": "file:line"},
//!     {"action": "inflight", "groupId": "…", "name": "…", "untilUnix": 1700000030}
//!   ]
//! }
//! ```
//! Actions are sorted by `(groupId, name)`; each declared or recorded link appears exactly once.

use crate::model::{
    DesiredLink, DesiredState, Fingerprint, FxMap, FxSet, GroupId, IdentityKey, LinkKey, LinkSpec,
    Phase, Record, RemoteConnection, RemoteState,
};
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};

/// A COMPLETE listing of one project's connections (every page). A partial listing must not be
/// passed: absence from a listing is read as "gone from Atlas".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteListing {
    pub connections: Vec<RemoteConnection>,
}

/// Complete listings of the projects that were listed. A project without an entry was not listed,
/// which proves nothing about what exists there.
pub type Listings = BTreeMap<GroupId, RemoteListing>;

/// What the planner needs besides its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanSettings {
    /// How long after it was sent a create without an answer may still be committed by Atlas
    /// (`reconcile.settle_secs`). See the module documentation.
    pub settle_secs: i64,
}

impl PlanSettings {
    /// From the config's `reconcile.settle_secs`; a value past `i64::MAX` seconds is as good as forever.
    pub fn from_settle_secs(settle_secs: u64) -> PlanSettings {
        PlanSettings {
            settle_secs: i64::try_from(settle_secs).unwrap_or(i64::MAX),
        }
    }
}

/// Why a create is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CreateReason {
    /// Declared and never recorded.
    New,
    /// An intent left by a crash or an unknown outcome.
    Resume,
    /// After a failure: the delay is over, or the spec changed.
    Retry,
    /// Recorded as created or adopted, but gone from a complete listing.
    Recreate,
}

impl CreateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CreateReason::New => "new",
            CreateReason::Resume => "resume",
            CreateReason::Retry => "retry",
            CreateReason::Recreate => "recreate",
        }
    }
}

/// What a pass does about one link.
// The link and remote are boxed: a plan holds one action per link (100,000 and more), and
// unboxed, every action would take the size of the largest variant (about 700 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a create (after listing the project, if it has no listing yet).
    Create {
        link: Box<DesiredLink>,
        reason: CreateReason,
    },
    /// Record this existing remote connection as the link; no create.
    Adopt {
        link: Box<DesiredLink>,
        remote: Box<RemoteConnection>,
    },
    /// Created or adopted with the declared spec, and not known to be gone.
    Unchanged {
        key: LinkKey,
        atlas_id: String,
        remote_state: Option<RemoteState>,
    },
    /// Created or adopted with another spec. Reported, never deleted or recreated.
    Changed {
        key: LinkKey,
        atlas_id: Option<String>,
        recorded: Fingerprint,
        desired: Fingerprint,
    },
    /// Recorded but no longer declared. Reported, never deleted.
    Orphaned {
        key: LinkKey,
        atlas_id: Option<String>,
        phase: Phase,
    },
    /// Failed recently; the next attempt is not due yet.
    Waiting {
        key: LinkKey,
        until_unix: i64,
        attempts: u32,
        last_error: Option<String>,
    },
    /// Would be created, but an unclaimed connection of the project shares its identity and
    /// differs in `fields` (API names): neither adopted nor created beside. Reported.
    Conflict {
        link: Box<DesiredLink>,
        remote_id: String,
        fields: Vec<&'static str>,
    },
    /// Would be created, but an earlier create of it may still be committed by Atlas until
    /// `until_unix`: nothing is sent; a plan from a listing started at or after then decides.
    InFlight {
        link: Box<DesiredLink>,
        until_unix: i64,
    },
}

impl Action {
    pub fn key(&self) -> &LinkKey {
        match self {
            Action::Create { link, .. }
            | Action::Adopt { link, .. }
            | Action::Conflict { link, .. }
            | Action::InFlight { link, .. } => &link.key,
            Action::Unchanged { key, .. }
            | Action::Changed { key, .. }
            | Action::Orphaned { key, .. }
            | Action::Waiting { key, .. } => key,
        }
    }

    /// The category name used in JSON and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Adopt { .. } => "adopt",
            Action::Unchanged { .. } => "unchanged",
            Action::Changed { .. } => "changed",
            Action::Orphaned { .. } => "orphaned",
            Action::Waiting { .. } => "waiting",
            Action::Conflict { .. } => "conflict",
            Action::InFlight { .. } => "inflight",
        }
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let key = self.key();
        let fields = match self {
            Action::Create { .. } => 6,
            Action::Adopt { .. } => 6,
            Action::Unchanged { .. } => 4,
            Action::Changed { .. } => 5,
            Action::Orphaned { .. } => 5,
            Action::Waiting { .. } => 6,
            Action::Conflict { .. } => 5,
            Action::InFlight { .. } => 3,
        };
        let mut st = s.serialize_struct("Action", fields + 1)?;
        st.serialize_field("action", self.kind())?;
        st.serialize_field("groupId", &key.group_id)?;
        st.serialize_field("name", &key.name)?;
        match self {
            Action::Create { link, reason } => {
                st.serialize_field("reason", reason)?;
                st.serialize_field("fingerprint", &link.fingerprint)?;
                st.serialize_field("spec", &link.spec)?;
                st.serialize_field("source", &link.source.to_string())?;
            }
            Action::Adopt { link, remote } => {
                st.serialize_field("atlasId", &remote.id)?;
                st.serialize_field("remoteState", &remote.state)?;
                st.serialize_field("fingerprint", &link.fingerprint)?;
                st.serialize_field("source", &link.source.to_string())?;
            }
            Action::Unchanged {
                atlas_id,
                remote_state,
                ..
            } => {
                st.serialize_field("atlasId", atlas_id)?;
                st.serialize_field("remoteState", remote_state)?;
            }
            Action::Changed {
                atlas_id,
                recorded,
                desired,
                ..
            } => {
                st.serialize_field("atlasId", atlas_id)?;
                st.serialize_field("recordedFingerprint", recorded)?;
                st.serialize_field("desiredFingerprint", desired)?;
            }
            Action::Orphaned {
                atlas_id, phase, ..
            } => {
                st.serialize_field("atlasId", atlas_id)?;
                st.serialize_field("phase", phase)?;
            }
            Action::Waiting {
                until_unix,
                attempts,
                last_error,
                ..
            } => {
                st.serialize_field("untilUnix", until_unix)?;
                st.serialize_field("attempts", attempts)?;
                st.serialize_field("lastError", last_error)?;
            }
            Action::Conflict {
                link,
                remote_id,
                fields,
            } => {
                st.serialize_field("atlasId", remote_id)?;
                st.serialize_field("fields", fields)?;
                st.serialize_field("source", &link.source.to_string())?;
            }
            Action::InFlight { until_unix, .. } => {
                st.serialize_field("untilUnix", until_unix)?;
            }
        }
        st.end()
    }
}

/// How many actions of each category a plan holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PlanCounts {
    pub create: usize,
    pub adopt: usize,
    pub unchanged: usize,
    pub changed: usize,
    pub conflict: usize,
    pub orphaned: usize,
    pub waiting: usize,
    pub inflight: usize,
}

impl PlanCounts {
    pub fn total(&self) -> usize {
        self.create
            + self.adopt
            + self.unchanged
            + self.changed
            + self.conflict
            + self.orphaned
            + self.waiting
            + self.inflight
    }
}

/// Every action of a pass, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
}

impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Plan", 2)?;
        st.serialize_field("counts", &self.counts())?;
        st.serialize_field("actions", &self.actions)?;
        st.end()
    }
}

impl Plan {
    /// Projects with any create or create in flight: the executor lists each of them (completely)
    /// and plans again before creating anything, so a create never happens without a look at what
    /// exists, and a create that Atlas committed without answering is found and adopted.
    pub fn projects_to_list(&self) -> BTreeSet<GroupId> {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Create { .. } | Action::InFlight { .. }))
            .map(|a| a.key().group_id.clone())
            .collect()
    }

    /// Of `projects_to_list`, those that `listings` does not cover yet.
    pub fn projects_unlisted(&self, listings: &Listings) -> BTreeSet<GroupId> {
        let mut out = self.projects_to_list();
        out.retain(|g| !listings.contains_key(g));
        out
    }

    pub fn counts(&self) -> PlanCounts {
        let mut c = PlanCounts::default();
        for a in &self.actions {
            match a {
                Action::Create { .. } => c.create += 1,
                Action::Adopt { .. } => c.adopt += 1,
                Action::Unchanged { .. } => c.unchanged += 1,
                Action::Changed { .. } => c.changed += 1,
                Action::Orphaned { .. } => c.orphaned += 1,
                Action::Waiting { .. } => c.waiting += 1,
                Action::Conflict { .. } => c.conflict += 1,
                Action::InFlight { .. } => c.inflight += 1,
            }
        }
        c
    }
}

/// One project's listing, indexed: by id always, and for adoption and near-matches only when a
/// link needs it.
struct ProjectIndex<'a> {
    listing: &'a RemoteListing,
    by_id: FxMap<&'a str, &'a RemoteConnection>,
    adoption: OnceCell<AdoptionIndex<'a>>,
}

struct AdoptionIndex<'a> {
    /// The listing's connections, lowest id first, so the oldest (likeliest the original) wins.
    sorted: Vec<&'a RemoteConnection>,
    by_arn: FxMap<&'a str, Vec<usize>>,
    by_endpoint: FxMap<&'a str, Vec<usize>>,
    /// Indices into `sorted` by each identity key, for connections not being deleted (which are
    /// never near-matches). A near-match shares a key, so this narrows the search to those.
    by_identity: FxMap<IdentityKey, Vec<usize>>,
}

impl<'a> ProjectIndex<'a> {
    fn new(listing: &'a RemoteListing) -> Self {
        let mut by_id =
            FxMap::with_capacity_and_hasher(listing.connections.len(), Default::default());
        for c in &listing.connections {
            by_id.entry(c.id.as_str()).or_insert(c);
        }
        ProjectIndex {
            listing,
            by_id,
            adoption: OnceCell::new(),
        }
    }

    fn adoption(&self) -> &AdoptionIndex<'a> {
        self.adoption.get_or_init(|| {
            let mut sorted: Vec<&RemoteConnection> = self.listing.connections.iter().collect();
            sorted.sort_by(|a, b| a.id.cmp(&b.id));
            sorted.dedup_by(|a, b| a.id == b.id);
            let mut by_arn: FxMap<&str, Vec<usize>> = FxMap::default();
            let mut by_endpoint: FxMap<&str, Vec<usize>> = FxMap::default();
            let mut by_identity: FxMap<IdentityKey, Vec<usize>> = FxMap::default();
            for (i, c) in sorted.iter().enumerate() {
                if let Some(arn) = c.arn.as_deref() {
                    by_arn.entry(arn).or_default().push(i);
                }
                if let Some(ep) = c.service_endpoint_id.as_deref() {
                    by_endpoint.entry(ep).or_default().push(i);
                }
                if c.state.as_ref().is_some_and(RemoteState::is_deleting) {
                    continue;
                }
                for key in c.identity().keys {
                    by_identity.entry(key).or_default().push(i);
                }
            }
            AdoptionIndex {
                sorted,
                by_arn,
                by_endpoint,
                by_identity,
            }
        })
    }

    /// The lowest-id unclaimed connection that `spec` matches. `matches` compares `arn` and
    /// `serviceEndpointId` exactly, so when the spec sets one, only connections with the same
    /// value can match and the index narrows the scan.
    fn find(&self, spec: &LinkSpec, claimed: &FxSet<&str>) -> Option<&'a RemoteConnection> {
        let ix = self.adoption();
        let narrowed = if let Some(arn) = spec.arn.as_deref() {
            Some(ix.by_arn.get(arn).map(Vec::as_slice).unwrap_or(&[]))
        } else if let Some(ep) = spec.service_endpoint_id.as_deref() {
            Some(ix.by_endpoint.get(ep).map(Vec::as_slice).unwrap_or(&[]))
        } else {
            None
        };
        let ok = |c: &&RemoteConnection| !claimed.contains(c.id.as_str()) && spec.matches(c);
        match narrowed {
            Some(indices) => indices.iter().map(|&i| ix.sorted[i]).find(ok),
            None => ix.sorted.iter().copied().find(ok),
        }
    }

    /// The lowest-id unclaimed near-match of `spec`, with the fields that differ.
    fn near(
        &self,
        spec: &LinkSpec,
        claimed: &FxSet<&str>,
    ) -> Option<(&'a RemoteConnection, Vec<&'static str>)> {
        let ix = self.adoption();
        let mut candidates: Vec<usize> = spec
            .identity()
            .keys
            .iter()
            .filter_map(|k| ix.by_identity.get(k))
            .flatten()
            .copied()
            .collect();
        // Indices into `sorted`: ascending is lowest id first.
        candidates.sort_unstable();
        candidates.dedup();
        candidates.into_iter().find_map(|i| {
            let c = ix.sorted[i];
            if claimed.contains(c.id.as_str()) {
                return None;
            }
            spec.near_match(c).map(|fields| (c, fields))
        })
    }
}

/// Connection ids no further link may adopt. Built only when a first adoption is considered, so a
/// steady-state pass (nothing to create) never hashes every record.
struct Claimed<'a> {
    records: &'a [&'a Record],
    ids: Option<FxSet<&'a str>>,
}

impl<'a> Claimed<'a> {
    fn get(&mut self) -> &mut FxSet<&'a str> {
        let records = self.records;
        // Adoption is one-to-one: an id any record holds is taken, whatever that record's state.
        self.ids.get_or_insert_with(|| {
            records
                .iter()
                .filter_map(|r| r.atlas_id.as_deref())
                .collect()
        })
    }
}

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
    // Desired links come in key order (nested BTreeMaps); with records in key order too (as
    // `Ledger::records` returns them), one merge pass pairs them, finds the orphans and yields a
    // sorted plan, with no hashing and no sort.
    let mut sorted: Vec<&Record> = records.iter().collect();
    if !sorted.is_sorted_by(|a, b| a.key <= b.key) {
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
    }
    let mut claimed = Claimed {
        records: &sorted,
        ids: None,
    };
    let indexes: FxMap<&GroupId, ProjectIndex> = listings
        .iter()
        .map(|(g, l)| (g, ProjectIndex::new(l)))
        .collect();

    let orphan = |r: &Record| Action::Orphaned {
        key: r.key.clone(),
        atlas_id: r.atlas_id.clone(),
        phase: r.phase,
    };
    let mut pending = sorted.iter().copied().peekable();
    let mut actions = Vec::with_capacity(desired.link_count().max(records.len()));
    for link in desired.links() {
        while let Some(r) = pending.next_if(|r| r.key < link.key) {
            actions.push(orphan(r));
        }
        // A duplicated key in `records` cannot come from the ledger (it is the primary key);
        // the first one wins and the rest are skipped.
        let record = pending.next_if(|r| r.key == link.key);
        while pending.next_if(|r| r.key == link.key).is_some() {}
        let index = indexes.get(&link.key.group_id);
        let reason = match record {
            None => CreateReason::New,
            Some(r) => match r.phase {
                Phase::Created | Phase::Adopted => {
                    if !same_spec(r, link) {
                        actions.push(Action::Changed {
                            key: link.key.clone(),
                            atlas_id: r.atlas_id.clone(),
                            recorded: r.fingerprint,
                            desired: link.fingerprint,
                        });
                        continue;
                    }
                    match (&r.atlas_id, index) {
                        (Some(id), Some(ix)) if !ix.by_id.contains_key(id.as_str()) => {
                            CreateReason::Recreate
                        }
                        (Some(id), ix) => {
                            // A listing is fresher than the record.
                            let fresh = ix.and_then(|ix| ix.by_id.get(id.as_str()));
                            actions.push(Action::Unchanged {
                                key: link.key.clone(),
                                atlas_id: id.clone(),
                                remote_state: match fresh {
                                    Some(c) => c.state.clone(),
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
                Phase::Failed => {
                    let due = r.next_attempt_unix.is_none_or(|t| t <= now_unix);
                    if !due && same_spec(r, link) {
                        actions.push(Action::Waiting {
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
            && let Some(remote) = ix.find(&link.spec, claimed.get())
        {
            claimed.get().insert(remote.id.as_str());
            actions.push(Action::Adopt {
                link: Box::new(link.clone()),
                remote: Box::new(remote.clone()),
            });
        } else if let Some(ix) = index
            && let Some((remote, fields)) = ix.near(&link.spec, claimed.get())
        {
            actions.push(Action::Conflict {
                link: Box::new(link.clone()),
                remote_id: remote.id.clone(),
                fields,
            });
        } else if let Some(until_unix) = in_flight_until
            && now_unix < until_unix
        {
            actions.push(Action::InFlight {
                link: Box::new(link.clone()),
                until_unix,
            });
        } else {
            actions.push(Action::Create {
                link: Box::new(link.clone()),
                reason,
            });
        }
    }
    actions.extend(pending.map(orphan));
    Plan { actions }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuthScheme, DesiredProject, Provider, Source, Vendor};
    use std::path::PathBuf;

    const NOW: i64 = 1_700_000_000;
    const S: PlanSettings = PlanSettings { settle_secs: 30 };

    fn g(n: u8) -> GroupId {
        GroupId::parse(&format!("{:024x}", n)).unwrap()
    }

    fn msk(cluster: &str) -> LinkSpec {
        LinkSpec {
            arn: Some(format!(
                "arn:aws:kafka:us-east-1:123456789012:cluster/{cluster}/1"
            )),
            authentication_scheme: Some(AuthScheme::Iam),
            ..LinkSpec::new(Provider::Aws, Vendor::Msk)
        }
    }

    fn pubsub(region: &str) -> LinkSpec {
        LinkSpec {
            provider: Provider::Gcp,
            vendor: Vendor::Pubsub,
            region: Some(region.into()),
            arn: None,
            authentication_scheme: None,
            ..msk("x")
        }
    }

    fn link(group: u8, name: &str, spec: LinkSpec) -> DesiredLink {
        DesiredLink::new(
            LinkKey::new(g(group), name),
            spec,
            Source {
                file: PathBuf::from("m.yaml").into(),
                line: Some(3),
            },
        )
    }

    fn desired(links: &[DesiredLink]) -> DesiredState {
        let mut d = DesiredState::default();
        for l in links {
            d.projects
                .entry(l.key.group_id.clone())
                .or_insert_with(DesiredProject::default)
                .links
                .insert(l.key.name.clone(), l.clone());
        }
        d
    }

    fn remote(id: &str, spec: &LinkSpec) -> RemoteConnection {
        RemoteConnection {
            id: id.into(),
            provider: Some(spec.provider.as_str().into()),
            vendor: Some(spec.vendor.as_str().into()),
            region: spec.region.clone().or(Some("us-east-1".into())),
            arn: spec.arn.clone(),
            state: Some(RemoteState::Done),
            ..Default::default()
        }
    }

    fn record(l: &DesiredLink, phase: Phase, atlas_id: Option<&str>) -> Record {
        Record {
            key: l.key.clone(),
            spec_json: l.spec.to_json(),
            fingerprint: l.fingerprint,
            atlas_id: atlas_id.map(str::to_owned),
            phase,
            remote_state: Some(RemoteState::Working),
            remote_error: None,
            attempts: 0,
            last_error: None,
            next_attempt_unix: None,
            sent_unix: None,
            outputs: Default::default(),
            created_unix: 1,
            updated_unix: 1,
        }
    }

    fn failed(l: &DesiredLink, next: i64) -> Record {
        Record {
            attempts: 2,
            last_error: Some("503".into()),
            next_attempt_unix: Some(next),
            ..record(l, Phase::Failed, None)
        }
    }

    fn listing(group: u8, conns: Vec<RemoteConnection>) -> Listings {
        Listings::from([(g(group), RemoteListing { connections: conns })])
    }

    fn only(p: &Plan) -> &Action {
        assert_eq!(p.actions.len(), 1, "{:?}", p.actions);
        &p.actions[0]
    }

    fn reason(a: &Action) -> CreateReason {
        match a {
            Action::Create { reason, .. } => *reason,
            other => panic!("expected a create, got {other:?}"),
        }
    }

    #[test]
    fn new_link_without_listing_is_a_new_create_and_asks_for_a_listing() {
        let a = link(1, "a", msk("a"));
        let p = plan(&desired(&[a]), &[], &Listings::new(), NOW, &S);
        assert_eq!(reason(only(&p)), CreateReason::New);
        assert_eq!(p.projects_to_list(), BTreeSet::from([g(1)]));
        assert_eq!(
            p.projects_unlisted(&Listings::new()),
            BTreeSet::from([g(1)])
        );
        assert!(p.projects_unlisted(&listing(1, vec![])).is_empty());
    }

    #[test]
    fn new_link_with_a_match_in_the_listing_is_adopted() {
        let a = link(1, "a", msk("a"));
        let l = listing(
            1,
            vec![remote("r1", &msk("other")), remote("r2", &msk("a"))],
        );
        let p = plan(&desired(&[a]), &[], &l, NOW, &S);
        match only(&p) {
            Action::Adopt { remote, .. } => assert_eq!(remote.id, "r2"),
            other => panic!("{other:?}"),
        }
        assert!(p.projects_to_list().is_empty());
    }

    #[test]
    fn new_link_with_listing_but_no_match_is_created() {
        let a = link(1, "a", msk("a"));
        let l = listing(1, vec![remote("r1", &msk("other"))]);
        let p = plan(&desired(&[a]), &[], &l, NOW, &S);
        assert_eq!(reason(only(&p)), CreateReason::New);
    }

    #[test]
    fn intent_resumes_or_adopts() {
        let a = link(1, "a", msk("a"));
        let recs = [record(&a, Phase::Intent, None)];
        let d = desired(std::slice::from_ref(&a));
        let p = plan(&d, &recs, &Listings::new(), NOW, &S);
        assert_eq!(reason(only(&p)), CreateReason::Resume);
        let p = plan(
            &d,
            &recs,
            &listing(1, vec![remote("r9", &msk("a"))]),
            NOW,
            &S,
        );
        assert!(matches!(only(&p), Action::Adopt { remote, .. } if remote.id == "r9"));
    }

    #[test]
    fn failed_waits_until_due_then_retries() {
        let a = link(1, "a", msk("a"));
        let d = desired(std::slice::from_ref(&a));
        let p = plan(&d, &[failed(&a, NOW + 30)], &Listings::new(), NOW, &S);
        match only(&p) {
            Action::Waiting {
                until_unix,
                attempts,
                last_error,
                ..
            } => {
                assert_eq!((*until_unix, *attempts), (NOW + 30, 2));
                assert_eq!(last_error.as_deref(), Some("503"));
            }
            other => panic!("{other:?}"),
        }
        assert!(p.projects_to_list().is_empty());
        let p = plan(&d, &[failed(&a, NOW)], &Listings::new(), NOW, &S);
        assert_eq!(reason(only(&p)), CreateReason::Retry);
    }

    #[test]
    fn failed_with_a_fixed_manifest_retries_now() {
        let old = link(1, "a", msk("typo"));
        let fixed = link(1, "a", msk("a"));
        let p = plan(
            &desired(&[fixed]),
            &[failed(&old, NOW + 3600)],
            &Listings::new(),
            NOW,
            &S,
        );
        assert_eq!(reason(only(&p)), CreateReason::Retry);
    }

    #[test]
    fn created_same_spec_is_unchanged_with_the_freshest_state() {
        let a = link(1, "a", msk("a"));
        let d = desired(std::slice::from_ref(&a));
        let recs = [record(&a, Phase::Created, Some("r1"))];
        let p = plan(&d, &recs, &Listings::new(), NOW, &S);
        assert_eq!(
            only(&p),
            &Action::Unchanged {
                key: a.key.clone(),
                atlas_id: "r1".into(),
                remote_state: Some(RemoteState::Working)
            }
        );
        let p = plan(
            &d,
            &recs,
            &listing(1, vec![remote("r1", &msk("a"))]),
            NOW,
            &S,
        );
        assert!(matches!(
            only(&p),
            Action::Unchanged {
                remote_state: Some(RemoteState::Done),
                ..
            }
        ));
    }

    #[test]
    fn gone_from_a_complete_listing_is_recreated_but_absence_of_a_listing_proves_nothing() {
        let a = link(1, "a", msk("a"));
        let d = desired(std::slice::from_ref(&a));
        let recs = [record(&a, Phase::Adopted, Some("r1"))];
        let p = plan(&d, &recs, &listing(1, vec![]), NOW, &S);
        assert_eq!(reason(only(&p)), CreateReason::Recreate);
        // Another project's listing says nothing about this one.
        let p = plan(&d, &recs, &listing(2, vec![]), NOW, &S);
        assert!(matches!(only(&p), Action::Unchanged { .. }));
    }

    #[test]
    fn partial_view_never_yields_recreate() {
        // Many created links across projects, listings for none of them.
        let links: Vec<_> = (0..20u8)
            .map(|i| link(i % 4, &format!("l{i}"), msk(&format!("c{i}"))))
            .collect();
        let recs: Vec<_> = links
            .iter()
            .enumerate()
            .map(|(i, l)| record(l, Phase::Created, Some(&format!("id{i}"))))
            .collect();
        let p = plan(&desired(&links), &recs, &Listings::new(), NOW, &S);
        assert_eq!(p.counts().unchanged, 20);
        assert!(p.actions.iter().all(|a| !matches!(
            a,
            Action::Create {
                reason: CreateReason::Recreate,
                ..
            }
        )));
    }

    #[test]
    fn gone_but_an_unclaimed_match_exists_is_adopted_not_recreated() {
        let a = link(1, "a", msk("a"));
        let recs = [record(&a, Phase::Created, Some("r1"))];
        let l = listing(1, vec![remote("r7", &msk("a"))]);
        let p = plan(&desired(std::slice::from_ref(&a)), &recs, &l, NOW, &S);
        assert!(matches!(only(&p), Action::Adopt { remote, .. } if remote.id == "r7"));
    }

    #[test]
    fn created_without_an_id_resumes() {
        let a = link(1, "a", msk("a"));
        let recs = [record(&a, Phase::Created, None)];
        let p = plan(&desired(&[a]), &recs, &Listings::new(), NOW, &S);
        assert_eq!(reason(only(&p)), CreateReason::Resume);
    }

    #[test]
    fn unsorted_records_still_give_a_sorted_plan_with_each_key_once() {
        let links: Vec<_> = ["b", "d", "f"].iter().map(|n| link(1, n, msk(n))).collect();
        let gone: Vec<_> = ["a", "c", "e", "g"]
            .iter()
            .map(|n| link(1, n, msk(n)))
            .collect();
        let mut recs: Vec<_> = links
            .iter()
            .chain(&gone)
            .map(|l| record(l, Phase::Created, Some(l.key.name.as_str())))
            .collect();
        recs.reverse();
        let p = plan(&desired(&links), &recs, &Listings::new(), NOW, &S);
        let got: Vec<_> = p
            .actions
            .iter()
            .map(|a| (a.key().name.as_str(), a.kind()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "orphaned"),
                ("b", "unchanged"),
                ("c", "orphaned"),
                ("d", "unchanged"),
                ("e", "orphaned"),
                ("f", "unchanged"),
                ("g", "orphaned")
            ]
        );
    }

    #[test]
    fn actions_stay_small() {
        // One action per link: the big payloads are boxed so 100,000 actions stay a few MB.
        assert!(
            std::mem::size_of::<Action>() <= 160,
            "{}",
            std::mem::size_of::<Action>()
        );
    }

    #[test]
    fn changed_spec_is_reported_never_recreated() {
        let old = link(1, "a", msk("old"));
        let new = link(1, "a", msk("new"));
        let recs = [record(&old, Phase::Created, Some("r1"))];
        // Even with the old connection gone from a complete listing.
        let p = plan(
            &desired(std::slice::from_ref(&new)),
            &recs,
            &listing(1, vec![]),
            NOW,
            &S,
        );
        assert_eq!(
            only(&p),
            &Action::Changed {
                key: new.key.clone(),
                atlas_id: Some("r1".into()),
                recorded: old.fingerprint,
                desired: new.fingerprint,
            }
        );
    }

    #[test]
    fn undeclared_records_are_orphaned() {
        let a = link(1, "a", msk("a"));
        let recs = [record(&a, Phase::Created, Some("r1"))];
        let p = plan(
            &DesiredState::default(),
            &recs,
            &listing(1, vec![]),
            NOW,
            &S,
        );
        assert_eq!(
            only(&p),
            &Action::Orphaned {
                key: a.key.clone(),
                atlas_id: Some("r1".into()),
                phase: Phase::Created
            }
        );
    }

    #[test]
    fn adoption_is_one_to_one_in_key_order() {
        // Two links with the same spec, one matching remote: the first key adopts, the second creates.
        let a = link(1, "a", pubsub("europe-west1"));
        let b = link(1, "b", pubsub("europe-west1"));
        let l = listing(1, vec![remote("r1", &pubsub("europe-west1"))]);
        let p = plan(&desired(&[b.clone(), a.clone()]), &[], &l, NOW, &S);
        assert!(
            matches!(&p.actions[0], Action::Adopt { link, remote } if link.key == a.key && remote.id == "r1")
        );
        assert!(matches!(&p.actions[1], Action::Create { link, .. } if link.key == b.key));
        // With two remotes, each link gets its own, lowest id first.
        let l = listing(
            1,
            vec![
                remote("r2", &pubsub("europe-west1")),
                remote("r1", &pubsub("europe-west1")),
            ],
        );
        let p = plan(&desired(&[a, b]), &[], &l, NOW, &S);
        let ids: Vec<_> = p
            .actions
            .iter()
            .map(|a| match a {
                Action::Adopt { remote, .. } => remote.id.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, ["r1", "r2"]);
    }

    #[test]
    fn a_connection_held_by_any_record_is_not_adoptable() {
        let held = link(1, "held", msk("a"));
        let a = link(1, "a", msk("a"));
        // `held` is orphaned (no longer declared) but still holds r1.
        let recs = [record(&held, Phase::Adopted, Some("r1"))];
        let p = plan(
            &desired(std::slice::from_ref(&a)),
            &recs,
            &listing(1, vec![remote("r1", &msk("a"))]),
            NOW,
            &S,
        );
        assert_eq!(reason(&p.actions[0]), CreateReason::New);
        assert!(matches!(&p.actions[1], Action::Orphaned { .. }));
    }

    #[test]
    fn deleting_remote_is_not_adopted() {
        let a = link(1, "a", msk("a"));
        let mut r = remote("r1", &msk("a"));
        r.state = Some(RemoteState::Deleting);
        let p = plan(&desired(&[a]), &[], &listing(1, vec![r]), NOW, &S);
        assert_eq!(reason(only(&p)), CreateReason::New);
    }

    /// A connection to the same cluster as `msk(cluster)` but with Atlas's default scheme.
    fn scram(id: &str, cluster: &str) -> RemoteConnection {
        RemoteConnection {
            authentication_scheme: Some("SASL_SCRAM".into()),
            ..remote(id, &msk(cluster))
        }
    }

    fn conflict(a: &Action) -> (&str, &[&'static str]) {
        match a {
            Action::Conflict {
                remote_id, fields, ..
            } => (remote_id.as_str(), fields.as_slice()),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    fn intent_sent(l: &DesiredLink, sent: i64) -> Record {
        Record {
            sent_unix: Some(sent),
            ..record(l, Phase::Intent, None)
        }
    }

    #[test]
    fn a_near_match_is_a_conflict_not_a_create() {
        let a = link(1, "a", msk("a"));
        let l = listing(1, vec![scram("r1", "a"), remote("r0", &msk("other"))]);
        let p = plan(&desired(std::slice::from_ref(&a)), &[], &l, NOW, &S);
        assert_eq!(conflict(only(&p)), ("r1", &["authenticationScheme"][..]));
        assert!(p.projects_to_list().is_empty());
        let c = p.counts();
        assert_eq!((c.conflict, c.create, c.total()), (1, 0, 1));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["counts"]["conflict"], 1);
        assert_eq!(
            json["actions"][0],
            serde_json::json!({
                "action": "conflict",
                "groupId": g(1).to_string(),
                "name": "a",
                "atlasId": "r1",
                "fields": ["authenticationScheme"],
                "source": "m.yaml:3",
            })
        );
    }

    #[test]
    fn a_near_match_also_stops_a_recreate_a_resume_and_a_retry() {
        let a = link(1, "a", msk("a"));
        let d = desired(std::slice::from_ref(&a));
        let l = listing(1, vec![scram("r2", "a")]);
        for rec in [
            record(&a, Phase::Created, Some("r1")),
            record(&a, Phase::Intent, None),
            failed(&a, NOW),
        ] {
            let p = plan(&d, std::slice::from_ref(&rec), &l, NOW, &S);
            assert_eq!(conflict(only(&p)).0, "r2", "{rec:?}");
        }
    }

    #[test]
    fn near_matches_lowest_id_first_and_a_match_wins_over_any() {
        let a = link(1, "a", msk("a"));
        let d = desired(std::slice::from_ref(&a));
        let p = plan(
            &d,
            &[],
            &listing(1, vec![scram("r3", "a"), scram("r2", "a")]),
            NOW,
            &S,
        );
        assert_eq!(conflict(only(&p)).0, "r2");
        // A match is adopted even when a near-match has a lower id.
        let l = listing(1, vec![scram("r1", "a"), remote("r9", &msk("a"))]);
        let p = plan(&d, &[], &l, NOW, &S);
        assert!(matches!(only(&p), Action::Adopt { remote, .. } if remote.id == "r9"));
    }

    #[test]
    fn claimed_and_deleting_connections_are_not_near_matches() {
        let a = link(1, "a", msk("a"));
        // r1 is held by an orphaned record.
        let held = link(1, "held", msk("a"));
        let recs = [record(&held, Phase::Created, Some("r1"))];
        let p = plan(
            &desired(std::slice::from_ref(&a)),
            &recs,
            &listing(1, vec![scram("r1", "a")]),
            NOW,
            &S,
        );
        assert_eq!(reason(&p.actions[0]), CreateReason::New);

        // r1 is adopted by an earlier link of the same plan (`b` asks for TLS on the same cluster).
        let b = link(
            1,
            "b",
            LinkSpec {
                authentication_scheme: Some(AuthScheme::Tls),
                ..msk("a")
            },
        );
        let p = plan(
            &desired(&[a.clone(), b]),
            &[],
            &listing(1, vec![remote("r1", &msk("a"))]),
            NOW,
            &S,
        );
        assert!(matches!(&p.actions[0], Action::Adopt { remote, .. } if remote.id == "r1"));
        assert_eq!(reason(&p.actions[1]), CreateReason::New);

        let mut deleting = scram("r1", "a");
        deleting.state = Some(RemoteState::DeleteRequested);
        let p = plan(
            &desired(std::slice::from_ref(&a)),
            &[],
            &listing(1, vec![deleting]),
            NOW,
            &S,
        );
        assert_eq!(reason(only(&p)), CreateReason::New);

        // Another project's connections are never compared.
        let p = plan(
            &desired(&[a]),
            &[],
            &listing(2, vec![scram("r1", "a")]),
            NOW,
            &S,
        );
        assert_eq!(reason(only(&p)), CreateReason::New);
    }

    #[test]
    fn a_create_sent_without_an_answer_is_in_flight_until_settled() {
        let a = link(1, "a", msk("a"));
        let d = desired(std::slice::from_ref(&a));
        let sent = NOW - 29;
        let recs = [intent_sent(&a, sent)];
        // Without a listing and with an empty one alike: Atlas may still commit it.
        for l in [Listings::new(), listing(1, vec![])] {
            let p = plan(&d, &recs, &l, NOW, &S);
            match only(&p) {
                Action::InFlight { link, until_unix } => {
                    assert_eq!(link.key, a.key);
                    assert_eq!(*until_unix, sent + 30);
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(p.projects_to_list(), BTreeSet::from([g(1)]));
            assert_eq!(p.counts().inflight, 1);
        }
        // At `until`, a listing started then decides: nothing there, so create again.
        let p = plan(&d, &recs, &listing(1, vec![]), sent + 30, &S);
        assert_eq!(reason(only(&p)), CreateReason::Resume);
        let p = plan(&d, &recs, &listing(1, vec![]), sent + 29, &S);
        assert!(matches!(only(&p), Action::InFlight { .. }));

        let json = serde_json::to_value(plan(&d, &recs, &Listings::new(), NOW, &S)).unwrap();
        assert_eq!(
            json["actions"][0],
            serde_json::json!({
                "action": "inflight",
                "groupId": g(1).to_string(),
                "name": "a",
                "untilUnix": sent + 30,
            })
        );
        assert_eq!(json["counts"]["inflight"], 1);
    }

    #[test]
    fn in_flight_with_a_match_adopts_and_with_a_near_match_conflicts() {
        let a = link(1, "a", msk("a"));
        let d = desired(std::slice::from_ref(&a));
        let recs = [intent_sent(&a, NOW)];
        let p = plan(
            &d,
            &recs,
            &listing(1, vec![remote("r1", &msk("a"))]),
            NOW,
            &S,
        );
        assert!(matches!(only(&p), Action::Adopt { remote, .. } if remote.id == "r1"));
        let p = plan(&d, &recs, &listing(1, vec![scram("r1", "a")]), NOW, &S);
        assert_eq!(conflict(only(&p)).0, "r1");
    }

    #[test]
    fn a_failed_create_waits_first_then_settles_then_retries() {
        let a = link(1, "a", msk("a"));
        let d = desired(std::slice::from_ref(&a));
        let sent = NOW - 10;
        let with_sent = |next: i64| Record {
            sent_unix: Some(sent),
            ..failed(&a, next)
        };
        // Not due: waiting, whatever the window.
        let p = plan(&d, &[with_sent(NOW + 5)], &Listings::new(), NOW, &S);
        assert!(matches!(only(&p), Action::Waiting { .. }));
        // Due, but still in flight.
        let p = plan(&d, &[with_sent(NOW)], &listing(1, vec![]), NOW, &S);
        assert!(
            matches!(only(&p), Action::InFlight { until_unix, .. } if *until_unix == sent + 30)
        );
        // Due and settled.
        let p = plan(&d, &[with_sent(NOW)], &listing(1, vec![]), sent + 30, &S);
        assert_eq!(reason(only(&p)), CreateReason::Retry);
        // A fixed manifest retries at once, but not while the old create may still land.
        let old = link(1, "a", msk("typo"));
        let rec = Record {
            sent_unix: Some(sent),
            ..failed(&old, NOW + 3600)
        };
        let p = plan(&d, std::slice::from_ref(&rec), &Listings::new(), NOW, &S);
        assert!(matches!(only(&p), Action::InFlight { .. }));
        let p = plan(&d, &[rec], &listing(1, vec![]), sent + 30, &S);
        assert_eq!(reason(only(&p)), CreateReason::Retry);
    }

    #[test]
    fn only_intents_and_failures_are_in_flight_and_the_window_saturates() {
        let a = link(1, "a", msk("a"));
        let d = desired(std::slice::from_ref(&a));
        // Answered creates are not in flight: gone from a listing, they are recreated.
        let created = Record {
            sent_unix: Some(NOW),
            ..record(&a, Phase::Created, Some("r1"))
        };
        let p = plan(&d, &[created], &listing(1, vec![]), NOW, &S);
        assert_eq!(reason(only(&p)), CreateReason::Recreate);
        // An intent without a send time (never sent) is resumed at once.
        let p = plan(
            &d,
            &[record(&a, Phase::Intent, None)],
            &listing(1, vec![]),
            NOW,
            &S,
        );
        assert_eq!(reason(only(&p)), CreateReason::Resume);
        let p = plan(
            &d,
            &[intent_sent(&a, i64::MAX - 5)],
            &Listings::new(),
            NOW,
            &S,
        );
        assert!(matches!(only(&p), Action::InFlight { until_unix, .. } if *until_unix == i64::MAX));
        let never = PlanSettings::from_settle_secs(u64::MAX);
        assert_eq!(never.settle_secs, i64::MAX);
        let p = plan(&d, &[intent_sent(&a, NOW)], &Listings::new(), NOW, &never);
        assert!(matches!(only(&p), Action::InFlight { until_unix, .. } if *until_unix == i64::MAX));
    }

    #[test]
    fn a_record_fingerprinted_before_canonical_regions_is_not_changed() {
        use sha2::{Digest, Sha256};
        let spec = LinkSpec {
            region: Some("US_EAST_1".into()),
            ..LinkSpec::new(Provider::Aws, Vendor::Kinesis)
        };
        let a = link(1, "a", spec);
        // The old fingerprint: the body's JSON, region as written.
        let old = Fingerprint(Sha256::digest(a.spec.to_json().as_bytes()).into());
        assert_ne!(old, a.fingerprint);
        let rec = Record {
            fingerprint: old,
            ..record(&a, Phase::Created, Some("r1"))
        };
        let p = plan(
            &desired(std::slice::from_ref(&a)),
            &[rec],
            &Listings::new(),
            NOW,
            &S,
        );
        assert!(matches!(only(&p), Action::Unchanged { .. }), "{p:?}");
    }

    #[test]
    fn actions_are_sorted_and_counted_and_serialise_stably() {
        let a = link(2, "a", msk("a"));
        let b = link(1, "z", msk("z"));
        let orphan = link(1, "m", msk("m"));
        let recs = [record(&orphan, Phase::Failed, None)];
        let p = plan(&desired(&[a, b]), &recs, &Listings::new(), NOW, &S);
        let keys: Vec<_> = p.actions.iter().map(|a| a.key().to_string()).collect();
        assert_eq!(
            keys,
            [
                format!("{}/m", g(1)),
                format!("{}/z", g(1)),
                format!("{}/a", g(2))
            ]
        );
        let c = p.counts();
        assert_eq!((c.create, c.orphaned, c.total()), (2, 1, 3));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["counts"]["create"], 2);
        assert_eq!(json["actions"][0]["action"], "orphaned");
        assert_eq!(json["actions"][0]["phase"], "failed");
        assert_eq!(json["actions"][1]["action"], "create");
        assert_eq!(json["actions"][1]["reason"], "new");
        assert_eq!(json["actions"][1]["groupId"], g(1).to_string());
        assert_eq!(json["actions"][1]["spec"]["vendor"], "MSK");
        assert_eq!(json["actions"][1]["source"], "m.yaml:3");
    }
}
