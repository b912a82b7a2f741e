//! `LedgerError`: everything that can go wrong with the ledger, each naming the file and what to do.

use crate::model::LinkKey;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong with the ledger. Each names the ledger file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "another atlas-linkd ({}) holds the ledger {}; stop it, or point `ledger:` in the config at another file",
        holder_pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}")),
        path.display()
    )]
    Locked {
        path: PathBuf,
        holder_pid: Option<u32>,
    },
    #[error("cannot take the lock {} for the ledger: {source}; check the directory's permissions", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the ledger directory {}: {source}; create it or fix its permissions", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the ledger file {}: {source}; check the directory's permissions", path.display())]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no ledger at {}: nothing has been recorded yet (run a pass first), or `ledger:` in the config points elsewhere", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot open the ledger {}: {source}; check that it is an atlas-linkd ledger and readable", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot migrate the ledger {} to schema version {version}: {source}; the file is unchanged, restore it from a backup if it is damaged", path.display())]
    Migrate {
        path: PathBuf,
        version: u32,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the ledger {} has schema version {found}, newer than this build's {supported}; run a newer atlas-linkd", path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: u32,
    },
    #[error("the ledger {} has schema version {found}, older than this build's {supported}; let the daemon (or `--once`) open it once to migrate it", path.display())]
    NotMigrated {
        path: PathBuf,
        found: i64,
        supported: u32,
    },
    #[error("ledger {}: cannot {action}: {source}", path.display())]
    Sql {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("ledger {}: cannot commit a group of changes: {source}; none of them was recorded", path.display())]
    GroupCommit {
        path: PathBuf,
        #[source]
        source: Arc<rusqlite::Error>,
    },
    #[error("ledger {}: row {key} cannot be decoded: {problem}; fix or delete the row with sqlite3, or restore a backup", path.display())]
    BadRecord {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("ledger {}: cannot record `{change}` for {key}: the link has no row (a create must be preceded by an intent)", path.display())]
    UnknownLink {
        path: PathBuf,
        key: LinkKey,
        change: &'static str,
    },
    #[error("ledger {}: the ledger writer has stopped; restart atlas-linkd", path.display())]
    Closed { path: PathBuf },
}
