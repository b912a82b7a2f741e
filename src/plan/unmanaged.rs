//! Unmanaged connections: listed in a project that atlas-linkd manages, yet neither declared nor
//! recorded. Each is billed, and nothing here will ever touch it; the plan and the pass report them.

use super::RemoteListing;
use crate::model::{GroupId, RemoteConnection, RemoteState};
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

/// The unmanaged connections of `group`'s complete `listing`, in id order: those whose id is not
/// `managed` (held by a record of any project, or adopted by this plan). Connections that
/// `RemoteListing::reduce` moved to `held` are managed by definition.
pub(crate) fn unmanaged_in(
    group: &GroupId,
    listing: &RemoteListing,
    managed: impl Fn(&str) -> bool,
) -> Vec<Unmanaged> {
    let mut out: Vec<Unmanaged> = listing
        .connections
        .iter()
        .filter(|c| !managed(&c.id))
        .map(|c| Unmanaged::of(group, c))
        .collect();
    out.sort_by(|a, b| a.atlas_id.cmp(&b.atlas_id));
    out.dedup_by(|a, b| a.atlas_id == b.atlas_id);
    out
}
