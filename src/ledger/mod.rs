//! The ledger: what atlas-linkd has done, in SQLite, one row per link, and the one-process lock around it.
//!
//! The ledger is the daemon's memory across crashes. A create is preceded by an `intent` row, so a
//! crash mid-call leaves a trace that makes the next pass list and adopt instead of creating twice.
//! Every write is a SQLite transaction in WAL mode with `synchronous=FULL`: committed means on disk.
//! `LedgerHandle` puts a dedicated thread in front of the connection and commits every change queued
//! while the previous commit ran in one transaction (group commit), so thousands of parallel creates
//! cost a few fsyncs.
//!
//! What a row holds, `model::Record` and `model::Phase`, is domain data (`plan` reads it without
//! touching SQLite); this module owns only how it is stored. `Change`, the ledger's write command,
//! stays here: only the executor writes, and each variant's meaning is a row operation.

mod change;
mod error;
mod handle;
mod held;
mod identity;
mod location;
mod pg;
mod rows;
mod schema;
mod store;

pub use change::Change;
pub use error::LedgerError;
pub use handle::LedgerHandle;
pub use held::NotHeld;
pub use identity::LedgerReplaced;
pub use location::LedgerLocation;
pub use pg::{
    ConnectError, Env, Lease, LeaseSettings, PASSWORD_CREDENTIAL, PgLedger, PgTarget, Role,
    SEND_MARGIN_SECS, SslMode, Take, TargetError, is_postgres_url,
};
pub use schema::SCHEMA_VERSION;
pub use store::{Ledger, lock_path};

#[cfg(test)]
mod tests;
