//! `Change`: one write to the ledger, as the executor asks for it.

use crate::model::{EndpointOutputs, Fingerprint, LinkKey, LinkSpec, RemoteState};

/// One write to the ledger. Every change carries the time it happened (callers own the clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Written just before a create is sent, with `at_unix` the moment of sending rounded UP to the
    /// second (it becomes `sent_unix`). Upsert: phase=intent, spec and fingerprint replaced, atlas_id cleared.
    Intent {
        key: LinkKey,
        spec: LinkSpec,
        fingerprint: Fingerprint,
        at_unix: i64,
    },
    /// Atlas accepted the create. The row must exist (an `Intent` came first).
    Created {
        key: LinkKey,
        atlas_id: String,
        at_unix: i64,
    },
    /// A matching remote connection was recorded without a create. Upsert.
    Adopted {
        key: LinkKey,
        spec: LinkSpec,
        fingerprint: Fingerprint,
        atlas_id: String,
        remote_state: Option<RemoteState>,
        remote_error: Option<String>,
        outputs: EndpointOutputs,
        at_unix: i64,
    },
    /// An attempt failed. Upsert; attempts += 1; atlas_id cleared.
    Failed {
        key: LinkKey,
        spec: LinkSpec,
        fingerprint: Fingerprint,
        error: String,
        next_attempt_unix: i64,
        at_unix: i64,
    },
    /// Atlas took an in-place update (a PATCH of `dnsDomain`) of a created or adopted link: its
    /// spec and fingerprint become the declared ones; phase, id, state and outputs stay. The row
    /// must exist.
    SpecUpdated {
        key: LinkKey,
        spec: LinkSpec,
        fingerprint: Fingerprint,
        at_unix: i64,
    },
    /// The last state Atlas reported of connection `atlas_id`, for the link whose row holds that
    /// connection. Written only where the row still holds it: a listing taken before the row moved
    /// on (a create or an adoption since) says nothing of its new connection, so then nothing is
    /// written, which is not an error.
    RemoteState {
        key: LinkKey,
        atlas_id: String,
        state: RemoteState,
        error: Option<String>,
        outputs: EndpointOutputs,
        at_unix: i64,
    },
    /// Sets (`Some`) or clears (`None`) since when the link has been undeclared; clears a refused
    /// delete (in a created or adopted row; a failed create keeps its attempts). The row must exist.
    Undeclared {
        key: LinkKey,
        since_unix: Option<i64>,
        at_unix: i64,
    },
    /// Atlas accepted the link's delete (202): phase deleting. The row must exist.
    Deleting { key: LinkKey, at_unix: i64 },
    /// A delete was refused (`in_use`: 400 `STREAM_PRIVATE_LINK_IN_USE`) or failed; tried again
    /// from `next_attempt_unix`. attempts += 1; the phase stays. The row must exist.
    DeleteRefused {
        key: LinkKey,
        in_use: bool,
        error: String,
        next_attempt_unix: i64,
        at_unix: i64,
    },
    /// A deleted link that a complete listing no longer shows: the row goes. The row must exist.
    Forget { key: LinkKey },
    /// A link renamed in the manifests: the row of `from`, created or adopted and holding
    /// `atlas_id`, becomes the row of `key` (same project, no row yet), declared again. Nothing is
    /// sent to Atlas: the connection is the same.
    Renamed {
        key: LinkKey,
        from: LinkKey,
        atlas_id: String,
        at_unix: i64,
    },
}

impl Change {
    pub(crate) fn key(&self) -> &LinkKey {
        match self {
            Change::Intent { key, .. }
            | Change::Created { key, .. }
            | Change::Adopted { key, .. }
            | Change::Failed { key, .. }
            | Change::RemoteState { key, .. }
            | Change::SpecUpdated { key, .. }
            | Change::Undeclared { key, .. }
            | Change::Deleting { key, .. }
            | Change::DeleteRefused { key, .. }
            | Change::Forget { key }
            | Change::Renamed { key, .. } => key,
        }
    }

    /// Every row the change writes or removes: its key, and for a rename the old one too.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &LinkKey> {
        let from = match self {
            Change::Renamed { from, .. } => Some(from),
            _ => None,
        };
        std::iter::once(self.key()).chain(from)
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Change::Intent { .. } => "intent",
            Change::Created { .. } => "created",
            Change::Adopted { .. } => "adopted",
            Change::Failed { .. } => "failed",
            Change::RemoteState { .. } => "remote state",
            Change::SpecUpdated { .. } => "spec updated",
            Change::Undeclared { .. } => "undeclared",
            Change::Deleting { .. } => "deleting",
            Change::DeleteRefused { .. } => "delete refused",
            Change::Forget { .. } => "forget",
            Change::Renamed { .. } => "renamed",
        }
    }
}
