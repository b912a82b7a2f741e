//! Connections listed in a project that atlas-linkd manages that no record holds: duplicates (a
//! copy of a declared link that a record already holds) and the rest, unmanaged (neither declared
//! nor recorded). Each is billed, and nothing here will ever touch it; the plan and the pass report
//! them.

use super::RemoteListing;
use crate::model::{
    DesiredLink, DesiredProject, FxMap, GroupId, IdentityKey, LinkKey, RemoteConnection,
    RemoteState,
};
use serde::Serialize;

/// A connection of a complete listing that no record holds and no link adopts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unmanaged {
    pub group_id: GroupId,
    pub atlas_id: String,
    pub provider: Option<String>,
    pub vendor: Option<String>,
    pub state: Option<RemoteState>,
}

impl Unmanaged {
    fn of(group_id: &GroupId, c: &RemoteConnection) -> Unmanaged {
        Unmanaged {
            group_id: group_id.clone(),
            atlas_id: c.id.clone(),
            provider: c.provider.clone(),
            vendor: c.vendor.clone(),
            state: c.state.clone(),
        }
    }
}

/// A connection that no record holds and no link adopts, made exactly as a declared link whose
/// record already holds another connection: a billed copy of the link, such as a create Atlas
/// committed after its settle window. Never deleted by atlas-linkd; reported until someone does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Duplicate {
    pub group_id: GroupId,
    /// The declared link it copies.
    pub name: String,
    pub atlas_id: String,
    /// The connection the link's record holds.
    pub held_atlas_id: String,
    pub state: Option<RemoteState>,
}

/// What `group`'s complete `listing` holds that no record does, in id order: connections whose
/// id is not `managed` (held by a record of any project, or adopted by this plan), split into
/// duplicates of a declared link of `project` whose record holds another connection (`held_by`
/// gives the id a link's record holds, if created or adopted) and unmanaged ones. Connections
/// that `RemoteListing::reduce` moved to `held` are managed by definition.
pub(crate) fn unheld_in<'a>(
    group: &GroupId,
    listing: &RemoteListing,
    managed: impl Fn(&str) -> bool,
    project: Option<&DesiredProject>,
    held_by: impl Fn(&LinkKey) -> Option<&'a str>,
) -> (Vec<Unmanaged>, Vec<Duplicate>) {
    // A connection being deleted is on its way out, billed no longer: neither unmanaged nor a
    // copy (prune's own delete of a link declared again at once would otherwise show as both).
    let mut unheld: Vec<&RemoteConnection> = listing
        .connections
        .iter()
        .filter(|c| !managed(&c.id) && !c.state.as_ref().is_some_and(RemoteState::is_deleting))
        .collect();
    unheld.sort_by(|a, b| a.id.cmp(&b.id));
    unheld.dedup_by(|a, b| a.id == b.id);
    // The declared links whose record holds a connection, by what identifies their far end: only
    // those can have a copy, and a copy shares its far end. Built only when something is unheld.
    let mut by_identity: FxMap<IdentityKey, Vec<(&DesiredLink, &str)>> = FxMap::default();
    if let Some(project) = project.filter(|_| !unheld.is_empty()) {
        for link in project.links.values() {
            let Some(id) = held_by(&link.key) else {
                continue;
            };
            for key in link.spec.identity().keys {
                by_identity.entry(key).or_default().push((link, id));
            }
        }
    }
    let mut unmanaged = Vec::new();
    let mut duplicates = Vec::new();
    for c in unheld {
        let copy_of = c
            .identity()
            .keys
            .iter()
            .filter_map(|k| by_identity.get(k))
            .flatten()
            .find(|(link, id)| *id != c.id && link.spec.matches(c));
        match copy_of {
            Some((link, id)) => duplicates.push(Duplicate {
                group_id: group.clone(),
                name: link.key.name.clone(),
                atlas_id: c.id.clone(),
                held_atlas_id: (*id).to_owned(),
                state: c.state.clone(),
            }),
            None => unmanaged.push(Unmanaged::of(group, c)),
        }
    }
    (unmanaged, duplicates)
}
