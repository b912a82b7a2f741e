//! `LedgerLocation`: where the ledger lives, as `ledger:` names it: a SQLite file, or a
//! PostgreSQL database (a `postgres://` or `postgresql://` URL).

use super::pg::Env;
use super::{
    LeaseSettings, Ledger, LedgerError, LedgerHandle, PgLedger, PgTarget, Take, TargetError,
    is_postgres_url,
};
use crate::model::Record;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the ledger lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    /// A SQLite file, locked by one process.
    File(PathBuf),
    /// A PostgreSQL database that several processes share, one active by a lease.
    Postgres(PgTarget),
}

impl LedgerLocation {
    /// What `ledger:` (or `ledger copy --to`) names: a `postgres://` or `postgresql://` URL, or
    /// else a path, made absolute by `resolve`.
    pub fn parse(
        text: &str,
        resolve: impl Fn(&Path) -> PathBuf,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<LedgerLocation, TargetError> {
        if is_postgres_url(text) {
            PgTarget::parse(text, env).map(LedgerLocation::Postgres)
        } else {
            Ok(LedgerLocation::File(resolve(Path::new(text))))
        }
    }

    /// The SQLite file, if the ledger is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            LedgerLocation::File(p) => Some(p),
            LedgerLocation::Postgres(_) => None,
        }
    }

    /// Which store, for the `store` label of `atlas_linkd_ledger_errors_total`.
    pub fn store(&self) -> &'static str {
        match self {
            LedgerLocation::File(_) => "sqlite",
            LedgerLocation::Postgres(_) => "postgres",
        }
    }
}

impl fmt::Display for LedgerLocation {
    /// The path, or the URL without secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerLocation::File(p) => write!(f, "{}", p.display()),
            LedgerLocation::Postgres(t) => write!(f, "{t}"),
        }
    }
}

impl LedgerLocation {
    /// Every row, read without the lock or the lease (beside a running daemon).
    pub fn read_only_records(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<Record>, LedgerError> {
        match self {
            LedgerLocation::File(path) => Ledger::read_only_records(path),
            LedgerLocation::Postgres(target) => {
                let (target, env) = (target.clone(), Env::capture(env));
                off_runtime(move || PgLedger::open_read_only(&target, env)?.records())
            }
        }
    }

    /// `read_only_records`, with no ledger yet being an empty one (the first plan of a new
    /// installation).
    pub fn read_only_records_or_none(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<Record>, LedgerError> {
        match self.read_only_records(env) {
            Err(LedgerError::NotFound { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Opens the ledger for writing behind its writer thread: a SQLite file under its lock, or a
    /// PostgreSQL database with its lease taken as `take` says.
    pub fn open(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        lease: LeaseSettings,
        take: Take,
    ) -> Result<LedgerHandle, LedgerError> {
        Ok(match self {
            LedgerLocation::File(path) => LedgerHandle::spawn(Ledger::open(path)?),
            LedgerLocation::Postgres(target) => {
                let (target, env) = (target.clone(), Env::capture(env));
                let ledger = off_runtime(move || PgLedger::open(&target, env, lease, take))?;
                LedgerHandle::spawn_postgres(ledger)
            }
        })
    }
}

/// Runs `f` on a thread of its own and waits for it: the synchronous PostgreSQL client runs a
/// runtime of its own, which cannot start on a thread that already runs tokio's.
fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerError> {
    match std::thread::Builder::new()
        .name("ledger-open".into())
        .spawn(f)
    {
        // A panic while connecting is a bug worth its panic.
        Ok(thread) => thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        Err(source) => Err(LedgerError::Thread {
            path: std::path::PathBuf::from("the PostgreSQL ledger"),
            source,
        }),
    }
}
