//! `LedgerHandle`: the group-commit writer thread in front of a `Ledger`, for async callers.

use super::{Change, Ledger, LedgerError};
use crate::model::Record;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

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
