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

mod action;
mod decide;
mod index;

pub(crate) use action::Plan;
pub use action::{Action, CreateReason};
pub use decide::plan;

use crate::model::{GroupId, RemoteConnection};
use std::collections::BTreeMap;

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
    pub(crate) fn from_settle_secs(settle_secs: u64) -> PlanSettings {
        PlanSettings {
            settle_secs: i64::try_from(settle_secs).unwrap_or(i64::MAX),
        }
    }
}

#[cfg(test)]
mod tests;
