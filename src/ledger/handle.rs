//! `LedgerHandle`: the group-commit writer thread in front of a `Ledger`, for async callers, and the
//! writer's copy of every row in memory (`snapshot`), which a pass plans from.

use super::identity::HeldFiles;
use super::pg::{Lease, PgLedger};
use super::rows::Written;
use super::{Change, Ledger, LedgerError, NotHeld};
use crate::model::{LinkKey, Record};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

enum Request {
    Apply(Box<Change>, oneshot::Sender<Result<(), LedgerError>>),
    Records(oneshot::Sender<Result<Vec<Record>, LedgerError>>),
    Snapshot(oneshot::Sender<Result<Arc<Vec<Record>>, LedgerError>>),
    Import(Vec<Record>, oneshot::Sender<Result<(), LedgerError>>),
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
    /// The ledger and lock files as they were when the ledger was opened; `None` for a read-only one.
    held: Option<Arc<HeldFiles>>,
    /// The lease of a shared (PostgreSQL) ledger.
    lease: Option<Arc<Lease>>,
}

/// The store behind the writer thread: the two implementations of one ledger model.
enum Store {
    Sqlite(Ledger),
    Postgres(Box<PgLedger>),
}

impl Store {
    fn name(&self) -> PathBuf {
        match self {
            Store::Sqlite(l) => l.path.clone(),
            Store::Postgres(l) => l.name().clone(),
        }
    }

    /// Under which lease epoch the rows read now stay true: a SQLite ledger is locked for the
    /// process's life (always the same); a shared one only while this process holds its lease.
    fn epoch(&self) -> Option<i64> {
        match self {
            Store::Sqlite(_) => Some(0),
            Store::Postgres(l) => l.lease().and_then(|lease| lease.epoch()),
        }
    }

    fn records(&mut self) -> Result<Vec<Record>, LedgerError> {
        match self {
            Store::Sqlite(l) => l.records(),
            Store::Postgres(l) => l.records(),
        }
    }

    /// A writer's first read of every row.
    fn first_read(&mut self) -> Result<Vec<Record>, LedgerError> {
        match self {
            Store::Sqlite(l) => l.records_in_parallel(),
            Store::Postgres(l) => l.records(),
        }
    }

    fn record(
        &mut self,
        key: &LinkKey,
        group: Option<&crate::model::GroupId>,
    ) -> Result<Option<Record>, LedgerError> {
        match self {
            Store::Sqlite(l) => l.record(key, group),
            Store::Postgres(l) => l.record(key, group),
        }
    }

    fn apply_group(
        &mut self,
        changes: &[&Change],
    ) -> Result<Vec<Result<Written, LedgerError>>, LedgerError> {
        match self {
            Store::Sqlite(l) => l
                .apply_group(changes)
                .map_err(|source| LedgerError::GroupCommit {
                    path: l.path.clone(),
                    source: Arc::new(source),
                }),
            Store::Postgres(l) => l.apply_group(changes),
        }
    }

    fn import(&mut self, records: &[Record]) -> Result<(), LedgerError> {
        match self {
            Store::Sqlite(l) => l.import(records),
            Store::Postgres(l) => l.import(records),
        }
    }

    fn close(self) -> Result<(), LedgerError> {
        match self {
            Store::Sqlite(l) => l.close(),
            Store::Postgres(l) => l.close(),
        }
    }
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
        let commits = Arc::clone(&ledger.commits);
        let held = ledger.held_files().map(Arc::new);
        LedgerHandle::spawn_store(Store::Sqlite(ledger), commits, held, None)
    }

    /// Moves a PostgreSQL ledger onto its own thread; its lease thread runs beside it.
    pub fn spawn_postgres(ledger: PgLedger) -> LedgerHandle {
        let commits = Arc::clone(&ledger.commits);
        let lease = ledger.lease().cloned();
        LedgerHandle::spawn_store(Store::Postgres(Box::new(ledger)), commits, None, lease)
    }

    fn spawn_store(
        store: Store,
        commits: Arc<AtomicU64>,
        held: Option<Arc<HeldFiles>>,
        lease: Option<Arc<Lease>>,
    ) -> LedgerHandle {
        let (tx, rx) = mpsc::channel();
        let path = store.name();
        let spawned = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || writer(store, rx));
        if let Err(e) = spawned {
            // The receiver is gone with the closure, so every call reports `Closed`.
            tracing::error!(ledger = %path.display(), error = %e, "cannot start the ledger thread");
        }
        LedgerHandle {
            tx,
            path,
            commits,
            held,
            lease,
        }
    }

    /// The lease, when the ledger is shared (PostgreSQL).
    pub fn lease(&self) -> Option<&Arc<Lease>> {
        self.lease.as_ref()
    }

    /// The ledger as messages name it: its path, or its database without secrets.
    pub fn name(&self) -> &std::path::Path {
        &self.path
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

    /// Every row, sorted by key, including every change applied before this call: the writer's copy
    /// in memory, read from SQLite once (on the first call) and kept up to date by the writer after
    /// each commit. Used by passes, which would otherwise read every row on every pass.
    ///
    /// Let go of it before the next call: the writer folds the changes since the last call into the
    /// same vector, in place when nobody else holds it, and copies all of it when someone does.
    pub async fn snapshot(&self) -> Result<Arc<Vec<Record>>, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Snapshot(tx))
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Whether this process may still send creates from this ledger: a SQLite ledger and its lock
    /// file at their paths are still the ones it opened and locked (device and inode; a missing
    /// path counts as replaced); a shared ledger's lease is still its own by its monotonic clock.
    /// Two `stat`s or one clock read, no call to the writer thread.
    pub fn check_held(&self) -> Result<(), NotHeld> {
        if let Some(lease) = &self.lease
            && lease.epoch().is_none()
        {
            return Err(NotHeld::LeaseLost {
                ledger: self.path.display().to_string(),
            });
        }
        match &self.held {
            Some(held) => Ok(held.check()?),
            None => Ok(()),
        }
    }

    /// Whether a create whose intent began to be written at `intent_began` may leave now: always
    /// on SQLite; on a shared ledger only while the lease holds by this process's clock and within
    /// `SEND_MARGIN_SECS` of the intent (`reconcile.settle_secs` covers that margin).
    pub fn may_send(&self, intent_began: std::time::Instant) -> bool {
        match &self.lease {
            None => true,
            Some(lease) => {
                lease.epoch().is_some()
                    && intent_began.elapsed()
                        <= std::time::Duration::from_secs(super::SEND_MARGIN_SECS)
            }
        }
    }

    /// How many transactions the writer has committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Inserts every row as it is, into a ledger that holds none (`ledger copy`); refused
    /// (`NotEmpty`) otherwise.
    pub async fn import(&self, records: Vec<Record>) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Import(records, tx))
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
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

/// The writer's copy of every row.
///
/// Kept by the writer thread, not by the reconciler: this thread is the only writer of the ledger (the
/// process holds its lock), it sees every change in commit order, and it updates the copy only after
/// the transaction holding a change committed, from the row as committed, read back through the same
/// connection. So the copy is what SQLite holds, including what the SQL itself decides (the attempt
/// count, the columns an upsert clears), which a replay of each `Change` in Rust would have to repeat
/// and could get wrong. A failed commit changes neither; a failed read-back drops the copy, to be read
/// whole again by the next `snapshot`.
#[derive(Default)]
struct Memory {
    /// `None` until the first `snapshot`, and after a failed read-back.
    records: Option<Arc<Vec<Record>>>,
    /// Rows committed since the last `snapshot`, as committed; folded into `records` by the next one.
    /// Kept apart so that a pass holding the last snapshot does not make every commit copy it.
    /// `None`: the row was deleted (`Change::Forget`).
    updates: BTreeMap<LinkKey, Option<Record>>,
    /// The lease epoch `records` were read under: on a shared ledger, rows read before this
    /// process last became active may have been changed by the process active meanwhile.
    epoch: Option<i64>,
}

impl Memory {
    fn snapshot(&mut self, ledger: &mut Store) -> Result<Arc<Vec<Record>>, LedgerError> {
        let epoch = ledger.epoch();
        if epoch.is_none() || epoch != self.epoch {
            self.records = None;
            self.epoch = epoch;
        }
        let records = match &mut self.records {
            Some(r) => r,
            None => {
                // Everything committed so far is in this read.
                self.updates.clear();
                self.records.insert(Arc::new(ledger.first_read()?))
            }
        };
        if !self.updates.is_empty() {
            let rows = Arc::make_mut(records);
            if !fold(rows, std::mem::take(&mut self.updates)) {
                // A bug, not a fault of the disk: trust nothing kept, and say so.
                tracing::error!(
                    "the ledger's rows in memory were out of order after folding in new changes; reading them again"
                );
                self.records = None;
                return self.snapshot(ledger);
            }
        }
        Ok(Arc::clone(records))
    }

    /// After a commit: reads back the rows of the changes that were recorded.
    fn committed(
        &mut self,
        ledger: &mut Store,
        changes: &[&Change],
        results: &[Result<Written, LedgerError>],
    ) {
        if self.records.is_none() {
            return;
        }
        for (change, result) in changes.iter().zip(results) {
            match result {
                Ok(Written::Row) => {}
                Ok(Written::Nothing) => continue,
                // The caller planned from this copy: whatever made it wrong, read it all again.
                Err(e) if e.is_refused() => {
                    self.forget(&e.to_string());
                    return;
                }
                Err(_) => continue,
            }
            // Each row the change touched, as committed: present, or gone (a forget, the old
            // name of a rename).
            for key in change.keys() {
                match ledger.record(key, Some(&key.group_id)) {
                    Ok(row) => {
                        self.updates.insert(key.clone(), row);
                    }
                    Err(e) => {
                        self.forget(&e.to_string());
                        return;
                    }
                }
            }
        }
    }

    fn forget(&mut self, why: &str) {
        tracing::warn!(
            reason = why,
            "the ledger's rows in memory cannot be trusted; the next pass reads the whole ledger again"
        );
        self.records = None;
        self.updates.clear();
    }
}

/// Folds rows committed since the last snapshot (`None`: deleted) into `rows`, which are in key
/// order, each key once; whether they still are. New rows are added only after every existing one
/// was found: a row pushed to the end while others are still being looked up makes the binary
/// search miss them, and a missed row was pushed a second time, stale beside its new version.
fn fold(rows: &mut Vec<Record>, updates: BTreeMap<LinkKey, Option<Record>>) -> bool {
    let mut added = Vec::new();
    for (key, record) in updates {
        match (rows.binary_search_by(|r| r.key.cmp(&key)), record) {
            (Ok(i), Some(record)) => rows[i] = record,
            // Removing keeps the order.
            (Ok(i), None) => {
                rows.remove(i);
            }
            (Err(_), Some(record)) => added.push(record),
            (Err(_), None) => {}
        }
    }
    if added.is_empty() {
        return true;
    }
    // Two runs in key order (`updates` is a `BTreeMap`): a stable sort merges them in one sweep.
    // `Ledger::records` orders by (group_id, name) with SQLite's binary collation, which is
    // `LinkKey`'s byte-wise order.
    rows.extend(added);
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    rows.is_sorted_by(|a, b| a.key < b.key)
}

fn commit_group(
    ledger: &mut Store,
    memory: &mut Memory,
    batch: &mut Vec<(Change, oneshot::Sender<Result<(), LedgerError>>)>,
) {
    if batch.is_empty() {
        return;
    }
    let changes: Vec<&Change> = batch.iter().map(|(c, _)| c).collect();
    match ledger.apply_group(&changes) {
        Ok(results) => {
            memory.committed(ledger, &changes, &results);
            drop(changes);
            for ((_, reply), result) in batch.drain(..).zip(results) {
                // The caller may have given up waiting; its change is recorded all the same.
                let _ = reply.send(result.map(|_| ()));
            }
        }
        Err(error) => {
            drop(changes);
            if error.is_fenced() || error.is_unreachable() {
                // Rows this process planned from may have changed under another holder, or
                // while the connection was down.
                memory.forget(&error.to_string());
            }
            let mut first = Some(error);
            for (_, reply) in batch.drain(..) {
                let e = match first.as_ref().and_then(LedgerError::shared) {
                    Some(shared) => shared,
                    None => first.take().unwrap_or_else(|| LedgerError::Closed {
                        path: ledger.name(),
                    }),
                };
                let _ = reply.send(Err(e));
            }
        }
    }
}

fn writer(mut ledger: Store, rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::new();
    let mut memory = Memory::default();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Apply(change, reply) => batch.push((*change, reply)),
                Request::Records(reply) => {
                    // Commit what came before, so a reader sees its own writes.
                    commit_group(&mut ledger, &mut memory, &mut batch);
                    let _ = reply.send(ledger.records());
                }
                Request::Snapshot(reply) => {
                    commit_group(&mut ledger, &mut memory, &mut batch);
                    let _ = reply.send(memory.snapshot(&mut ledger));
                }
                Request::Import(records, reply) => {
                    commit_group(&mut ledger, &mut memory, &mut batch);
                    let result = ledger.import(&records);
                    // Rows came in behind the copy in memory.
                    memory.forget("rows were copied in");
                    let _ = reply.send(result);
                }
                Request::Close(reply) => {
                    commit_group(&mut ledger, &mut memory, &mut batch);
                    let _ = reply.send(ledger.close());
                    return;
                }
            }
            if batch.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        commit_group(&mut ledger, &mut memory, &mut batch);
    }
}
