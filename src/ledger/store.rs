//! `Ledger`: the SQLite store of one row per link, behind a one-process lock: open, read, apply.

use super::identity::{FileId, HeldFiles};
use super::rows::{RawRecord, Written, insert_record, write_change};
use super::schema::{BUSY_TIMEOUT_MS, check_readable, migrate, user_version};
use super::{Change, LedgerError};
use crate::model::{EndpointOutputs, GroupId, LinkKey, PruneMark, Record};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An open ledger. `open` holds the process lock until the value is dropped.
pub struct Ledger {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    /// Held (and locked) for the ledger's lifetime; `None` for a read-only open.
    _lock: Option<File>,
    pub(super) commits: Arc<AtomicU64>,
}

/// How a reader opens the ledger.
///
/// A WAL-mode database is read through its `-wal` and `-shm` files, which SQLite creates when they
/// are missing, even for a read-only connection: that fails on a read-only file system, and would
/// leave files of the reader's making beside the ledger. When no `-wal` exists, no writer is running
/// and the last one checkpointed everything into the file, so the file alone is the ledger: it is
/// opened `immutable` (no lock, no `-wal`, no `-shm`). When a `-wal` exists, a writer may be running
/// and the latest changes may be only there, so the reader shares it (`Shared`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    Shared,
    Immutable,
}

/// `<ledger>-wal`, SQLite's write-ahead log beside the ledger.
fn wal_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// Whether opening a shared reader failed for want of its `-wal` / `-shm` files (a read-only file
/// system or directory), not because of the ledger itself.
fn cannot_share(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
    )
}

/// The SQLite URI that opens `path` read-only and immutable. Every byte but the unreserved ones is
/// percent-encoded, so that no `?`, `#` or `%` in a path is read as URI syntax; an absolute path
/// gets an empty authority (`file:///...`), so that a path starting with `//` is not taken for one.
fn immutable_uri(path: &Path) -> String {
    use std::fmt::Write as _;
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from(if path.is_absolute() {
        "file://"
    } else {
        "file:"
    });
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            let _ = write!(uri, "%{b:02X}");
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
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

/// The columns `decode_row` reads, in its order.
/// From this many rows on, a writer's first read uses two connections (`records_in_parallel`).
const PARALLEL_READ_ROWS: usize = 50_000;

const COLUMNS: &str = "group_id, name, spec_json, fingerprint, atlas_id, phase, remote_state,
    remote_error, attempts, last_error, next_attempt_unix, created_unix, updated_unix,
    sent_unix, interface_endpoint_id, interface_endpoint_name, provider_account_id,
    undeclared_since_unix, delete_in_use";

/// Decodes a row of `COLUMNS`; `previous` is the project id of the row before, shared when the same.
fn decode_row(
    r: &rusqlite::Row<'_>,
    path: &Path,
    previous: Option<&GroupId>,
) -> Result<Record, LedgerError> {
    let sql_err = |source| LedgerError::Sql {
        path: path.to_owned(),
        action: "read the records",
        source,
    };
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
        prune: PruneMark {
            undeclared_since_unix: r.get(17).map_err(sql_err)?,
            in_use: r.get(18).map_err(sql_err)?,
        },
    };
    raw.decode(path, previous)
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

    /// Opens the ledger for reading only, without the lock, beside a running daemon, or on a
    /// read-only file system. See `ReadMode` for how; `read_only_records` also rereads when a
    /// writer started during the read.
    pub fn open_read_only(path: &Path) -> Result<Ledger, LedgerError> {
        if !path.exists() {
            return Err(LedgerError::NotFound {
                path: path.to_owned(),
            });
        }
        if !wal_path(path).exists() {
            return Ledger::open_reader(path, ReadMode::Immutable);
        }
        match Ledger::open_reader(path, ReadMode::Shared) {
            Err(LedgerError::Open { source, .. }) if cannot_share(&source) => {
                // A log we cannot open: a copy of a live ledger on a read-only mount, say. The
                // file alone is still a consistent ledger, as of the last checkpoint.
                let log_len = std::fs::metadata(wal_path(path)).map_or(0, |m| m.len());
                if log_len > 0 {
                    tracing::warn!(
                        ledger = %path.display(),
                        error = %source,
                        "cannot read the ledger's write-ahead log (-wal): showing the ledger as of its last checkpoint; the latest changes may be missing"
                    );
                }
                Ledger::open_reader(path, ReadMode::Immutable)
            }
            other => other,
        }
    }

    /// Every row of the ledger at `path`, read as `open_read_only` reads it. A read that took the
    /// file alone because no writer was running is taken again, sharing the log, when a writer
    /// started meanwhile: its first checkpoint could have changed the file under the read, whether
    /// the read then failed or not.
    pub fn read_only_records(path: &Path) -> Result<Vec<Record>, LedgerError> {
        let log_before = wal_path(path).exists();
        let read = Ledger::open_read_only(path).and_then(|l| l.records());
        if !log_before && wal_path(path).exists() {
            return Ledger::open_reader(path, ReadMode::Shared)?.records();
        }
        read
    }

    fn open_reader(path: &Path, mode: ReadMode) -> Result<Ledger, LedgerError> {
        let open_err = |source| LedgerError::Open {
            path: path.to_owned(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match mode {
            ReadMode::Shared => Connection::open_with_flags(path, flags),
            ReadMode::Immutable => {
                Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
            }
        }
        .map_err(open_err)?;
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(open_err)?;
        check_readable(user_version(&conn, path)?, path)?;
        Ok(Ledger {
            conn,
            path: path.to_owned(),
            _lock: None,
            commits: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Every row, sorted by key.
    pub fn records(&self) -> Result<Vec<Record>, LedgerError> {
        // Sized first: growing by doubling would copy every row a second time, and hold the old
        // and new buffers together (half a gigabyte at a million rows) at the top of the read.
        let mut out = Vec::with_capacity(self.count()?);
        self.read_rows("", [], |r| out.push(r))?;
        Ok(out)
    }

    /// `records`, read on two connections at once when there are many rows: decoding a row costs
    /// more than SQLite's step, and a writer's first read of a million rows took over a second on
    /// one core. Each half is written into its own part of one vector (filled with a stand-in
    /// first), so no half is copied after it was read.
    pub(super) fn records_in_parallel(&self) -> Result<Vec<Record>, LedgerError> {
        if self.count()? < PARALLEL_READ_ROWS {
            return self.records();
        }
        match self.read_halves()? {
            Some(records) => Ok(records),
            // The rows changed between the count and the reads, which the lock forbids: read
            // again, the plain way, rather than trust either half.
            None => self.records(),
        }
    }

    /// Every row, the first half and the second read at once on two connections; `None` when
    /// the halves did not hold the rows counted first, the second connection could not read, or
    /// there are fewer than two rows.
    pub(super) fn read_halves(&self) -> Result<Option<Vec<Record>>, LedgerError> {
        let n = self.count()?;
        if n < 2 {
            return Ok(None);
        }
        let half = n / 2;
        // The first key of the second half.
        let (group, name): (String, String) = self
            .conn
            .query_row(
                "SELECT group_id, name FROM links ORDER BY group_id, name LIMIT 1 OFFSET ?1",
                [i64::try_from(half).unwrap_or(i64::MAX)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql_err("read the records"))?;
        let Ok(stand_in_group) = GroupId::parse(&group) else {
            // A bad row: the plain read reports it, with its key.
            return Ok(None);
        };
        // The second connection only speeds the read up: whatever keeps it from reading, the plain
        // read (on the writer's own connection) is the one that reports.
        let Ok(second) = Ledger::open_reader(&self.path, ReadMode::Shared) else {
            return Ok(None);
        };
        let mut out = vec![Record::stand_in(stand_in_group); n];
        let (first_half, second_half) = out.split_at_mut(half);
        let split = (group.as_str(), name.as_str());
        let (first, second) = std::thread::scope(|scope| {
            let second = scope.spawn(move || {
                second.fill("WHERE (group_id, name) >= (?1, ?2)", split, second_half)
            });
            let first = self.fill("WHERE (group_id, name) < (?1, ?2)", split, first_half);
            (first, second.join())
        });
        // A reader thread panicking is a bug worth its panic. The first half failing is the
        // ledger's own error (the plain read would meet it too); the second failing, the plain read
        // decides.
        let second = second.expect("a ledger reader thread panicked");
        Ok((first? && second.unwrap_or(false)).then_some(out))
    }

    /// Decodes the rows that `condition` (on `split`) selects, in key order, into `slots`; whether
    /// there were exactly as many rows as slots.
    fn fill(
        &self,
        condition: &str,
        split: (&str, &str),
        slots: &mut [Record],
    ) -> Result<bool, LedgerError> {
        let mut slots = slots.iter_mut();
        let mut fits = true;
        self.read_rows(condition, [split.0, split.1], |r| match slots.next() {
            Some(slot) => *slot = r,
            None => fits = false,
        })?;
        Ok(fits && slots.next().is_none())
    }

    /// Every row that `condition` selects, in key order, decoded and handed to `each`.
    fn read_rows<P: rusqlite::Params>(
        &self,
        condition: &str,
        params: P,
        mut each: impl FnMut(Record),
    ) -> Result<(), LedgerError> {
        let sql_err = self.sql_err("read the records");
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM links {condition} ORDER BY group_id, name"
            ))
            .map_err(&sql_err)?;
        let mut rows = stmt.query(params).map_err(&sql_err)?;
        // Rows come sorted by project, so each project id is parsed once and shared by its rows.
        let mut group: Option<GroupId> = None;
        while let Some(r) = rows.next().map_err(&sql_err)? {
            let record = decode_row(r, &self.path, group.as_ref())?;
            if group.as_ref() != Some(&record.key.group_id) {
                group = Some(record.key.group_id.clone());
            }
            each(record);
        }
        Ok(())
    }

    /// How many rows there are.
    fn count(&self) -> Result<usize, LedgerError> {
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM links", [], |r| r.get(0))
            .map_err(self.sql_err("count the records"))?;
        // SQLite never counts below zero; a count it cannot give is taken as none.
        Ok(usize::try_from(count).unwrap_or(0))
    }

    fn sql_err(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        move |source| LedgerError::Sql {
            path: self.path.clone(),
            action,
            source,
        }
    }

    /// The row of one link, if there is one. `group` is shared by the record when it is the same
    /// project id.
    pub(super) fn record(
        &self,
        key: &LinkKey,
        group: Option<&GroupId>,
    ) -> Result<Option<Record>, LedgerError> {
        let sql_err = |source| LedgerError::Sql {
            path: self.path.clone(),
            action: "read a record",
            source,
        };
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM links WHERE group_id = ?1 AND name = ?2"
            ))
            .map_err(sql_err)?;
        let mut rows = stmt
            .query(rusqlite::params![key.group_id.as_str(), key.name])
            .map_err(sql_err)?;
        match rows.next().map_err(sql_err)? {
            Some(r) => Ok(Some(decode_row(r, &self.path, group)?)),
            None => Ok(None),
        }
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
    pub(super) fn apply_group(
        &mut self,
        changes: &[&Change],
    ) -> Result<Vec<Result<Written, LedgerError>>, rusqlite::Error> {
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            let sp = tx.savepoint()?;
            match write_change(&sp, &self.path, change) {
                Ok(written) => {
                    sp.commit()?;
                    results.push(Ok(written));
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

    /// Inserts every row as it is, in one transaction, into a ledger with none (`ledger copy`).
    pub(super) fn import(&mut self, records: &[Record]) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let sql_err = |source| LedgerError::Sql {
            path: path.clone(),
            action: "copy rows in",
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err)?;
        let rows: i64 = tx
            .query_row("SELECT count(*) FROM links", [], |r| r.get(0))
            .map_err(sql_err)?;
        if rows > 0 {
            return Err(LedgerError::NotEmpty {
                path,
                rows: rows.unsigned_abs(),
            });
        }
        for r in records {
            let s = insert_record(r);
            tx.prepare_cached(s.sql)
                .and_then(|mut st| st.execute(rusqlite::params_from_iter(&s.params)))
                .map_err(sql_err)?;
        }
        tx.commit().map_err(sql_err)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
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

impl Ledger {
    /// The ledger and lock files this ledger holds, for `HeldFiles::check`; `None` for a read-only
    /// open, which holds no lock. The lock's identity is that of the open, locked descriptor; the
    /// ledger's is what its path names now, so call this right after `open`.
    pub(super) fn held_files(&self) -> Option<HeldFiles> {
        let lock = self._lock.as_ref()?;
        Some(HeldFiles {
            ledger_path: self.path.clone(),
            ledger: std::fs::metadata(&self.path).ok().map(|m| FileId::of(&m)),
            lock_path: lock_path(&self.path),
            lock: lock.metadata().ok().map(|m| FileId::of(&m)),
        })
    }
}
