//! Pass reports: what one reconcile pass did, as a summary a user reads (text) or a script reads (JSON).

use crate::exit::Exit;
use crate::model::{LinkKey, RemoteState};
use crate::plan::{Action, Duplicate, Hold, Plan, Unmanaged};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// A link that did not converge in this pass, and why, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedLink {
    #[serde(rename = "groupId")]
    pub(crate) group_id: String,
    pub name: String,
    pub reason: String,
}

impl FailedLink {
    pub(crate) fn new(key: &LinkKey, reason: String) -> FailedLink {
        FailedLink {
            group_id: key.group_id.to_string(),
            name: key.name.clone(),
            reason,
        }
    }
}

/// A link reported `changed`: the manifest asks for another spec than the one Atlas holds, and it
/// is not updated in place. `reason` is set when the difference is only `dnsDomain` (why no PATCH
/// was sent); without one, the JSON form is `{"groupId", "name"}` as for the other key lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedLink {
    #[serde(rename = "groupId")]
    pub(crate) group_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ChangedLink {
    pub(crate) fn new(key: &LinkKey, reason: Option<String>) -> ChangedLink {
        ChangedLink {
            group_id: key.group_id.to_string(),
            name: key.name.clone(),
            reason,
        }
    }
}

impl From<LinkKey> for ChangedLink {
    fn from(key: LinkKey) -> ChangedLink {
        ChangedLink::new(&key, None)
    }
}

/// A link whose record moved from another name (a rename in the manifests): `{"groupId", "name",
/// "renamedFrom"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenamedLink {
    pub(crate) group_id: String,
    pub name: String,
    pub renamed_from: String,
}

impl RenamedLink {
    pub(crate) fn new(key: &LinkKey, from: &LinkKey) -> RenamedLink {
        RenamedLink {
            group_id: key.group_id.to_string(),
            name: key.name.clone(),
            renamed_from: from.name.clone(),
        }
    }
}

/// A link in the JSON form of a report: `{"groupId", "name"}`, the keys `plan` and `ledger` use.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyEntry<'a> {
    group_id: &'a str,
    name: &'a str,
}

fn key_entries<S: serde::Serializer>(keys: &[LinkKey], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(keys.iter().map(|k| KeyEntry {
        group_id: k.group_id.as_str(),
        name: &k.name,
    }))
}

/// What one pass did. Links appear in exactly one list (or in `unchanged`, which is a count).
/// Its JSON form has camelCase keys, and every link in it is an object with `groupId` and `name`
/// (the shape is in README, "Machine-readable output").
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassReport {
    pub(crate) started_unix: i64,
    #[serde(serialize_with = "secs")]
    pub(crate) duration: Duration,
    /// Declared links.
    pub(crate) desired: usize,
    #[serde(serialize_with = "key_entries")]
    pub created: Vec<LinkKey>,
    /// Found already in Atlas (before a create, or after a 409) and recorded without creating.
    #[serde(serialize_with = "key_entries")]
    pub adopted: Vec<LinkKey>,
    /// Renamed in the manifests: the record of the old name moved to the new one, without a call.
    pub renamed: Vec<RenamedLink>,
    /// 409 answers received (each then resolved by a listing).
    pub conflicts: u64,
    /// Gave up in this pass: a permanent error, or retries exhausted.
    pub failed: Vec<FailedLink>,
    /// Failed on an earlier pass; waiting out the delay before the next try.
    pub waiting: Vec<FailedLink>,
    /// Not tried: the project could not be listed, or the pass was interrupted.
    pub(crate) not_attempted: Vec<FailedLink>,
    /// A connection in Atlas shares the link's identity (the far end) but differs in other fields:
    /// neither adopted nor created beside, until the manifest or Atlas changes.
    pub(crate) conflicted: Vec<FailedLink>,
    /// A create that got no answer may still be committed by Atlas: decided by a listing after
    /// `followUpUnix` (the daemon runs a pass then; `--once` waits within the pass instead).
    pub(crate) in_flight: Vec<FailedLink>,
    /// Not proven by a listing of this pass: recorded, but its project could not be listed in a
    /// pass that promised to look (`--once`), or a create got no answer and no listing could tell
    /// whether Atlas committed it.
    pub(crate) unverified: Vec<FailedLink>,
    /// The earliest instant (unix seconds) at which a pass can decide an in-flight create.
    pub(crate) follow_up_unix: Option<i64>,
    /// The earliest instant (unix seconds) at which a link this pass left waiting is due: a failed
    /// create's next attempt, the end of prune's grace, a refused delete's next try. The daemon
    /// runs a pass then.
    #[serde(skip)]
    pub(crate) due_unix: Option<i64>,
    pub unchanged: usize,
    /// Existed with another `dnsDomain`; Atlas took the PATCH and the ledger records the declared spec.
    #[serde(serialize_with = "key_entries")]
    pub updated: Vec<LinkKey>,
    /// Exist, but the manifest now asks for something else: reported, never recreated.
    pub(crate) changed: Vec<ChangedLink>,
    /// In the ledger, no longer declared, and not a prune candidate in this pass: guarded prune is
    /// off, or the link was never created (an intent, a failed create).
    #[serde(serialize_with = "key_entries")]
    pub(crate) orphaned: Vec<LinkKey>,
    /// Guarded prune: undeclared links whose delete Atlas accepted (202) in this pass.
    #[serde(serialize_with = "key_entries")]
    pub(crate) deleted: Vec<LinkKey>,
    /// Deleted in an earlier pass, still listed by Atlas (or their project was not listed); the
    /// record goes once a complete listing no longer shows them.
    #[serde(serialize_with = "key_entries")]
    pub(crate) deleting: Vec<LinkKey>,
    /// Prune candidates whose delete Atlas refused because a stream connection still uses them
    /// (`STREAM_PRIVATE_LINK_IN_USE`), in this pass or earlier: tried again after the failure delay.
    /// Not a failure of the pass.
    pub(crate) in_use: Vec<FailedLink>,
    /// Prune candidates that a safeguard holds back (grace, cap, no links declared, no listing),
    /// with the reason. Not a failure of the pass.
    pub(crate) held_back: Vec<FailedLink>,
    /// Changes the ledger refused because their row was not what the pass planned from (a bug: the
    /// daemon reads its ledger again, and `/readyz` says so until a pass has none).
    pub(crate) ledger_refused: Vec<FailedLink>,
    /// Connections in a listed project that no manifest declares and the ledger does not hold.
    /// Never deleted; each is billed. Not a failure of the pass.
    pub(crate) unmanaged: Vec<Unmanaged>,
    /// Connections in a listed project that are exact copies of a declared link whose record holds
    /// another connection: billed twice over. Never deleted by atlas-linkd; not converged while one
    /// exists.
    pub(crate) duplicates: Vec<Duplicate>,
    pub api_calls: u64,
    pub rate_limited: u64,
    pub(crate) interrupted: bool,
    /// Ledger writes of this pass that failed (the database unreachable, a lost lease): their links
    /// are among `failed`; the daemon passes again shortly.
    pub ledger_errors: u64,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Why a link that several records could be, renamed, is neither moved nor created.
pub(crate) fn rename_unclear_reason(candidates: &[LinkKey]) -> String {
    let names: Vec<&str> = candidates.iter().map(|k| k.name.as_str()).collect();
    format!(
        "renamed from one of {} (same spec), or another declared link is: nothing moved and nothing created; declare each connection once",
        names.join(", ")
    )
}

/// RFC 3339 UTC, seconds precision.
pub(crate) fn format_unix(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

impl PassReport {
    pub(crate) fn new(started_unix: i64, desired: usize) -> PassReport {
        PassReport {
            started_unix,
            desired,
            ..PassReport::default()
        }
    }

    /// Every declared link exists in Atlas and is recorded. Changed links exist (with their old spec) and
    /// count as converged: removal and replacement are never implicit, so failing on them forever would
    /// only teach operators to ignore the exit status. They are reported on every pass instead.
    pub fn converged(&self) -> bool {
        self.failed.is_empty()
            && self.waiting.is_empty()
            && self.not_attempted.is_empty()
            && self.conflicted.is_empty()
            && self.in_flight.is_empty()
            && self.unverified.is_empty()
            && self.ledger_refused.is_empty()
            && self.duplicates.is_empty()
            && !self.interrupted
    }

    /// Something a pass should act on from `at_unix` on (see `due_unix`).
    pub(crate) fn note_due(&mut self, at_unix: i64) {
        self.due_unix = Some(self.due_unix.map_or(at_unix, |t| t.min(at_unix)));
    }

    /// A link whose create may still be committed by Atlas until `until_unix`.
    pub(crate) fn add_in_flight(&mut self, key: &LinkKey, until_unix: i64) {
        self.in_flight.push(FailedLink::new(
            key,
            format!(
                "a create got no answer and may still be committed by Atlas; a listing after {} decides it",
                format_unix(until_unix)
            ),
        ));
        self.follow_up_unix = Some(
            self.follow_up_unix
                .map_or(until_unix, |t| t.min(until_unix)),
        );
    }

    /// The exit status of `--once`: converged or not.
    pub(crate) fn exit(&self) -> Exit {
        if self.converged() {
            Exit::Converged
        } else {
            Exit::NotConverged
        }
    }

    /// `exit` as its number: 0 converged, 1 not converged.
    pub fn exit_code(&self) -> u8 {
        self.exit().code()
    }

    pub(crate) fn sort(&mut self) {
        self.created.sort();
        self.adopted.sort();
        self.renamed
            .sort_by(|a, b| (&a.group_id, &a.name).cmp(&(&b.group_id, &b.name)));
        self.updated.sort();
        self.changed
            .sort_by(|a, b| (&a.group_id, &a.name).cmp(&(&b.group_id, &b.name)));
        self.orphaned.sort();
        self.deleted.sort();
        self.deleting.sort();
        self.unmanaged
            .sort_by(|a, b| (&a.group_id, &a.atlas_id).cmp(&(&b.group_id, &b.atlas_id)));
        self.duplicates
            .sort_by(|a, b| (&a.group_id, &a.atlas_id).cmp(&(&b.group_id, &b.atlas_id)));
        for list in [
            &mut self.in_use,
            &mut self.held_back,
            &mut self.failed,
            &mut self.waiting,
            &mut self.not_attempted,
            &mut self.conflicted,
            &mut self.in_flight,
            &mut self.unverified,
            &mut self.ledger_refused,
        ] {
            list.sort_by(|a, b| (&a.group_id, &a.name).cmp(&(&b.group_id, &b.name)));
        }
    }

    /// The JSON form (`--once --report-file`): the fields above with camelCase keys, every link an
    /// object with `groupId` and `name`; ends with a newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .expect("a report is strings, numbers and lists: nothing serde_json can refuse");
        text.push('\n');
        text
    }

    /// The human summary: counts first, then every link that needs attention, with its reason.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let verdict = if self.converged() {
            "converged"
        } else if self.interrupted {
            "interrupted"
        } else {
            "NOT converged"
        };
        let _ = writeln!(
            out,
            "pass {verdict} in {:.1}s: {} declared, {} created, {} adopted, {} renamed, {} unchanged, {} updated, {} failed, {} waiting, {} not attempted, {} conflicts, {} in flight, {} unverified, {} changed, {} orphaned",
            self.duration.as_secs_f64(),
            self.desired,
            self.created.len(),
            self.adopted.len(),
            self.renamed.len(),
            self.unchanged,
            self.updated.len(),
            self.failed.len(),
            self.waiting.len(),
            self.not_attempted.len(),
            self.conflicted.len(),
            self.in_flight.len(),
            self.unverified.len(),
            self.changed.len(),
            self.orphaned.len(),
        );
        let _ = writeln!(
            out,
            "api calls: {}, 429 answers: {}, 409 conflicts: {}",
            self.api_calls, self.rate_limited, self.conflicts
        );
        if !(self.deleted.is_empty()
            && self.deleting.is_empty()
            && self.in_use.is_empty()
            && self.held_back.is_empty()
            && self.unmanaged.is_empty())
        {
            let _ = writeln!(
                out,
                "prune: {} deleted, {} deleting, {} in use, {} held back; {} unmanaged connections",
                self.deleted.len(),
                self.deleting.len(),
                self.in_use.len(),
                self.held_back.len(),
                self.unmanaged.len(),
            );
        }
        let sections: [(&str, &[FailedLink]); 9] = [
            ("failed", &self.failed),
            ("waiting", &self.waiting),
            ("not attempted", &self.not_attempted),
            ("conflict", &self.conflicted),
            ("in flight", &self.in_flight),
            ("unverified", &self.unverified),
            ("in use", &self.in_use),
            ("held back", &self.held_back),
            ("ledger refused", &self.ledger_refused),
        ];
        for (title, links) in sections {
            for l in links {
                let _ = writeln!(out, "  {title}: {}/{}: {}", l.group_id, l.name, l.reason);
            }
        }
        for r in &self.renamed {
            let _ = writeln!(
                out,
                "  renamed: {}/{}: renamed from {}; its record and connection moved, no call to Atlas",
                r.group_id, r.name, r.renamed_from
            );
        }
        for k in &self.updated {
            let _ = writeln!(out, "  updated: {k}: dnsDomain set in place");
        }
        for c in &self.changed {
            let reason = c.reason.as_deref().unwrap_or(
                "the manifest differs from what was created; atlas-linkd does not replace connections (delete it in Atlas to have it recreated)",
            );
            let _ = writeln!(out, "  changed: {}/{}: {reason}", c.group_id, c.name);
        }
        for k in &self.orphaned {
            let _ = writeln!(
                out,
                "  orphaned: {k}: no longer declared; left in Atlas (prune.enabled is false, or it was never created)"
            );
        }
        for k in &self.deleted {
            let _ = writeln!(
                out,
                "  deleted: {k}: no longer declared; Atlas accepted its delete"
            );
        }
        for k in &self.deleting {
            let _ = writeln!(
                out,
                "  deleting: {k}: its delete was accepted; Atlas still lists it"
            );
        }
        for u in &self.unmanaged {
            let _ = writeln!(out, "  unmanaged: {}", unmanaged_line(u));
        }
        for d in &self.duplicates {
            let _ = writeln!(out, "  duplicate: {}", duplicate_line(d));
        }
        out
    }
}

/// What holds a prune candidate back, in words for the plan and the report.
pub(crate) fn hold_reason(hold: &Hold) -> String {
    match hold {
        Hold::Disabled => "not deleted: prune.enabled is false".to_owned(),
        Hold::NoLinksDeclared => {
            "not deleted: the manifests declare no links at all (an empty or unmounted manifest folder never prunes)".to_owned()
        }
        Hold::InUse { until_unix } => format!(
            "not deleted: a stream connection still uses it (STREAM_PRIVATE_LINK_IN_USE); tried again after {}",
            format_unix(*until_unix)
        ),
        Hold::Failed {
            until_unix,
            last_error,
        } => format!(
            "not deleted: the last delete failed ({}); tried again after {}",
            last_error.as_deref().unwrap_or("no detail"),
            format_unix(*until_unix)
        ),
        Hold::Grace { until_unix } => format!(
            "not deleted yet: within prune.grace_secs; deleted after {} if still undeclared",
            format_unix(*until_unix)
        ),
        Hold::NotListed => {
            "not deleted: no complete listing of its project in this pass".to_owned()
        }
        Hold::Gone => {
            "not deleted: a complete listing no longer shows it (already gone from Atlas)".to_owned()
        }
        Hold::Cap => "not deleted in this pass: prune.max_per_pass deletes reached".to_owned(),
        Hold::MaybeRenamed => {
            "not deleted: a declared link without a record has the same spec, so it may be this link renamed; name one link per connection to settle it".to_owned()
        }
    }
}

/// One duplicate connection, in words.
fn duplicate_line(d: &Duplicate) -> String {
    format!(
        "{}/{}: connection {} ({}) is an exact copy of the link, whose connection is {}; billed twice, never deleted by atlas-linkd: delete the copy in Atlas",
        d.group_id,
        d.name,
        d.atlas_id,
        d.state.as_ref().map_or("no state", RemoteState::as_str),
        d.held_atlas_id
    )
}

/// One unmanaged connection, in words.
fn unmanaged_line(u: &Unmanaged) -> String {
    format!(
        "{}/{} ({} {}, {}): in Atlas, neither declared nor recorded; billed, and never touched by atlas-linkd",
        u.group_id,
        u.atlas_id,
        u.provider.as_deref().unwrap_or("?"),
        u.vendor.as_deref().unwrap_or("GENERIC"),
        u.state.as_ref().map_or("no state", |s| s.as_str()),
    )
}

/// `plan`'s text output: one line per link that needs something, then the counts.
pub(crate) fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    for action in &plan.actions {
        let key = action.key();
        let line = match action {
            Action::Create { reason, .. } => format!("create     {key} ({})", reason.as_str()),
            Action::Adopt { remote, .. } => {
                format!("adopt      {key} (existing connection {})", remote.id)
            }
            Action::Unchanged { .. } => continue,
            Action::Update {
                link,
                atlas_id,
                remote_state,
                ..
            } => format!(
                "update     {key} (connection {atlas_id}, {}: set dnsDomain to {})",
                remote_state
                    .as_ref()
                    .map_or("state unknown", |s| s.as_str()),
                link.spec.dns_domain.as_deref().unwrap_or("-")
            ),
            Action::Changed {
                recorded,
                desired,
                why,
                ..
            } => match why.reason() {
                Some(reason) => format!(
                    "changed    {key} (created as {}, manifest now says {}: {reason})",
                    recorded.short(),
                    desired.short()
                ),
                None => format!(
                    "changed    {key} (created as {}, manifest now says {}; never replaced)",
                    recorded.short(),
                    desired.short()
                ),
            },
            Action::Orphaned { atlas_id, hold, .. } => format!(
                "orphaned   {key} (connection {} no longer declared; {})",
                atlas_id.as_deref().unwrap_or("-"),
                hold.as_ref()
                    .map_or_else(|| "never created, so never deleted".to_owned(), hold_reason)
            ),
            Action::Delete { atlas_id, .. } => {
                format!("delete     {key} (connection {atlas_id} no longer declared; pruned)")
            }
            Action::Deleting { atlas_id, gone, .. } => format!(
                "deleting   {key} (connection {} {})",
                atlas_id.as_deref().unwrap_or("-"),
                if *gone {
                    "is gone from Atlas; its record is dropped"
                } else {
                    "was deleted; waiting for Atlas to finish"
                }
            ),
            Action::Waiting {
                until_unix,
                attempts,
                last_error,
                ..
            } => format!(
                "waiting    {key} (failed {attempts} time(s), next try after {}: {})",
                format_unix(*until_unix),
                last_error.as_deref().unwrap_or("")
            ),
            Action::Conflict {
                remote_id, fields, ..
            } => format!(
                "conflict   {key} (connection {remote_id} points at the same far end but differs in {}; neither adopted nor created)",
                fields.join(", ")
            ),
            Action::InFlight { until_unix, .. } => format!(
                "inflight   {key} (an earlier create may still be committed by Atlas; decided after {})",
                format_unix(*until_unix)
            ),
            Action::Rename { from, atlas_id, .. } => format!(
                "rename     {key} (renamed from {}: its record and connection {atlas_id} move; no call to Atlas)",
                from.name
            ),
            Action::RenameUnclear { candidates, .. } => {
                format!("unclear    {key} ({})", rename_unclear_reason(candidates))
            }
        };
        let _ = writeln!(out, "{line}");
    }
    for u in &plan.unmanaged {
        let _ = writeln!(out, "unmanaged  {}", unmanaged_line(u));
    }
    for d in &plan.duplicates {
        let _ = writeln!(out, "duplicate  {}", duplicate_line(d));
    }
    let c = plan.counts();
    let _ = writeln!(
        out,
        "plan: {} to create, {} to adopt, {} to rename, {} unchanged, {} to update, {} changed, {} orphaned, {} waiting, {} conflict, {} in flight, {} to delete, {} deleting, {} unmanaged, {} duplicates",
        c.create,
        c.adopt,
        c.rename,
        c.unchanged,
        c.update,
        c.changed,
        c.orphaned,
        c.waiting,
        c.conflict + c.rename_unclear,
        c.inflight,
        c.delete,
        c.deleting,
        plan.unmanaged.len(),
        plan.duplicates.len()
    );
    out
}

#[cfg(test)]
mod tests;
