//! `LedgerError`: everything that can go wrong with the ledger, each naming the file and what to do,
//! the advice following the actual error (`io_advice`, `sql_advice`).

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
    #[error("cannot take the lock {} for the ledger: {source}{}", path.display(), io_advice(source))]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the ledger directory {}: {source}{}", path.display(), io_advice(source))]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the ledger file {}: {source}{}", path.display(), io_advice(source))]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no ledger at {}: nothing has been recorded yet (run a pass first), or `ledger:` in the config points elsewhere", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot open the ledger {}: {source}{}", path.display(), open_advice(source))]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot migrate the ledger {} to schema version {version}: {source}; the file is unchanged{}", path.display(), migrate_advice(source))]
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
    #[error("ledger {}: cannot {action}: {source}{}", path.display(), sql_advice(source))]
    Sql {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("ledger {}: cannot commit a group of changes: {source}; none of them was recorded{}", path.display(), sql_advice(source))]
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
    #[error("ledger {}: cannot record `{change}` for {key}: the link has no row; the pass planned from rows the ledger does not hold (a bug: the rows are read again)", path.display())]
    UnknownLink {
        path: PathBuf,
        key: LinkKey,
        change: &'static str,
    },
    #[error("ledger {}: cannot record a new spec for {key}: it has no row in phase created or adopted (only a connection that exists is updated in place); run `atlas-linkd plan` to see what the next pass does", path.display())]
    NotUpdatable { path: PathBuf, key: LinkKey },
    #[error("ledger {}: the ledger writer has stopped; restart atlas-linkd", path.display())]
    Closed { path: PathBuf },
    #[error("ledger {}: cannot {action}: {source}{}", path.display(), postgres_advice(source))]
    Postgres {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: Arc<postgres::Error>,
    },
    #[error(transparent)]
    Connect(Arc<super::pg::ConnectError>),
    #[error("ledger {}: this process no longer holds the ledger's lease (another atlas-linkd took over, or the lease could not be renewed in time): nothing was written, and no create is sent", path.display())]
    Fenced { path: PathBuf },
    #[error("another atlas-linkd ({holder}) is active on the ledger {} (its lease runs {remaining_secs} s more); stop it, or wait for it with `--once --wait-for-lease DURATION`", path.display())]
    LeaseHeld {
        path: PathBuf,
        holder: String,
        remaining_secs: u64,
    },
    #[error("the ledger {} already holds {rows} row(s): a copy goes only into an empty ledger; point --to at a new one, or empty it first", path.display())]
    NotEmpty { path: PathBuf, rows: u64 },
    #[error("ledger {}: cannot start a thread: {source}", path.display())]
    Thread {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LedgerError {
    /// This process may no longer write: it lost the lease of a shared ledger.
    pub fn is_fenced(&self) -> bool {
        matches!(self, LedgerError::Fenced { .. })
    }

    /// The database could not be reached, or the connection broke: worth trying again.
    pub fn is_unreachable(&self) -> bool {
        match self {
            LedgerError::Connect(_) => true,
            LedgerError::Postgres { source, .. } => {
                source.is_closed() || source.as_db_error().is_none()
            }
            _ => false,
        }
    }

    /// The same error, for another waiter of a group commit that failed as a whole; `None` for
    /// the kinds a group commit does not fail with.
    pub(super) fn shared(&self) -> Option<LedgerError> {
        Some(match self {
            LedgerError::Postgres {
                path,
                action,
                source,
            } => LedgerError::Postgres {
                path: path.clone(),
                action,
                source: Arc::clone(source),
            },
            LedgerError::Connect(e) => LedgerError::Connect(Arc::clone(e)),
            LedgerError::Fenced { path } => LedgerError::Fenced { path: path.clone() },
            LedgerError::GroupCommit { path, source } => LedgerError::GroupCommit {
                path: path.clone(),
                source: Arc::clone(source),
            },
            _ => return None,
        })
    }

    /// A change the ledger refused because the row it is about is not what the caller believed
    /// (missing, or not in a phase the change applies to): the caller planned from a view of the
    /// ledger that was wrong, which is a bug to surface, not a fault of the database.
    pub fn is_refused(&self) -> bool {
        matches!(
            self,
            LedgerError::UnknownLink { .. } | LedgerError::NotUpdatable { .. }
        )
    }
}

/// What to do about a PostgreSQL error, with its leading "; ".
fn postgres_advice(e: &postgres::Error) -> &'static str {
    if e.is_closed() || e.as_db_error().is_none() {
        "; the database is unreachable or restarted: atlas-linkd connects again and retries, and sends no create meanwhile"
    } else {
        ""
    }
}

/// What to do about a failed file operation on the ledger, from what the OS said, with its leading
/// "; "; nothing when the OS error is all there is to say.
pub(crate) fn io_advice(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => "; free space on the ledger's file system",
        Some(libc::EACCES | libc::EPERM) => {
            "; check the permissions of the ledger's directory and files for the user atlas-linkd runs as"
        }
        Some(libc::EROFS) => {
            "; the file system is mounted read-only: point `ledger:` in the config at a writable place"
        }
        _ => "",
    }
}

/// `io_advice` for what SQLite said, with its leading "; ".
pub(crate) fn sql_advice(e: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "; free space on the ledger's file system",
        Some(ErrorCode::PermissionDenied) => {
            "; check the permissions of the ledger's directory and files for the user atlas-linkd runs as"
        }
        Some(ErrorCode::ReadOnly) => {
            "; the ledger cannot be written: check that its file system is not mounted read-only and the permissions of the ledger, its -wal and -shm files and its directory"
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            "; the file is not an intact atlas-linkd ledger: restore it from a backup"
        }
        _ => "",
    }
}

/// The advice when a ledger cannot be opened: `sql_advice`, or, when SQLite names no cause, the usual
/// suspects.
fn open_advice(e: &rusqlite::Error) -> &'static str {
    match sql_advice(e) {
        "" => "; check that it is an atlas-linkd ledger and readable",
        advice => advice,
    }
}

/// The advice when a migration failed: `sql_advice`, or a backup when SQLite names no cause.
fn migrate_advice(e: &rusqlite::Error) -> &'static str {
    match sql_advice(e) {
        "" => "; restore it from a backup if it is damaged",
        advice => advice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Error;

    fn sqlite(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn the_advice_follows_the_os_error() {
        let io = |errno| io_advice(&Error::from_raw_os_error(errno));
        assert!(io(libc::ENOSPC).contains("free space"));
        assert!(io(libc::EDQUOT).contains("free space"));
        assert!(io(libc::EACCES).contains("permissions"));
        assert!(io(libc::EPERM).contains("permissions"));
        assert!(io(libc::EROFS).contains("read-only"));
        // Anything else: the OS error as it is, and no guess.
        assert_eq!(io(libc::EIO), "");
        assert_eq!(io_advice(&Error::other("no errno")), "");
    }

    #[test]
    fn the_advice_follows_sqlites_error() {
        use rusqlite::ffi;
        assert!(sql_advice(&sqlite(ffi::SQLITE_FULL)).contains("free space"));
        assert!(sql_advice(&sqlite(ffi::SQLITE_PERM)).contains("permissions"));
        assert!(sql_advice(&sqlite(ffi::SQLITE_READONLY)).contains("read-only"));
        assert!(sql_advice(&sqlite(ffi::SQLITE_NOTADB)).contains("backup"));
        assert_eq!(sql_advice(&sqlite(ffi::SQLITE_BUSY)), "");
        assert_eq!(
            sql_advice(&rusqlite::Error::QueryReturnedNoRows),
            "",
            "not an SQLite failure"
        );
        // Opening: a cause SQLite names wins over the usual suspects.
        assert!(open_advice(&sqlite(ffi::SQLITE_FULL)).contains("free space"));
        assert!(open_advice(&sqlite(ffi::SQLITE_CANTOPEN)).contains("readable"));
    }

    #[test]
    fn a_disk_full_error_never_says_permissions() {
        let lock = LedgerError::Lock {
            path: PathBuf::from("/var/lib/atlas-linkd/ledger.db.lock"),
            source: Error::from_raw_os_error(libc::ENOSPC),
        };
        let text = lock.to_string();
        assert!(text.contains("free space"), "{text}");
        assert!(!text.contains("permission"), "{text}");
        let commit = LedgerError::GroupCommit {
            path: PathBuf::from("ledger.db"),
            source: Arc::new(sqlite(rusqlite::ffi::SQLITE_FULL)),
        };
        let text = commit.to_string();
        assert!(text.contains("free space"), "{text}");
        assert!(!text.contains("permission"), "{text}");
    }
}
