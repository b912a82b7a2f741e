//! `NotHeld`: why this process may no longer create from its ledger: the SQLite files at their
//! paths are not the ones it locked, or it lost the lease of a shared PostgreSQL ledger.

use super::LedgerReplaced;

/// Why no further create may be sent from this ledger.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotHeld {
    /// The SQLite ledger or its lock file was deleted or replaced: the daemon exits 1, and its
    /// restart takes the lock again.
    #[error(transparent)]
    Replaced(#[from] LedgerReplaced),
    /// The lease of the shared ledger is not (or no longer) this process's, by its own clock: the
    /// daemon stands by.
    #[error(
        "this process does not hold the lease of the ledger {ledger}: another atlas-linkd is active, or the lease could not be renewed in time"
    )]
    LeaseLost { ledger: String },
}
