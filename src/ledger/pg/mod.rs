//! The ledger on PostgreSQL: the same rows and changes as the SQLite store, in the `atlas_linkd`
//! schema of a database several atlas-linkd processes share, one of them active by a lease.
//!
//! Every write transaction first checks, under a share lock on the lease row, that the lease is
//! still this process's, under the epoch it holds (fencing): a process that lost the lease writes
//! nothing, so it commits no intent, so it sends no create.

mod lease;
mod schema;
mod target;

pub use lease::{Lease, LeaseSettings, Role};
pub use target::{
    ConnectError, PASSWORD_CREDENTIAL, PgTarget, SslMode, TargetError, is_postgres_url,
};

use super::rows::{Param, RawRecord, Written, insert_record, outcome, statements};
use super::schema::{check_readable, check_writable};
use super::{Change, LedgerError};
use crate::model::{EndpointOutputs, GroupId, LinkKey, PruneMark, Record};
use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long after its intent began to be written a create may still leave, on a shared ledger:
/// an intent whose commit took longer (a slow database, a process frozen between the commit and
/// the send) is not sent, and is settled like any other unanswered create. `reconcile.settle_secs`
/// must cover `atlas.timeout_secs` plus this margin, so that a create the previous holder sent
/// reaches Atlas before its successor's settle window ends.
pub const SEND_MARGIN_SECS: u64 = 2;

/// The environment variables a connection reads (the password's sources, the default user),
/// taken once, so that the writer and lease threads reconnect without the caller's closure.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<&'static str, String>);

impl Env {
    pub fn capture(env: &dyn Fn(&str) -> Option<String>) -> Env {
        let keys = [
            "CREDENTIALS_DIRECTORY",
            "PGPASSWORD",
            "PGPASSFILE",
            "HOME",
            "USER",
            "LOGNAME",
        ];
        Env(keys
            .into_iter()
            .filter_map(|k| Some((k, env(k)?)))
            .collect())
    }

    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

/// How a process that opens the ledger takes its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// At once, or not at all (`--once`): the open fails naming the holder.
    Now,
    /// Waiting up to this long for the holder to let go (`--once --wait-for-lease`).
    Within(Duration),
    /// In the background, whenever it is free (the daemon, which stands by until then).
    Background,
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Text(t) => t.to_sql(ty, out),
            Param::Int(i) => i.to_sql(ty, out),
            Param::Bool(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <String as ToSql>::accepts(ty)
            || <i64 as ToSql>::accepts(ty)
            || <bool as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

const COLUMNS: &str = "group_id, name, spec_json, fingerprint, atlas_id, phase, remote_state,
    remote_error, attempts, last_error, next_attempt_unix, created_unix, updated_unix,
    sent_unix, interface_endpoint_id, interface_endpoint_name, provider_account_id,
    undeclared_since_unix, delete_in_use";

/// The ledger in a PostgreSQL database.
pub struct PgLedger {
    target: PgTarget,
    /// The target as errors name it (`LedgerError`'s `path`).
    name: PathBuf,
    env: Env,
    /// Drives `client`'s connection, on the writer's own thread (the ledger is synchronous to its
    /// callers; the asynchronous client is what pipelines a group's statements).
    rt: tokio::runtime::Runtime,
    client: Option<tokio_postgres::Client>,
    /// Prepared statements of `client`, by their SQL; dropped with it.
    prepared: HashMap<&'static str, tokio_postgres::Statement>,
    lease: Option<Arc<Lease>>,
    lease_thread: Option<lease::LeaseThread>,
    pub(super) commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger")
            .field("target", &self.target.to_string())
            .finish()
    }
}

impl PgLedger {
    /// Connects, migrates the schema, and takes the lease as `take` says (with `settings`).
    pub fn open(
        target: &PgTarget,
        env: Env,
        settings: LeaseSettings,
        take: Take,
    ) -> Result<PgLedger, LedgerError> {
        let name = PathBuf::from(target.to_string());
        let connect = |purpose| {
            target
                .connect(&|k| env.get(k), purpose)
                .map_err(|e| LedgerError::Connect(Arc::new(e)))
        };
        let found =
            schema::migrate(&mut connect("migrate")?).map_err(|source| LedgerError::Postgres {
                path: name.clone(),
                action: "migrate the schema",
                source: Arc::new(source),
            })?;
        check_writable(found, &name)?;
        let lease = Lease::new(settings);
        let mut lease_client = connect("lease")?;
        let lease_err = |source| LedgerError::Postgres {
            path: name.clone(),
            action: "take the lease",
            source: Arc::new(source),
        };
        let deadline = match take {
            Take::Now => Some(Instant::now()),
            Take::Within(d) => Some(Instant::now() + d),
            Take::Background => None,
        };
        if let Some(deadline) = deadline {
            loop {
                match lease.step(&mut lease_client).map_err(lease_err)? {
                    None => break,
                    Some(held) if Instant::now() >= deadline => {
                        return Err(LedgerError::LeaseHeld {
                            path: name,
                            holder: held.holder,
                            remaining_secs: held.remaining_secs,
                        });
                    }
                    Some(held) => {
                        tracing::info!(holder = %held.holder, expires_in_secs = held.remaining_secs,
                            "waiting for the ledger's lease");
                        let left = deadline.saturating_duration_since(Instant::now());
                        std::thread::sleep(
                            settings.renew.min(left).max(Duration::from_millis(100)),
                        );
                    }
                }
            }
        } else if let Err(e) = lease.step(&mut lease_client) {
            // The lease thread tries again; the daemon stands by meanwhile.
            tracing::warn!(ledger = %target, error = %e, "cannot take the ledger's lease yet; trying again");
        }
        let lease_thread = lease::spawn(
            Arc::clone(&lease),
            target.clone(),
            env.clone(),
            Some(lease_client),
        )
        .map_err(|source| LedgerError::Thread {
            path: name.clone(),
            source,
        })?;
        let rt = runtime(&name)?;
        let client = target
            .connect_on(&rt, &|k| env.get(k), "ledger")
            .map_err(|e| LedgerError::Connect(Arc::new(e)))?;
        Ok(PgLedger::new(
            target,
            name,
            env,
            rt,
            client,
            Some((lease, lease_thread)),
        ))
    }

    fn new(
        target: &PgTarget,
        name: PathBuf,
        env: Env,
        rt: tokio::runtime::Runtime,
        client: tokio_postgres::Client,
        lease: Option<(Arc<Lease>, lease::LeaseThread)>,
    ) -> PgLedger {
        let (lease, lease_thread) = lease.unzip();
        PgLedger {
            target: target.clone(),
            name,
            env,
            rt,
            client: Some(client),
            prepared: HashMap::new(),
            lease,
            lease_thread,
            commits: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Connects for reading only: no lease, no migration (a schema this build does not read is
    /// refused, an absent one is an empty ledger's `NotFound`).
    pub fn open_read_only(target: &PgTarget, env: Env) -> Result<PgLedger, LedgerError> {
        let name = PathBuf::from(target.to_string());
        let rt = runtime(&name)?;
        let client = target
            .connect_on(&rt, &|k| env.get(k), "reader")
            .map_err(|e| LedgerError::Connect(Arc::new(e)))?;
        let version = rt
            .block_on(client.query_opt(
                "SELECT version FROM atlas_linkd.schema_version WHERE to_regclass('atlas_linkd.schema_version') IS NOT NULL",
                &[],
            ))
            .map(|row| row.map(|r| r.get::<_, i64>(0)));
        let found = match version {
            Ok(Some(v)) => v,
            Ok(None) => return Err(LedgerError::NotFound { path: name }),
            // The table itself is missing: `to_regclass` is checked per row, after the FROM.
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => {
                return Err(LedgerError::NotFound { path: name });
            }
            Err(source) => {
                return Err(LedgerError::Postgres {
                    path: name,
                    action: "read the schema version",
                    source: Arc::new(source),
                });
            }
        };
        check_readable(found, &name)?;
        Ok(PgLedger::new(target, name, env, rt, client, None))
    }

    /// The lease, on a ledger opened for writing.
    pub fn lease(&self) -> Option<&Arc<Lease>> {
        self.lease.as_ref()
    }

    pub(super) fn name(&self) -> &PathBuf {
        &self.name
    }

    fn pg_err(&self, action: &'static str) -> impl Fn(postgres::Error) -> LedgerError + '_ {
        move |source| LedgerError::Postgres {
            path: self.name.clone(),
            action,
            source: Arc::new(source),
        }
    }

    /// The lease epoch a write runs under: `None` without a lease (a reader), `Fenced` when
    /// this process no longer holds it by its own clock.
    fn write_epoch(&self) -> Result<Option<i64>, LedgerError> {
        self.lease
            .as_ref()
            .map(|lease| {
                lease.epoch().ok_or_else(|| LedgerError::Fenced {
                    path: self.name.clone(),
                })
            })
            .transpose()
    }

    /// The connection, made again when the last one broke (a restarted or unreachable server).
    fn connected(&mut self) -> Result<&mut tokio_postgres::Client, LedgerError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            self.prepared.clear();
            let env = &self.env;
            let client = self
                .target
                .connect_on(&self.rt, &|k| env.get(k), "ledger")
                .map_err(|e| LedgerError::Connect(Arc::new(e)))?;
            tracing::info!(ledger = %self.target, "connected to the ledger's database again");
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected just above"))
    }

    /// The runtime, the connection (made again if it broke) and its prepared statements, apart.
    fn session(&mut self) -> Result<Session<'_>, LedgerError> {
        self.connected()?;
        let PgLedger {
            rt,
            client,
            prepared,
            ..
        } = self;
        Ok(Session {
            rt,
            client: client.as_mut().expect("connected just above"),
            prepared,
        })
    }

    /// Every row, sorted by key.
    pub fn records(&mut self) -> Result<Vec<Record>, LedgerError> {
        let sql = format!("SELECT {COLUMNS} FROM atlas_linkd.links ORDER BY group_id, name");
        let name = self.name.clone();
        let session = self.session()?;
        let rows = session
            .rt
            .block_on(session.client.query(&sql, &[]))
            .map_err(|source| LedgerError::Postgres {
                path: name,
                action: "read the records",
                source: Arc::new(source),
            })?;
        let mut out = Vec::with_capacity(rows.len());
        let mut group: Option<GroupId> = None;
        for row in &rows {
            let record = self.decode(row, group.as_ref())?;
            if group.as_ref() != Some(&record.key.group_id) {
                group = Some(record.key.group_id.clone());
            }
            out.push(record);
        }
        Ok(out)
    }

    /// The row of one link, if there is one.
    pub(super) fn record(
        &mut self,
        key: &LinkKey,
        group: Option<&GroupId>,
    ) -> Result<Option<Record>, LedgerError> {
        let sql =
            format!("SELECT {COLUMNS} FROM atlas_linkd.links WHERE group_id = $1 AND name = $2");
        let name = self.name.clone();
        let session = self.session()?;
        let row = session
            .rt
            .block_on(
                session
                    .client
                    .query_opt(&sql, &[&key.group_id.as_str(), &key.name]),
            )
            .map_err(|source| LedgerError::Postgres {
                path: name,
                action: "read a record",
                source: Arc::new(source),
            })?;
        row.map(|r| self.decode(&r, group)).transpose()
    }

    fn decode(&self, r: &postgres::Row, previous: Option<&GroupId>) -> Result<Record, LedgerError> {
        let pg = self.pg_err("read the records");
        let raw = RawRecord {
            group_id: r.try_get(0).map_err(&pg)?,
            name: r.try_get(1).map_err(&pg)?,
            spec_json: r.try_get(2).map_err(&pg)?,
            fingerprint: r.try_get(3).map_err(&pg)?,
            atlas_id: r.try_get(4).map_err(&pg)?,
            phase: r.try_get(5).map_err(&pg)?,
            remote_state: r.try_get(6).map_err(&pg)?,
            remote_error: r.try_get(7).map_err(&pg)?,
            attempts: r.try_get(8).map_err(&pg)?,
            last_error: r.try_get(9).map_err(&pg)?,
            next_attempt_unix: r.try_get(10).map_err(&pg)?,
            created_unix: r.try_get(11).map_err(&pg)?,
            updated_unix: r.try_get(12).map_err(&pg)?,
            sent_unix: r.try_get(13).map_err(&pg)?,
            outputs: EndpointOutputs {
                interface_endpoint_id: r.try_get(14).map_err(&pg)?,
                interface_endpoint_name: r.try_get(15).map_err(&pg)?,
                provider_account_id: r.try_get(16).map_err(&pg)?,
            },
            prune: PruneMark {
                undeclared_since_unix: r.try_get(17).map_err(&pg)?,
                in_use: r.try_get(18).map_err(&pg)?,
            },
        };
        raw.decode(&self.name, previous)
    }

    /// Commits a group of changes in one transaction, after checking (under a share lock on the
    /// lease row, which a takeover's update waits for) that this process still holds the lease
    /// under its epoch: a process that does not writes nothing (`Fenced`). One refused change fails
    /// alone: a change that finds no row changed nothing; a change of two statements (a rename)
    /// runs under a savepoint; and should the database refuse a statement (a constraint), which
    /// aborts the whole transaction, the group is run again with every change under its own
    /// savepoint. Savepoints cost two round trips each, so the common group runs without them.
    pub(super) fn apply_group(
        &mut self,
        changes: &[&Change],
    ) -> Result<Vec<Result<Written, LedgerError>>, LedgerError> {
        match self.try_group(changes, false)? {
            Some(results) => Ok(results),
            None => Ok(self
                .try_group(changes, true)?
                .expect("with a savepoint per change, a refused statement fails only its change")),
        }
    }

    /// One attempt at `apply_group`; `None` when a statement was refused without a savepoint to
    /// roll back to (the transaction is rolled back; run it again with `each_savepoint`).
    fn try_group(
        &mut self,
        changes: &[&Change],
        each_savepoint: bool,
    ) -> Result<Option<Vec<Result<Written, LedgerError>>>, LedgerError> {
        let epoch = self.write_epoch()?;
        let name = self.name.clone();
        let session = self.session()?;
        let committed = session.rt.block_on(write_group(
            session.client,
            session.prepared,
            changes,
            epoch,
            each_savepoint,
            &name,
        ));
        if !matches!(committed, Ok(Some(_))) {
            session.end_transaction();
        }
        let committed = committed?;
        if committed.is_some() {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(committed)
    }

    /// Inserts every row as it is, in one transaction under the lease, into a ledger with none
    /// (`ledger copy`).
    pub(super) fn import(&mut self, records: &[Record]) -> Result<(), LedgerError> {
        let epoch = self.write_epoch()?;
        let name = self.name.clone();
        let session = self.session()?;
        let imported = session
            .rt
            .block_on(import_rows(session.client, records, epoch, &name));
        if imported.is_err() {
            session.end_transaction();
        }
        imported?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Stops the lease thread (releasing the lease) and closes the connection.
    pub fn close(mut self) -> Result<(), LedgerError> {
        if let Some(t) = self.lease_thread.take() {
            t.stop();
        }
        // Dropping the client ends its connection; the runtime goes with the ledger.
        self.client = None;
        Ok(())
    }
}

impl Drop for PgLedger {
    fn drop(&mut self) {
        if let Some(t) = self.lease_thread.take() {
            t.stop();
        }
    }
}

/// The writer's runtime, connection and prepared statements, borrowed apart.
struct Session<'a> {
    rt: &'a tokio::runtime::Runtime,
    client: &'a mut tokio_postgres::Client,
    prepared: &'a mut HashMap<&'static str, tokio_postgres::Statement>,
}

impl Session<'_> {
    /// Ends a transaction an error left open. A dropped transaction only queues its ROLLBACK,
    /// which this runtime sends at its next use; until then the transaction keeps its share lock on
    /// the lease row, and the lease thread's release (or a successor's takeover) waits for it. A
    /// ROLLBACK with none open is only a warning.
    fn end_transaction(&self) {
        if let Err(e) = self.rt.block_on(self.client.batch_execute("ROLLBACK")) {
            tracing::debug!(error = %e, "rolling back after a failed write");
        }
    }
}

/// A runtime of the writer's own, on its thread.
fn runtime(name: &Path) -> Result<tokio::runtime::Runtime, LedgerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| LedgerError::Thread {
            path: name.to_owned(),
            source,
        })
}

fn pg_error<'a>(
    name: &'a Path,
    action: &'static str,
) -> impl Fn(postgres::Error) -> LedgerError + 'a {
    move |source| LedgerError::Postgres {
        path: name.to_owned(),
        action,
        source: Arc::new(source),
    }
}

/// Checks, inside `tx` and under a share lock on the lease row (a takeover's update waits for
/// it), that the lease is still held under `epoch`.
async fn check_epoch(
    tx: &tokio_postgres::Transaction<'_>,
    epoch: i64,
    name: &Path,
) -> Result<(), LedgerError> {
    let current = tx
        .query_opt(
            "SELECT epoch FROM atlas_linkd.lease WHERE id = 1 AND expires_at > now() FOR SHARE",
            &[],
        )
        .await
        .map_err(pg_error(name, "check the lease"))?
        .map(|r| r.get::<_, i64>(0));
    if current == Some(epoch) {
        Ok(())
    } else {
        Err(LedgerError::Fenced {
            path: name.to_owned(),
        })
    }
}

fn as_params(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// One group commit (see `PgLedger::apply_group`). When no change needs a savepoint, every
/// statement is sent at once, pipelined: one round trip for the group, not one per change.
async fn write_group(
    client: &mut tokio_postgres::Client,
    prepared: &mut HashMap<&'static str, tokio_postgres::Statement>,
    changes: &[&Change],
    epoch: Option<i64>,
    each_savepoint: bool,
    name: &Path,
) -> Result<Option<Vec<Result<Written, LedgerError>>>, LedgerError> {
    let tx = client
        .transaction()
        .await
        .map_err(pg_error(name, "begin a transaction"))?;
    if let Some(epoch) = epoch {
        // Dropping the transaction rolls it back.
        check_epoch(&tx, epoch, name).await?;
    }
    let all: Vec<_> = changes.iter().map(|c| statements(c)).collect();
    for s in all.iter().flatten() {
        if !prepared.contains_key(s.sql) {
            let st = tx
                .prepare(&s.sql.replace('?', "$"))
                .await
                .map_err(pg_error(name, "prepare a statement"))?;
            prepared.insert(s.sql, st);
        }
    }
    let statement = |sql: &str| prepared[sql].clone();
    let mut results = Vec::with_capacity(changes.len());
    if !each_savepoint && all.iter().all(|st| st.len() == 1) {
        let answers = futures::future::join_all(all.iter().map(|st| {
            let (s, tx) = (&st[0], &tx);
            let statement = statement(s.sql);
            async move { tx.execute(&statement, &as_params(&s.params)).await }
        }))
        .await;
        for (change, answer) in changes.iter().zip(answers) {
            match answer {
                Ok(n) => results.push(outcome(
                    change,
                    name,
                    usize::try_from(n).unwrap_or(usize::MAX),
                )),
                // Refused by the database: the transaction is aborted; again, with savepoints.
                Err(e) if e.as_db_error().is_some() => return Ok(None),
                Err(e) => return Err(pg_error(name, "write a change")(e)),
            }
        }
    } else {
        for (change, statements) in changes.iter().zip(&all) {
            let savepoint = each_savepoint || statements.len() > 1;
            if savepoint {
                tx.batch_execute("SAVEPOINT change")
                    .await
                    .map_err(pg_error(name, "write a change"))?;
            }
            let mut written = Ok(0);
            for s in statements {
                match tx.execute(&statement(s.sql), &as_params(&s.params)).await {
                    Ok(n) => written = Ok(n),
                    // The database refused this change (a constraint): it alone fails, once it
                    // has a savepoint to roll back to.
                    Err(e) if e.as_db_error().is_some() => {
                        if !savepoint {
                            return Ok(None);
                        }
                        written = Err(e);
                        break;
                    }
                    Err(e) => return Err(pg_error(name, "write a change")(e)),
                }
            }
            let result = match written {
                Ok(n) => outcome(change, name, usize::try_from(n).unwrap_or(usize::MAX)),
                Err(source) => Err(pg_error(name, "write a change")(source)),
            };
            if savepoint {
                let end = if result.is_ok() {
                    "RELEASE SAVEPOINT change"
                } else {
                    "ROLLBACK TO SAVEPOINT change"
                };
                tx.batch_execute(end)
                    .await
                    .map_err(pg_error(name, "write a change"))?;
            }
            results.push(result);
        }
    }
    tx.commit()
        .await
        .map_err(pg_error(name, "commit a group of changes"))?;
    Ok(Some(results))
}

/// `ledger copy`'s insert of every row, pipelined, into a ledger that must hold none.
async fn import_rows(
    client: &mut tokio_postgres::Client,
    records: &[Record],
    epoch: Option<i64>,
    name: &Path,
) -> Result<(), LedgerError> {
    let pg = pg_error(name, "copy rows in");
    let tx = client.transaction().await.map_err(&pg)?;
    if let Some(epoch) = epoch {
        check_epoch(&tx, epoch, name).await?;
    }
    let rows: i64 = tx
        .query_one("SELECT count(*) FROM atlas_linkd.links", &[])
        .await
        .map_err(&pg)?
        .get(0);
    if rows > 0 {
        return Err(LedgerError::NotEmpty {
            path: name.to_owned(),
            rows: rows.unsigned_abs(),
        });
    }
    if let Some(first) = records.first() {
        let statement = tx
            .prepare(&insert_record(first).sql.replace('?', "$"))
            .await
            .map_err(&pg)?;
        // Pipelined a few thousand at a time, so that a million rows do not wait at once.
        for chunk in records.chunks(4096) {
            let inserts = chunk.iter().map(|r| {
                let (tx, statement) = (&tx, &statement);
                async move {
                    let s = insert_record(r);
                    tx.execute(statement, &as_params(&s.params)).await
                }
            });
            for answer in futures::future::join_all(inserts).await {
                answer.map_err(&pg)?;
            }
        }
    }
    tx.commit().await.map_err(&pg)?;
    Ok(())
}
