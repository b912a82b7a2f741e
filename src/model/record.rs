//! What is recorded of a link (`Record`) and where it stands (`Phase`): domain values that the
//! ledger stores and `plan` reads, with no SQL in them.

use super::{EndpointOutputs, Fingerprint, GroupId, LinkKey, LinkSpec, RemoteState};
use serde::Serialize;
use std::fmt;

/// Where a link stands in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A create is about to be sent, or was sent with an unknown outcome.
    Intent,
    /// Atlas answered a create with success; `atlas_id` is set.
    Created,
    /// A matching connection was found in Atlas and recorded without a create.
    Adopted,
    /// The last attempt failed; `next_attempt_unix` says when to try again.
    Failed,
    /// No longer declared, and pruned: Atlas accepted its delete (202). The row goes once a
    /// complete listing no longer shows the connection.
    Deleting,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Intent => "intent",
            Phase::Created => "created",
            Phase::Adopted => "adopted",
            Phase::Failed => "failed",
            Phase::Deleting => "deleting",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Phase> {
        match s {
            "intent" => Some(Phase::Intent),
            "created" => Some(Phase::Created),
            "adopted" => Some(Phase::Adopted),
            "failed" => Some(Phase::Failed),
            "deleting" => Some(Phase::Deleting),
            _ => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ledger row, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub key: LinkKey,
    /// The spec as last recorded (`LinkSpec::to_json`).
    pub spec_json: String,
    pub fingerprint: Fingerprint,
    pub atlas_id: Option<String>,
    pub phase: Phase,
    pub remote_state: Option<RemoteState>,
    pub remote_error: Option<String>,
    /// Failed attempts since the last success.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_unix: Option<i64>,
    /// When the last create was sent (rounded up to the second). A create that got no answer is in
    /// flight at Atlas until this plus `settle_secs`.
    pub sent_unix: Option<i64>,
    /// What Atlas last reported of the connection's read-only outputs.
    pub outputs: EndpointOutputs,
    pub created_unix: i64,
    pub updated_unix: i64,
    /// What guarded prune keeps of a link (see `PruneMark`).
    pub prune: PruneMark,
}

/// What guarded prune remembers of a recorded link. A refused delete also sets the record's
/// `attempts`, `last_error` and `next_attempt_unix` (the row is `created` or `adopted`, whose
/// create fields are clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneMark {
    /// Since when (unix seconds) no manifest declares the link: set by the first pass that finds
    /// it orphaned, cleared when it is declared again. The grace period counts from here.
    pub undeclared_since_unix: Option<i64>,
    /// The last delete was refused because a stream connection still uses the link (400
    /// `STREAM_PRIVATE_LINK_IN_USE`), rather than failing otherwise.
    pub in_use: bool,
}

impl Record {
    /// The connection this record holds as its link's: its Atlas id, once created or adopted. An
    /// intent, a failed create and a connection being deleted hold none.
    pub(crate) fn connection(&self) -> Option<&str> {
        match self.phase {
            Phase::Created | Phase::Adopted => self.atlas_id.as_deref(),
            _ => None,
        }
    }

    /// A record of nothing, in project `group`: a place to hold, to be overwritten by a row read
    /// later. Allocates nothing (`group` is shared).
    pub(crate) fn stand_in(group: GroupId) -> Record {
        Record {
            key: LinkKey::new(group, String::new()),
            spec_json: String::new(),
            fingerprint: Fingerprint([0; 32]),
            atlas_id: None,
            phase: Phase::Intent,
            remote_state: None,
            remote_error: None,
            attempts: 0,
            last_error: None,
            next_attempt_unix: None,
            sent_unix: None,
            outputs: EndpointOutputs::default(),
            created_unix: 0,
            updated_unix: 0,
            prune: PruneMark::default(),
        }
    }

    /// The recorded spec, parsed.
    pub fn spec(&self) -> Result<LinkSpec, serde_json::Error> {
        serde_json::from_str(&self.spec_json)
    }
}
