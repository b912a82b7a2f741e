//! Stopping a pass's creates for good when the ledger is no longer this process's to create from
//! (`LedgerHandle::check_held`): another process may hold a fresh lock at the same path, or the
//! lease of a shared ledger, and both creating would duplicate connections.

use crate::ledger::{LedgerHandle, NotHeld};
use std::sync::OnceLock;
use tokio_util::sync::CancellationToken;

/// A pass's own stop: cancelled by the caller's token (a signal) or by a failed check of the held
/// ledger files, which also keeps why.
pub(super) struct Halt {
    token: CancellationToken,
    replaced: OnceLock<NotHeld>,
}

impl Halt {
    /// A stop that the caller's `cancel` also triggers, but that does not trigger it.
    pub(super) fn new(cancel: &CancellationToken) -> Halt {
        Halt {
            token: cancel.child_token(),
            replaced: OnceLock::new(),
        }
    }

    /// The token every call of the pass waits on.
    pub(super) fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether creating may go on: false once the held ledger files were found replaced (now or by
    /// an earlier check of this pass). A failed check logs why, once, and stops every call of the
    /// pass that has not started; calls in flight finish.
    pub(super) fn may_create(&self, ledger: &LedgerHandle) -> bool {
        if self.replaced.get().is_some() {
            return false;
        }
        match ledger.check_held() {
            Ok(()) => true,
            Err(e) => {
                self.stop(e);
                false
            }
        }
    }

    /// Stops the pass because the held ledger files were replaced.
    pub(super) fn stop(&self, e: NotHeld) {
        if self.replaced.set(e.clone()).is_ok() {
            tracing::error!(error = %e, "the ledger is no longer this process's; no further create is sent");
        }
        self.token.cancel();
    }

    /// Why the pass was stopped, if the ledger is no longer this process's.
    pub(super) fn replaced(&self) -> Option<NotHeld> {
        self.replaced.get().cloned()
    }

    /// Stops the pass's calls (a ledger write failed): calls in flight finish and are recorded.
    pub(super) fn cancel(&self) {
        self.token.cancel();
    }
}
