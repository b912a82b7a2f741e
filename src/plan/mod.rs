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
//! # dnsDomain updates
//! `dnsDomain` is the one field Atlas updates in place (PATCH). A link created or adopted with a
//! spec that differs from the declared one ONLY in `dnsDomain` (the recorded spec with the declared
//! domain fingerprints as the declared spec) is an **update** when its project's listing shows the
//! connection `IDLE` or without a domain, the only states in which Atlas takes the PATCH. Otherwise
//! it is **changed**, with the reason (`ChangedWhy`): its state, no listing yet (the pass lists the
//! project, so `needs_listing`), not in the listing, or a domain to remove (a PATCH can only set one).
//! Any other difference is changed as before: never replaced.
//!
//! # Guarded prune
//! A record that no manifest declares any more is `orphaned`, unless guarded prune deletes it.
//! Only a record in phase `created` or `adopted` with an Atlas id is a candidate (never an
//! unmanaged connection, never an intent or a failed create). It becomes `delete` only when all
//! of these hold, checked in this order, the first that fails being the `hold` reason the plan shows:
//! `disabled` (`prune.enabled` is false), `no_links_declared` (the manifests declare no link at
//! all: an unmounted folder must not delete everything), `in_use` / `failed` (an earlier delete
//! was refused; tried again from `untilUnix`), `grace` (undeclared for less than
//! `prune.grace_secs`, counted from the first pass that found it undeclared, or from now),
//! `not_listed` (no complete listing of its project in this pass), `gone` (that listing does not
//! show its id: nothing to delete), `cap` (`prune.max_per_pass` deletes are planned already).
//! A record in phase `deleting` (Atlas accepted its delete) is `deleting` until a complete listing
//! no longer shows it (`gone: true`), when the pass drops the row; declared again, it is created anew.
//!
//! # Unmanaged connections
//! `unmanaged` lists every connection of a complete listing that no record holds and no link of
//! the plan adopts: it costs money and nothing here manages it. It is never deleted or adopted by prune.
//!
//! # JSON shape (stable; `plan --output json` prints it)
//! ```json
//! {
//!   "counts": {"create": 1, "adopt": 0, "unchanged": 0, "update": 0, "changed": 0, "conflict": 0,
//!              "orphaned": 0, "waiting": 0, "inflight": 0},
//!   "actions": [
//!     {"action": "create", "groupId": "…", "name": "…", "reason": "new|resume|retry|recreate",
//!      "fingerprint": "…", "spec": {…create body…}, "source": "file:line"},
//!     {"action": "adopt", "groupId": "…", "name": "…", "atlasId": "…", "remoteState": "DONE"|null,
//!      "fingerprint": "…", "source": "file:line"},
//!     {"action": "unchanged", "groupId": "…", "name": "…", "atlasId": "…", "remoteState": "DONE"|null},
//!     {"action": "update", "groupId": "…", "name": "…", "atlasId": "…", "remoteState": "IDLE"|null,
//!      "dnsDomain": "…", "recordedFingerprint": "…", "desiredFingerprint": "…", "source": "file:line"},
//!     {"action": "changed", "groupId": "…", "name": "…", "atlasId": "…"|null,
//!      "recordedFingerprint": "…", "desiredFingerprint": "…", "reason": "…"|null},
//!     {"action": "orphaned", "groupId": "…", "name": "…", "atlasId": "…"|null, "phase": "created"},
//!     {"action": "waiting", "groupId": "…", "name": "…", "untilUnix": 1700000000, "attempts": 2,
//!      "lastError": "…"|null},
//!     {"action": "conflict", "groupId": "…", "name": "…", "atlasId": "…",
//!      "fields": ["authenticationScheme", "…"], "source": "file:line"},
//!     {"action": "inflight", "groupId": "…", "name": "…", "untilUnix": 1700000030},
//!     {"action": "delete", "groupId": "…", "name": "…", "atlasId": "…"},
//!     {"action": "deleting", "groupId": "…", "name": "…", "atlasId": "…"|null, "gone": false},
//!     (an orphaned candidate also carries "undeclaredSinceUnix": 1700000000|null and
//!      "hold": {"reason": "disabled|no_links_declared|in_use|failed|grace|not_listed|gone|cap",
//!               "untilUnix": …, "lastError": …} (the last two where they apply), else "hold": null)
//!   ],
//!   "unmanaged": [{"groupId": "…", "atlasId": "…", "provider": "AWS"|null, "vendor": "MSK"|null,
//!                  "state": "DONE"|null}]
//! }
//! ```
//! Actions are sorted by `(groupId, name)`; each declared or recorded link appears exactly once.

mod action;
mod decide;
mod index;
mod unmanaged;

pub(crate) use action::Plan;
pub use action::{Action, ChangedWhy, CreateReason, Hold};
pub(crate) use decide::plan_project_each;
pub use decide::{plan, plan_each};
pub(crate) use unmanaged::unheld_in;
pub use unmanaged::{Duplicate, Unmanaged};

use crate::model::{EndpointOutputs, GroupId, RemoteConnection, RemoteState};
use std::collections::BTreeMap;

/// A COMPLETE listing of one project's connections (every page). A partial listing must not be
/// passed: absence from a listing is read as "gone from Atlas".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteListing {
    /// Connections that may be adopted or near-match a link: all of them, unless `reduce` moved
    /// those a record holds to `held`.
    pub connections: Vec<RemoteConnection>,
    /// Connections whose id a record holds, kept only as far as a plan and the ledger read them
    /// (see `reduce`). Empty unless `reduce` filled it.
    pub held: Vec<HeldConnection>,
}

/// A listed connection whose id a record already holds: what a plan reads of it (that it exists,
/// its state) and what the ledger records of it (state, error, outputs). A plan never adopts it nor
/// counts it as a near-match (adoption is one-to-one), so the rest of its fields is not needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldConnection {
    pub id: String,
    pub state: Option<RemoteState>,
    pub error_message: Option<String>,
    /// Boxed: all absent for most connections, and a listing can hold a million of these.
    pub outputs: Option<Box<EndpointOutputs>>,
    /// Whether Atlas shows a `dnsDomain`: without one, a PATCH may set it in any state.
    pub has_dns_domain: bool,
}

/// What a plan and the ledger read of any listed connection, held or not.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListedState<'a> {
    pub(crate) state: Option<&'a RemoteState>,
    pub(crate) error_message: Option<&'a String>,
    pub(crate) outputs: Option<&'a EndpointOutputs>,
    pub(crate) has_dns_domain: bool,
}

impl ListedState<'_> {
    /// The outputs, all absent when none were reported.
    pub(crate) fn outputs(&self) -> EndpointOutputs {
        self.outputs.cloned().unwrap_or_default()
    }
}

impl RemoteListing {
    /// A listing of `connections`, none of them reduced.
    pub fn new(connections: Vec<RemoteConnection>) -> RemoteListing {
        RemoteListing {
            connections,
            held: Vec::new(),
        }
    }

    /// Moves each connection whose id `is_held` (an id a record holds) to `held`, keeping only what
    /// a plan and the ledger read of it. A plan of the reduced listing is the plan of the whole one:
    /// adoption and near-matches skip every id a record holds. Listing order is kept within each part.
    pub fn reduce(&mut self, is_held: impl Fn(&str) -> bool) {
        let listed = std::mem::take(&mut self.connections);
        // One pass, each connection moved once: a listing can hold a million.
        self.held.reserve(listed.len());
        for c in listed {
            if !is_held(&c.id) {
                self.connections.push(c);
                continue;
            }
            let outputs = (c.outputs != EndpointOutputs::default()).then(|| Box::new(c.outputs));
            self.held.push(HeldConnection {
                id: c.id,
                state: c.state,
                error_message: c.error_message,
                outputs,
                has_dns_domain: c.dns_domain.is_some(),
            });
        }
    }

    /// Every listed connection's id with what is read of it, the unreduced ones first.
    pub(crate) fn states(&self) -> impl Iterator<Item = (&str, ListedState<'_>)> {
        let free = self.connections.iter().map(|c| {
            (
                c.id.as_str(),
                ListedState {
                    state: c.state.as_ref(),
                    error_message: c.error_message.as_ref(),
                    outputs: Some(&c.outputs),
                    has_dns_domain: c.dns_domain.is_some(),
                },
            )
        });
        let held = self.held.iter().map(|h| {
            (
                h.id.as_str(),
                ListedState {
                    state: h.state.as_ref(),
                    error_message: h.error_message.as_ref(),
                    outputs: h.outputs.as_deref(),
                    has_dns_domain: h.has_dns_domain,
                },
            )
        });
        free.chain(held)
    }
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
    /// Guarded prune (`prune.*`).
    pub prune: PruneSettings,
}

impl PlanSettings {
    /// From the config's `reconcile.settle_secs`, prune off; a value past `i64::MAX` seconds is
    /// as good as forever.
    pub(crate) fn from_settle_secs(settle_secs: u64) -> PlanSettings {
        PlanSettings {
            settle_secs: i64::try_from(settle_secs).unwrap_or(i64::MAX),
            prune: PruneSettings::OFF,
        }
    }

    pub(crate) fn with_prune(self, prune: PruneSettings) -> PlanSettings {
        PlanSettings { prune, ..self }
    }
}

/// Guarded prune's settings (config `prune.*`), as plain data. See "Guarded prune" above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneSettings {
    /// Whether undeclared links that atlas-linkd created or adopted are deleted at all.
    pub enabled: bool,
    /// How long a link must have been undeclared before it is deleted.
    pub grace_secs: i64,
    /// Deletes per plan (and, in a pass, across all projects together).
    pub max_per_pass: u32,
}

impl PruneSettings {
    /// The defaults of `prune.*`: off.
    pub const OFF: PruneSettings = PruneSettings {
        enabled: false,
        grace_secs: 3600,
        max_per_pass: 10,
    };
}

#[cfg(test)]
mod tests;
