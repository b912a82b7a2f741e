//! The ledger: what atlas-linkd has done, in SQLite, one row per link, and the one-process lock around it.
//!
//! The ledger is the daemon's memory across crashes. A create is preceded by an `intent` row, so a
//! crash mid-call leaves a trace that makes the next pass list and adopt instead of creating twice.
//! Every write is a SQLite transaction in WAL mode with `synchronous=FULL`: committed means on disk.
//! `LedgerHandle` puts a dedicated thread in front of the connection and commits every change queued
//! while the previous commit ran in one transaction (group commit), so thousands of parallel creates
//! cost a few fsyncs.

use crate::model::{EndpointOutputs, Fingerprint, GroupId, LinkKey, LinkSpec, RemoteState};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use serde::Serialize;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Schema migrations, applied in order, each in its own transaction. `PRAGMA user_version` holds how
/// many have been applied. Append only: never edit a step that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: one row per declared link.
    "CREATE TABLE links (
        group_id          TEXT    NOT NULL,
        name              TEXT    NOT NULL,
        spec_json         TEXT    NOT NULL,
        fingerprint       TEXT    NOT NULL,
        atlas_id          TEXT,
        phase             TEXT    NOT NULL CHECK (phase IN ('intent', 'created', 'adopted', 'failed')),
        remote_state      TEXT,
        remote_error      TEXT,
        attempts          INTEGER NOT NULL DEFAULT 0,
        last_error        TEXT,
        next_attempt_unix INTEGER,
        created_unix      INTEGER NOT NULL,
        updated_unix      INTEGER NOT NULL,
        PRIMARY KEY (group_id, name)
    ) WITHOUT ROWID;",
    // 2: when the last create was sent (an unanswered one is in flight at Atlas until this plus
    // `settle_secs`), and the read-only outputs Atlas fills in as a connection comes up.
    "ALTER TABLE links ADD COLUMN sent_unix INTEGER;
     ALTER TABLE links ADD COLUMN interface_endpoint_id TEXT;
     ALTER TABLE links ADD COLUMN interface_endpoint_name TEXT;
     ALTER TABLE links ADD COLUMN provider_account_id TEXT;",
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a statement waits for another connection's write lock (a reader beside the daemon).
const BUSY_TIMEOUT_MS: u64 = 5_000;

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
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Intent => "intent",
            Phase::Created => "created",
            Phase::Adopted => "adopted",
            Phase::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "intent" => Some(Phase::Intent),
            "created" => Some(Phase::Created),
            "adopted" => Some(Phase::Adopted),
            "failed" => Some(Phase::Failed),
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
}

impl Record {
    /// The recorded spec, parsed.
    pub fn spec(&self) -> Result<LinkSpec, serde_json::Error> {
        serde_json::from_str(&self.spec_json)
    }
}

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
    /// The last state Atlas reported for a recorded link. The row must exist.
    RemoteState {
        key: LinkKey,
        state: RemoteState,
        error: Option<String>,
        outputs: EndpointOutputs,
        at_unix: i64,
    },
}

impl Change {
    pub fn key(&self) -> &LinkKey {
        match self {
            Change::Intent { key, .. }
            | Change::Created { key, .. }
            | Change::Adopted { key, .. }
            | Change::Failed { key, .. }
            | Change::RemoteState { key, .. } => key,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Change::Intent { .. } => "intent",
            Change::Created { .. } => "created",
            Change::Adopted { .. } => "adopted",
            Change::Failed { .. } => "failed",
            Change::RemoteState { .. } => "remote state",
        }
    }
}

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

/// An open ledger. `open` holds the process lock until the value is dropped.
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// Held (and locked) for the ledger's lifetime; `None` for a read-only open.
    _lock: Option<File>,
    commits: Arc<AtomicU64>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("locked", &self._lock.is_some())
            .finish()
    }
}

/// `<ledger>.lock`, beside the ledger.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

fn take_lock(path: &Path) -> Result<File, LedgerError> {
    let lock_path = lock_path(path);
    let lock_err = |source| LedgerError::Lock {
        path: lock_path.clone(),
        source,
    };
    // A fresh handle every time: flock locks belong to the open file description, so even a second
    // `open` in the same process is refused.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(lock_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder_pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(LedgerError::Locked {
                path: path.to_owned(),
                holder_pid,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
    }
    file.set_len(0).map_err(lock_err)?;
    file.seek(SeekFrom::Start(0)).map_err(lock_err)?;
    writeln!(file, "{}", std::process::id()).map_err(lock_err)?;
    file.sync_all().map_err(lock_err)?;
    Ok(file)
}

fn user_version(conn: &Connection, path: &Path) -> Result<i64, LedgerError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| LedgerError::Open {
            path: path.to_owned(),
            source,
        })
}

impl Ledger {
    /// Opens (creating and migrating as needed) the ledger for writing, holding the process lock.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|source| LedgerError::CreateDir {
                    path: parent.to_owned(),
                    source,
                })?;
        }
        let lock = take_lock(path)?;
        let create_err = |source| LedgerError::CreateFile {
            path: path.to_owned(),
            source,
        };
        // Create the file ourselves so it is owner-only from its first byte; SQLite gives the -wal
        // and -shm files the database file's permissions.
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(f) => {
                f.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(create_err)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(create_err(e)),
        }
        let open_err = |source| LedgerError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(open_err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode is {mode}, WAL was requested"
            ))));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        migrate(&mut conn, path)?;
        Ok(Ledger {
            conn,
            path: path.to_owned(),
            _lock: Some(lock),
            commits: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Opens the ledger for reading only, without the lock, beside a running daemon.
    pub fn open_read_only(path: &Path) -> Result<Ledger, LedgerError> {
        if !path.exists() {
            return Err(LedgerError::NotFound {
                path: path.to_owned(),
            });
        }
        let open_err = |source| LedgerError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(open_err)?;
        let found = user_version(&conn, path)?;
        if found > i64::from(SCHEMA_VERSION) {
            return Err(LedgerError::TooNew {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found < i64::from(SCHEMA_VERSION) {
            return Err(LedgerError::NotMigrated {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Ledger {
            conn,
            path: path.to_owned(),
            _lock: None,
            commits: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many write transactions this ledger has committed since it was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Every row, sorted by key.
    pub fn records(&self) -> Result<Vec<Record>, LedgerError> {
        let sql_err = |source| LedgerError::Sql {
            path: self.path.clone(),
            action: "read the records",
            source,
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT group_id, name, spec_json, fingerprint, atlas_id, phase, remote_state,
                        remote_error, attempts, last_error, next_attempt_unix, created_unix, updated_unix,
                        sent_unix, interface_endpoint_id, interface_endpoint_name, provider_account_id
                 FROM links ORDER BY group_id, name",
            )
            .map_err(sql_err)?;
        let mut rows = stmt.query([]).map_err(sql_err)?;
        let mut out = Vec::new();
        // Rows come sorted by project, so each project id is parsed once and shared by its rows.
        let mut group: Option<GroupId> = None;
        while let Some(r) = rows.next().map_err(sql_err)? {
            let text = |i| r.get_ref(i).and_then(|v| Ok(v.as_str()?));
            let opt_text = |i| r.get_ref(i).and_then(|v| Ok(v.as_str_or_null()?));
            let raw = RawRecord {
                group_id: text(0).map_err(sql_err)?,
                name: r.get(1).map_err(sql_err)?,
                spec_json: r.get(2).map_err(sql_err)?,
                fingerprint: text(3).map_err(sql_err)?,
                atlas_id: r.get(4).map_err(sql_err)?,
                phase: text(5).map_err(sql_err)?,
                remote_state: opt_text(6).map_err(sql_err)?,
                remote_error: r.get(7).map_err(sql_err)?,
                attempts: r.get(8).map_err(sql_err)?,
                last_error: r.get(9).map_err(sql_err)?,
                next_attempt_unix: r.get(10).map_err(sql_err)?,
                created_unix: r.get(11).map_err(sql_err)?,
                updated_unix: r.get(12).map_err(sql_err)?,
                sent_unix: r.get(13).map_err(sql_err)?,
                outputs: EndpointOutputs {
                    interface_endpoint_id: r.get(14).map_err(sql_err)?,
                    interface_endpoint_name: r.get(15).map_err(sql_err)?,
                    provider_account_id: r.get(16).map_err(sql_err)?,
                },
            };
            let record = raw.decode(&self.path, group.as_ref())?;
            if group.as_ref() != Some(&record.key.group_id) {
                group = Some(record.key.group_id.clone());
            }
            out.push(record);
        }
        Ok(out)
    }

    /// Applies every change in ONE transaction: all are recorded, or none.
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let sql_err = |action| {
            let path = path.clone();
            move |source| LedgerError::Sql {
                path,
                action,
                source,
            }
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err("begin a transaction"))?;
        for change in changes {
            write_change(&tx, &self.path, change)?;
        }
        tx.commit().map_err(sql_err("commit"))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Commits a group of changes, each under its own savepoint so that one bad change (say, a
    /// `Created` with no row) fails alone. Returns one result per change, or the commit's failure.
    fn apply_group(
        &mut self,
        changes: &[&Change],
    ) -> Result<Vec<Result<(), LedgerError>>, rusqlite::Error> {
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            let sp = tx.savepoint()?;
            match write_change(&sp, &self.path, change) {
                Ok(()) => {
                    sp.commit()?;
                    results.push(Ok(()));
                }
                Err(e) => {
                    // Dropping the savepoint rolls it back.
                    drop(sp);
                    results.push(Err(e));
                }
            }
        }
        tx.commit()?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(results)
    }

    /// Closes the connection, checkpointing the WAL, then releases the lock.
    pub fn close(self) -> Result<(), LedgerError> {
        let Ledger {
            conn, path, _lock, ..
        } = self;
        conn.close().map_err(|(_, source)| LedgerError::Sql {
            path,
            action: "close",
            source,
        })
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), LedgerError> {
    let found = user_version(conn, path)?;
    if found > i64::from(SCHEMA_VERSION) {
        return Err(LedgerError::TooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let start = usize::try_from(found).unwrap_or(0);
    for (index, step) in MIGRATIONS.iter().enumerate().skip(start) {
        let version = (index + 1) as u32;
        let err = |source| LedgerError::Migrate {
            path: path.to_owned(),
            version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(err)?;
        tx.execute_batch(step).map_err(err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

fn opt_state(state: &Option<RemoteState>) -> Option<&str> {
    state.as_ref().map(RemoteState::as_str)
}

/// Runs one statement through the connection's statement cache: the same five statements run
/// for every change, and parsing them each time costs more than executing them.
fn cached<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Writes one change inside the caller's transaction.
fn write_change(conn: &Connection, path: &Path, change: &Change) -> Result<(), LedgerError> {
    let sql_err = |source| LedgerError::Sql {
        path: path.to_owned(),
        action: "write a change",
        source,
    };
    let key = change.key();
    let (g, n) = (key.group_id.as_str(), key.name.as_str());
    let changed = match change {
        Change::Intent {
            spec,
            fingerprint,
            at_unix,
            ..
        } => cached(conn,
            "INSERT INTO links (group_id, name, spec_json, fingerprint, atlas_id, phase, attempts,
                                sent_unix, created_unix, updated_unix)
             VALUES (?1, ?2, ?3, ?4, NULL, 'intent', 0, ?5, ?5, ?5)
             ON CONFLICT (group_id, name) DO UPDATE SET
                spec_json = excluded.spec_json, fingerprint = excluded.fingerprint, atlas_id = NULL,
                phase = 'intent', remote_state = NULL, remote_error = NULL, next_attempt_unix = NULL,
                interface_endpoint_id = NULL, interface_endpoint_name = NULL,
                provider_account_id = NULL, sent_unix = excluded.sent_unix,
                updated_unix = excluded.updated_unix",
            params![g, n, spec.to_json(), fingerprint.to_hex(), at_unix],
        ),
        Change::Created {
            atlas_id, at_unix, ..
        } => cached(conn,
            "UPDATE links SET phase = 'created', atlas_id = ?3, attempts = 0, last_error = NULL,
                next_attempt_unix = NULL, updated_unix = ?4
             WHERE group_id = ?1 AND name = ?2",
            params![g, n, atlas_id, at_unix],
        ),
        Change::Adopted {
            spec,
            fingerprint,
            atlas_id,
            remote_state,
            remote_error,
            outputs,
            at_unix,
            ..
        } => cached(conn,
            "INSERT INTO links (group_id, name, spec_json, fingerprint, atlas_id, phase, remote_state,
                                remote_error, attempts, created_unix, updated_unix,
                                interface_endpoint_id, interface_endpoint_name, provider_account_id)
             VALUES (?1, ?2, ?3, ?4, ?5, 'adopted', ?6, ?7, 0, ?8, ?8, ?9, ?10, ?11)
             ON CONFLICT (group_id, name) DO UPDATE SET
                spec_json = excluded.spec_json, fingerprint = excluded.fingerprint,
                atlas_id = excluded.atlas_id, phase = 'adopted', remote_state = excluded.remote_state,
                remote_error = excluded.remote_error, attempts = 0, last_error = NULL,
                next_attempt_unix = NULL, updated_unix = excluded.updated_unix,
                interface_endpoint_id = excluded.interface_endpoint_id,
                interface_endpoint_name = excluded.interface_endpoint_name,
                provider_account_id = excluded.provider_account_id",
            params![
                g,
                n,
                spec.to_json(),
                fingerprint.to_hex(),
                atlas_id,
                opt_state(remote_state),
                remote_error,
                at_unix,
                outputs.interface_endpoint_id,
                outputs.interface_endpoint_name,
                outputs.provider_account_id
            ],
        ),
        Change::Failed {
            spec,
            fingerprint,
            error,
            next_attempt_unix,
            at_unix,
            ..
        } => cached(conn,
            "INSERT INTO links (group_id, name, spec_json, fingerprint, atlas_id, phase, attempts,
                                last_error, next_attempt_unix, created_unix, updated_unix)
             VALUES (?1, ?2, ?3, ?4, NULL, 'failed', 1, ?5, ?6, ?7, ?7)
             ON CONFLICT (group_id, name) DO UPDATE SET
                spec_json = excluded.spec_json, fingerprint = excluded.fingerprint, atlas_id = NULL,
                phase = 'failed', remote_state = NULL, remote_error = NULL,
                interface_endpoint_id = NULL, interface_endpoint_name = NULL,
                provider_account_id = NULL,
                attempts = links.attempts + 1, last_error = excluded.last_error,
                next_attempt_unix = excluded.next_attempt_unix, updated_unix = excluded.updated_unix",
            params![
                g,
                n,
                spec.to_json(),
                fingerprint.to_hex(),
                error,
                next_attempt_unix,
                at_unix
            ],
        ),
        Change::RemoteState {
            state,
            error,
            outputs,
            at_unix,
            ..
        } => cached(conn,
            "UPDATE links SET remote_state = ?3, remote_error = ?4, updated_unix = ?5,
                interface_endpoint_id = ?6, interface_endpoint_name = ?7, provider_account_id = ?8
             WHERE group_id = ?1 AND name = ?2",
            params![
                g,
                n,
                state.as_str(),
                error,
                at_unix,
                outputs.interface_endpoint_id,
                outputs.interface_endpoint_name,
                outputs.provider_account_id
            ],
        ),
    }
    .map_err(sql_err)?;
    if changed == 0 {
        return Err(LedgerError::UnknownLink {
            path: path.to_owned(),
            key: key.clone(),
            change: change.kind(),
        });
    }
    Ok(())
}

/// A row as SQLite holds it, before validation. The fields that are parsed are borrowed from
/// the row, so reading 100,000 rows does not allocate them.
struct RawRecord<'r> {
    group_id: &'r str,
    name: String,
    spec_json: String,
    fingerprint: &'r str,
    atlas_id: Option<String>,
    phase: &'r str,
    remote_state: Option<&'r str>,
    remote_error: Option<String>,
    attempts: i64,
    last_error: Option<String>,
    next_attempt_unix: Option<i64>,
    created_unix: i64,
    updated_unix: i64,
    sent_unix: Option<i64>,
    outputs: EndpointOutputs,
}

impl RawRecord<'_> {
    /// Decodes the row; `previous` is the project id of the row before, shared when it is the same.
    fn decode(self, path: &Path, previous: Option<&GroupId>) -> Result<Record, LedgerError> {
        let bad = |problem: String| LedgerError::BadRecord {
            path: path.to_owned(),
            key: format!("{}/{}", self.group_id, self.name),
            problem,
        };
        let group_id = match previous {
            Some(g) if g.as_str() == self.group_id => g.clone(),
            _ => GroupId::parse(self.group_id).map_err(|e| bad(e.to_string()))?,
        };
        let phase = Phase::parse(self.phase)
            .ok_or_else(|| bad(format!("unknown phase `{}`", self.phase)))?;
        let fingerprint = Fingerprint::from_hex(self.fingerprint).ok_or_else(|| {
            bad(format!(
                "fingerprint `{}` is not 64 hex digits",
                self.fingerprint
            ))
        })?;
        let attempts = u32::try_from(self.attempts)
            .map_err(|_| bad(format!("attempt count {} is out of range", self.attempts)))?;
        Ok(Record {
            key: LinkKey::new(group_id, self.name),
            spec_json: self.spec_json,
            fingerprint,
            atlas_id: self.atlas_id,
            phase,
            remote_state: self.remote_state.map(RemoteState::parse),
            remote_error: self.remote_error,
            attempts,
            last_error: self.last_error,
            next_attempt_unix: self.next_attempt_unix,
            sent_unix: self.sent_unix,
            outputs: self.outputs,
            created_unix: self.created_unix,
            updated_unix: self.updated_unix,
        })
    }
}

enum Request {
    Apply(Box<Change>, oneshot::Sender<Result<(), LedgerError>>),
    Records(oneshot::Sender<Result<Vec<Record>, LedgerError>>),
    Close(oneshot::Sender<Result<(), LedgerError>>),
}

/// The most changes one group commit takes, so that a flood cannot grow one transaction unboundedly.
const MAX_GROUP: usize = 4096;

/// Async front for the executor: a dedicated thread owns the connection and commits every change
/// queued while the previous commit ran in ONE transaction (group commit), so thousands of parallel
/// creates cost a few fsyncs, not thousands. `apply` returns only after the transaction holding its
/// change committed (durable).
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::Sender<Request>,
    path: PathBuf,
    commits: Arc<AtomicU64>,
}

impl fmt::Debug for LedgerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerHandle")
            .field("path", &self.path)
            .finish()
    }
}

impl LedgerHandle {
    /// Moves the ledger onto its own thread. Works inside or outside a tokio runtime.
    pub fn spawn(ledger: Ledger) -> LedgerHandle {
        let (tx, rx) = mpsc::channel();
        let path = ledger.path.clone();
        let commits = Arc::clone(&ledger.commits);
        let spawned = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || writer(ledger, rx));
        if let Err(e) = spawned {
            // The receiver is gone with the closure, so every call reports `Closed`.
            tracing::error!(ledger = %path.display(), error = %e, "cannot start the ledger thread");
        }
        LedgerHandle { tx, path, commits }
    }

    fn closed(&self) -> LedgerError {
        LedgerError::Closed {
            path: self.path.clone(),
        }
    }

    /// Records one change; returns once the transaction holding it has committed.
    pub async fn apply(&self, change: Change) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Apply(Box::new(change), tx))
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Every row, sorted by key, including every change applied before this call.
    pub async fn records(&self) -> Result<Vec<Record>, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Records(tx))
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// How many transactions the writer has committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Flushes what is queued, stops the thread, closes the database and releases the lock.
    /// Other clones of this handle get `Closed` afterwards.
    pub async fn close(self) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Close(tx))
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }
}

fn commit_group(
    ledger: &mut Ledger,
    batch: &mut Vec<(Change, oneshot::Sender<Result<(), LedgerError>>)>,
) {
    if batch.is_empty() {
        return;
    }
    let changes: Vec<&Change> = batch.iter().map(|(c, _)| c).collect();
    match ledger.apply_group(&changes) {
        Ok(results) => {
            for ((_, reply), result) in batch.drain(..).zip(results) {
                // The caller may have given up waiting; its change is recorded all the same.
                let _ = reply.send(result);
            }
        }
        Err(source) => {
            let source = Arc::new(source);
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(LedgerError::GroupCommit {
                    path: ledger.path.clone(),
                    source: Arc::clone(&source),
                }));
            }
        }
    }
}

fn writer(mut ledger: Ledger, rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Apply(change, reply) => batch.push((*change, reply)),
                Request::Records(reply) => {
                    // Commit what came before, so a reader sees its own writes.
                    commit_group(&mut ledger, &mut batch);
                    let _ = reply.send(ledger.records());
                }
                Request::Close(reply) => {
                    commit_group(&mut ledger, &mut batch);
                    let _ = reply.send(ledger.close());
                    return;
                }
            }
            if batch.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        commit_group(&mut ledger, &mut batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuthScheme, Provider, Vendor};

    fn gid() -> GroupId {
        GroupId::parse("32b6e34b3d91647abb20e7b8").unwrap()
    }

    fn spec(arn: &str) -> LinkSpec {
        LinkSpec {
            arn: Some(arn.into()),
            authentication_scheme: Some(AuthScheme::Iam),
            ..LinkSpec::new(Provider::Aws, Vendor::Msk)
        }
    }

    fn intent(name: &str, at: i64) -> Change {
        let s = spec(&format!("arn:aws:kafka:us-east-1:1:cluster/{name}/1"));
        Change::Intent {
            key: LinkKey::new(gid(), name),
            fingerprint: s.fingerprint(),
            spec: s,
            at_unix: at,
        }
    }

    const CHILD_ENV: &str = "ATLAS_LINKD_LEDGER_ABORT_CHILD";

    /// Re-runs itself as a child process that commits one change, then dies by `abort` in the
    /// middle of a second transaction; the parent checks that only the committed state remains.
    #[test]
    fn interrupted_transaction_leaves_earlier_state() {
        if let Ok(path) = std::env::var(CHILD_ENV) {
            abort_mid_transaction(Path::new(&path));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ledger::store::tests::interrupted_transaction_leaves_earlier_state",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child must die by abort");
        // The lock died with the child, and the committed state is all there is.
        let ledger = Ledger::open(&path).unwrap();
        let records = ledger.records().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].key.name, "kept");
        assert_eq!(records[0].phase, Phase::Intent);
        assert_eq!(records[0].atlas_id, None);
    }

    fn abort_mid_transaction(path: &Path) -> ! {
        let mut ledger = Ledger::open(path).unwrap();
        ledger.apply(&[intent("kept", 10)]).unwrap();
        let tx = ledger
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        write_change(&tx, &ledger.path, &intent("lost", 20)).unwrap();
        write_change(
            &tx,
            &ledger.path,
            &Change::Created {
                key: LinkKey::new(gid(), "kept"),
                atlas_id: "65a1b2c3d4e5f60718293a4b".into(),
                at_unix: 21,
            },
        )
        .unwrap();
        std::process::abort();
    }

    #[test]
    fn bad_phase_is_an_error_naming_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let mut ledger = Ledger::open(&path).unwrap();
        ledger.apply(&[intent("a", 1)]).unwrap();
        // The CHECK constraint guards phase; a bad group id is what can slip in.
        ledger
            .conn
            .execute("UPDATE links SET group_id = 'NOT-A-GROUP'", [])
            .unwrap();
        let err = ledger.records().unwrap_err();
        assert!(matches!(err, LedgerError::BadRecord { .. }), "{err}");
        assert!(err.to_string().contains("NOT-A-GROUP/a"), "{err}");
    }

    #[test]
    fn decode_rejects_unknown_phase_and_negative_attempts() {
        let group = gid().to_string();
        let fingerprint = "ab".repeat(32);
        let raw = || RawRecord {
            group_id: &group,
            name: "x".into(),
            spec_json: "{}".into(),
            fingerprint: &fingerprint,
            atlas_id: None,
            phase: "intent",
            remote_state: Some("DONE"),
            remote_error: None,
            attempts: 0,
            last_error: None,
            next_attempt_unix: None,
            created_unix: 0,
            updated_unix: 0,
            sent_unix: None,
            outputs: EndpointOutputs::default(),
        };
        let p = Path::new("/l.db");
        let good = raw().decode(p, None).unwrap();
        assert_eq!(good.remote_state, Some(RemoteState::Done));
        assert_eq!(good.fingerprint.to_hex(), fingerprint);
        // The previous row's project id is shared, not parsed again.
        let next = raw().decode(p, Some(&good.key.group_id)).unwrap();
        assert_eq!(next.key, good.key);
        let mut r = raw();
        r.phase = "exploded";
        assert!(
            r.decode(p, None)
                .unwrap_err()
                .to_string()
                .contains("exploded")
        );
        let mut r = raw();
        r.fingerprint = "f";
        assert!(
            r.decode(p, None)
                .unwrap_err()
                .to_string()
                .contains("fingerprint `f`")
        );
        let mut r = raw();
        r.attempts = -1;
        assert!(matches!(
            r.decode(p, None).unwrap_err(),
            LedgerError::BadRecord { .. }
        ));
    }
}
