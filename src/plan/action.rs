//! What a plan says to do: the actions (`Action`, `CreateReason`), the plan and its counts, and
//! their stable JSON form (the shape is in the module documentation of `plan`).

use super::{Duplicate, Unmanaged};
use crate::model::{
    DesiredLink, Fingerprint, GroupId, LinkKey, Phase, RemoteConnection, RemoteState,
};
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};
use std::collections::BTreeSet;

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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CreateReason::New => "new",
            CreateReason::Resume => "resume",
            CreateReason::Retry => "retry",
            CreateReason::Recreate => "recreate",
        }
    }
}

/// Why a link whose spec changed is reported `changed` rather than updated in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangedWhy {
    /// A field other than `dnsDomain` differs: Atlas updates none in place, and atlas-linkd never
    /// replaces a connection.
    Spec,
    /// Only `dnsDomain` differs, and no listing of this pass shows the connection yet: the pass
    /// lists the project and decides then.
    DnsDomainUnlisted,
    /// Only `dnsDomain` differs, but the connection has a domain and a state in which Atlas refuses
    /// the PATCH (`None`: the listing showed no state).
    DnsDomainRefused { state: Option<RemoteState> },
    /// Only `dnsDomain` differs, but the project's complete listing does not show the connection.
    DnsDomainNotListed,
    /// The manifest drops `dnsDomain`: a PATCH can set a domain, never remove one.
    DnsDomainRemoved,
}

impl ChangedWhy {
    /// The report's words; `None` for `Spec`, whose words the report has always used.
    pub(crate) fn reason(&self) -> Option<String> {
        Some(match self {
            ChangedWhy::Spec => return None,
            ChangedWhy::DnsDomainUnlisted => "only dnsDomain differs; a listing of the project decides whether it can be updated".to_owned(),
            ChangedWhy::DnsDomainRefused { state } => format!(
                "dnsDomain can be updated only while the connection is IDLE or has no domain; it is {}",
                state.as_ref().map_or("of unknown state", RemoteState::as_str)
            ),
            ChangedWhy::DnsDomainNotListed => "only dnsDomain differs, but the connection is not in the project's listing; nothing to update".to_owned(),
            ChangedWhy::DnsDomainRemoved => "the manifest removes dnsDomain; Atlas can set a domain in place but not remove one (delete the connection in Atlas to have it recreated)".to_owned(),
        })
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
    /// Created or adopted with a spec that differs only in `dnsDomain`, and listed `IDLE` or
    /// without a domain: PATCH the domain, then record the declared spec.
    Update {
        link: Box<DesiredLink>,
        atlas_id: String,
        remote_state: Option<RemoteState>,
        recorded: Fingerprint,
    },
    /// Created or adopted with another spec. Reported, never deleted or recreated.
    Changed {
        key: LinkKey,
        atlas_id: Option<String>,
        recorded: Fingerprint,
        desired: Fingerprint,
        why: ChangedWhy,
    },
    /// Recorded but no longer declared, and not deleted in this pass. `hold` says what holds a
    /// prune candidate back (`None`: not a candidate, e.g. a create that never succeeded).
    Orphaned {
        key: LinkKey,
        atlas_id: Option<String>,
        phase: Phase,
        undeclared_since_unix: Option<i64>,
        hold: Option<Hold>,
    },
    /// Guarded prune: delete this undeclared connection, which a complete listing of this pass shows.
    Delete { key: LinkKey, atlas_id: String },
    /// Atlas accepted its delete earlier. `gone`: a complete listing of this pass no longer shows
    /// it, so its record goes; `listed`: its project was listed.
    Deleting {
        key: LinkKey,
        atlas_id: Option<String>,
        listed: bool,
        gone: bool,
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
    /// Declared without a record, and the undeclared record `from` of its project holds connection
    /// `atlas_id`, made from exactly this spec: the link was renamed. The record moves to the new
    /// name; nothing is sent to Atlas.
    Rename {
        link: Box<DesiredLink>,
        from: LinkKey,
        atlas_id: String,
    },
    /// Declared without a record, and more than one undeclared record of its project could be it
    /// renamed (or its one candidate could be another link's too): nothing is moved and nothing
    /// created until the manifests say which. Reported with the candidates.
    RenameUnclear {
        link: Box<DesiredLink>,
        candidates: Vec<LinkKey>,
    },
}

impl Action {
    pub fn key(&self) -> &LinkKey {
        match self {
            Action::Create { link, .. }
            | Action::Adopt { link, .. }
            | Action::Conflict { link, .. }
            | Action::InFlight { link, .. }
            | Action::Update { link, .. }
            | Action::Rename { link, .. }
            | Action::RenameUnclear { link, .. } => &link.key,
            Action::Unchanged { key, .. }
            | Action::Changed { key, .. }
            | Action::Orphaned { key, .. }
            | Action::Waiting { key, .. }
            | Action::Delete { key, .. }
            | Action::Deleting { key, .. } => key,
        }
    }

    /// Whether its project must be listed (completely) before the pass acts on it: a create, a
    /// create that may be in flight, a `dnsDomain` change (only a listing shows whether Atlas takes
    /// the PATCH), a prune candidate held back only for want of a listing, and a deletion not yet
    /// seen through. See `Plan::projects_to_list`.
    pub fn needs_listing(&self) -> bool {
        matches!(
            self,
            Action::Create { .. }
                | Action::InFlight { .. }
                | Action::Update { .. }
                | Action::Changed {
                    why: ChangedWhy::DnsDomainUnlisted,
                    ..
                }
                | Action::Orphaned {
                    hold: Some(Hold::NotListed),
                    ..
                }
                | Action::Deleting { listed: false, .. }
        )
    }

    /// The category name used in JSON and reports.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Adopt { .. } => "adopt",
            Action::Unchanged { .. } => "unchanged",
            Action::Update { .. } => "update",
            Action::Changed { .. } => "changed",
            Action::Orphaned { .. } => "orphaned",
            Action::Waiting { .. } => "waiting",
            Action::Conflict { .. } => "conflict",
            Action::InFlight { .. } => "inflight",
            Action::Rename { .. } => "rename",
            Action::RenameUnclear { .. } => "renameunclear",
            Action::Delete { .. } => "delete",
            Action::Deleting { .. } => "deleting",
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
            Action::Update { .. } => 8,
            Action::Changed { .. } => 6,
            Action::Orphaned { .. } => 6,
            Action::Delete { .. } => 4,
            Action::Deleting { .. } => 5,
            Action::Waiting { .. } => 5,
            Action::Conflict { .. } => 5,
            Action::InFlight { .. } => 3,
            Action::Rename { .. } => 5,
            Action::RenameUnclear { .. } => 4,
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
            Action::Update {
                link,
                atlas_id,
                remote_state,
                recorded,
            } => {
                st.serialize_field("atlasId", atlas_id)?;
                st.serialize_field("remoteState", remote_state)?;
                st.serialize_field("dnsDomain", &link.spec.dns_domain)?;
                st.serialize_field("recordedFingerprint", recorded)?;
                st.serialize_field("desiredFingerprint", &link.fingerprint)?;
                st.serialize_field("source", &link.source.to_string())?;
            }
            Action::Changed {
                atlas_id,
                recorded,
                desired,
                why,
                ..
            } => {
                st.serialize_field("atlasId", atlas_id)?;
                st.serialize_field("recordedFingerprint", recorded)?;
                st.serialize_field("desiredFingerprint", desired)?;
                st.serialize_field("reason", &why.reason())?;
            }
            Action::Orphaned {
                atlas_id,
                phase,
                undeclared_since_unix,
                hold,
                ..
            } => {
                st.serialize_field("atlasId", atlas_id)?;
                st.serialize_field("phase", phase)?;
                st.serialize_field("undeclaredSinceUnix", undeclared_since_unix)?;
                st.serialize_field("hold", hold)?;
            }
            Action::Delete { atlas_id, .. } => {
                st.serialize_field("atlasId", atlas_id)?;
            }
            Action::Deleting { atlas_id, gone, .. } => {
                st.serialize_field("atlasId", atlas_id)?;
                st.serialize_field("gone", gone)?;
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
            Action::Rename {
                link,
                from,
                atlas_id,
            } => {
                st.serialize_field("atlasId", atlas_id)?;
                st.serialize_field("renamedFrom", &from.name)?;
                st.serialize_field("fingerprint", &link.fingerprint)?;
                st.serialize_field("source", &link.source.to_string())?;
            }
            Action::RenameUnclear { link, candidates } => {
                let names: Vec<&str> = candidates.iter().map(|k| k.name.as_str()).collect();
                st.serialize_field("candidates", &names)?;
                st.serialize_field("fingerprint", &link.fingerprint)?;
                st.serialize_field("source", &link.source.to_string())?;
            }
        }
        st.end()
    }
}

/// How many actions of each category a plan holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PlanCounts {
    pub(crate) create: usize,
    pub adopt: usize,
    pub unchanged: usize,
    pub(crate) update: usize,
    pub(crate) changed: usize,
    pub(crate) conflict: usize,
    pub(crate) orphaned: usize,
    pub(crate) waiting: usize,
    pub(crate) inflight: usize,
    pub(crate) delete: usize,
    pub(crate) deleting: usize,
    pub(crate) rename: usize,
    pub(crate) rename_unclear: usize,
}

/// Every action of a pass, sorted by key, and the unmanaged connections of the listed projects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Sorted by project, then id.
    pub unmanaged: Vec<Unmanaged>,
    /// Copies of declared links that a record already holds, sorted by project, then id.
    pub duplicates: Vec<Duplicate>,
}

impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Plan", 4)?;
        st.serialize_field("counts", &self.counts())?;
        st.serialize_field("actions", &self.actions)?;
        st.serialize_field("unmanaged", &self.unmanaged)?;
        st.serialize_field("duplicates", &self.duplicates)?;
        st.end()
    }
}

/// What holds a prune candidate back (see "Guarded prune" in `plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    Disabled,
    NoLinksDeclared,
    InUse {
        until_unix: i64,
    },
    Failed {
        until_unix: i64,
        last_error: Option<String>,
    },
    Grace {
        until_unix: i64,
    },
    NotListed,
    Gone,
    Cap,
    /// A declared link without a record has this record's spec, and so does another record or
    /// link: it may be that link renamed (`RenameUnclear`).
    MaybeRenamed,
}

impl Hold {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Hold::Disabled => "disabled",
            Hold::NoLinksDeclared => "no_links_declared",
            Hold::InUse { .. } => "in_use",
            Hold::Failed { .. } => "failed",
            Hold::Grace { .. } => "grace",
            Hold::NotListed => "not_listed",
            Hold::Gone => "gone",
            Hold::Cap => "cap",
            Hold::MaybeRenamed => "maybe_renamed",
        }
    }
}

impl Serialize for Hold {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Hold", 3)?;
        st.serialize_field("reason", self.as_str())?;
        match self {
            Hold::InUse { until_unix } | Hold::Grace { until_unix } => {
                st.serialize_field("untilUnix", until_unix)?;
            }
            Hold::Failed {
                until_unix,
                last_error,
            } => {
                st.serialize_field("untilUnix", until_unix)?;
                st.serialize_field("lastError", last_error)?;
            }
            _ => {}
        }
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
            .filter(|a| a.needs_listing())
            .map(|a| a.key().group_id.clone())
            .collect()
    }

    pub fn counts(&self) -> PlanCounts {
        let mut c = PlanCounts::default();
        for a in &self.actions {
            match a {
                Action::Create { .. } => c.create += 1,
                Action::Adopt { .. } => c.adopt += 1,
                Action::Unchanged { .. } => c.unchanged += 1,
                Action::Update { .. } => c.update += 1,
                Action::Changed { .. } => c.changed += 1,
                Action::Orphaned { .. } => c.orphaned += 1,
                Action::Waiting { .. } => c.waiting += 1,
                Action::Conflict { .. } => c.conflict += 1,
                Action::InFlight { .. } => c.inflight += 1,
                Action::Delete { .. } => c.delete += 1,
                Action::Deleting { .. } => c.deleting += 1,
                Action::Rename { .. } => c.rename += 1,
                Action::RenameUnclear { .. } => c.rename_unclear += 1,
            }
        }
        c
    }
}
