//! Row encoding: each `Change` as the SQL that writes it, and a row (`RawRecord`) decoded into a `Record`.

use super::{Change, LedgerError};
use crate::model::{
    EndpointOutputs, Fingerprint, GroupId, LinkKey, Phase, PruneMark, Record, RemoteState,
};
use rusqlite::Connection;
use std::path::Path;

fn opt_state(state: &Option<RemoteState>) -> Option<&str> {
    state.as_ref().map(RemoteState::as_str)
}

/// One parameter of a statement, as both stores bind it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Param {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
}

/// What a statement's parameter is made from.
pub(super) trait IntoParam {
    fn param(&self) -> Param;
}

impl IntoParam for str {
    fn param(&self) -> Param {
        Param::Text(self.to_owned())
    }
}
impl IntoParam for String {
    fn param(&self) -> Param {
        Param::Text(self.clone())
    }
}
impl IntoParam for i64 {
    fn param(&self) -> Param {
        Param::Int(*self)
    }
}
impl IntoParam for bool {
    fn param(&self) -> Param {
        Param::Bool(*self)
    }
}
impl<T: IntoParam + ?Sized> IntoParam for &T {
    fn param(&self) -> Param {
        (**self).param()
    }
}
impl<T: IntoParam> IntoParam for Option<T> {
    fn param(&self) -> Param {
        self.as_ref().map_or(Param::Null, IntoParam::param)
    }
}

macro_rules! params {
    ($($p:expr),* $(,)?) => { vec![$(IntoParam::param(&$p)),*] };
}

/// One SQL statement of a change, in the dialect both stores speak: SQLite's `?N` parameters,
/// which the PostgreSQL store turns into `$N`, on the table `links`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Statement {
    pub(super) sql: &'static str,
    pub(super) params: Vec<Param>,
}

fn stmt(sql: &'static str, params: Vec<Param>) -> Vec<Statement> {
    vec![Statement { sql, params }]
}

/// The statements that write `change`, run in order inside the caller's transaction; the rows the
/// last one changed decide the outcome (`outcome`).
pub(super) fn statements(change: &Change) -> Vec<Statement> {
    let key = change.key();
    let (g, n) = (key.group_id.as_str(), key.name.as_str());
    match change {
        Change::Intent {
            spec,
            fingerprint,
            at_unix,
            ..
        } => stmt(
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
        } => stmt(
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
        } => stmt(
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
        } => stmt(
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
        Change::SpecUpdated {
            spec,
            fingerprint,
            at_unix,
            ..
        } => stmt(
            "UPDATE links SET spec_json = ?3, fingerprint = ?4, updated_unix = ?5
             WHERE group_id = ?1 AND name = ?2 AND phase IN ('created', 'adopted')",
            params![g, n, spec.to_json(), fingerprint.to_hex(), at_unix],
        ),
        Change::RemoteState {
            atlas_id,
            state,
            error,
            outputs,
            at_unix,
            ..
        } => stmt(
            "UPDATE links SET remote_state = ?3, remote_error = ?4, updated_unix = ?5,
                interface_endpoint_id = ?6, interface_endpoint_name = ?7, provider_account_id = ?8
             WHERE group_id = ?1 AND name = ?2 AND atlas_id = ?9",
            params![
                g,
                n,
                state.as_str(),
                error,
                at_unix,
                outputs.interface_endpoint_id,
                outputs.interface_endpoint_name,
                outputs.provider_account_id,
                atlas_id
            ],
        ),
        Change::Undeclared {
            since_unix, at_unix, ..
        } => stmt(
            // In phase created or adopted, attempts and the error fields can only come from a
            // refused delete (a create's success clears them): stale once the link is declared
            // again, or undeclared anew.
            "UPDATE links SET undeclared_since_unix = ?3, delete_in_use = FALSE, updated_unix = ?4,
                attempts = CASE WHEN phase IN ('created', 'adopted') THEN 0 ELSE attempts END,
                last_error = CASE WHEN phase IN ('created', 'adopted') THEN NULL ELSE last_error END,
                next_attempt_unix = CASE WHEN phase IN ('created', 'adopted') THEN NULL
                                         ELSE next_attempt_unix END
             WHERE group_id = ?1 AND name = ?2",
            params![g, n, since_unix, at_unix],
        ),
        Change::Deleting { at_unix, .. } => stmt(
            "UPDATE links SET phase = 'deleting', attempts = 0, last_error = NULL,
                next_attempt_unix = NULL, delete_in_use = FALSE, updated_unix = ?3
             WHERE group_id = ?1 AND name = ?2",
            params![g, n, at_unix],
        ),
        Change::DeleteRefused {
            in_use,
            error,
            next_attempt_unix,
            at_unix,
            ..
        } => stmt(
            "UPDATE links SET attempts = attempts + 1, last_error = ?3, next_attempt_unix = ?4,
                delete_in_use = ?5, updated_unix = ?6
             WHERE group_id = ?1 AND name = ?2",
            params![g, n, error, next_attempt_unix, in_use, at_unix],
        ),
        Change::Forget { .. } => stmt(
            "DELETE FROM links WHERE group_id = ?1 AND name = ?2",
            params![g, n],
        ),
        Change::Renamed {
            from,
            atlas_id,
            at_unix,
            ..
        } => {
            // The new name's row, if any, holds nothing to keep: a failed create, or an old
            // connection whose delete Atlas accepted. It goes first (the savepoint puts it back if
            // the rename is refused); any other row makes the primary key refuse the rename.
            let mut both = stmt(
                "DELETE FROM links WHERE group_id = ?1 AND name = ?2 AND phase IN ('failed', 'deleting')",
                params![g, n],
            );
            both.extend(stmt(
                // Declared under its new name: no longer undeclared, no refused delete.
                "UPDATE links SET name = ?2, undeclared_since_unix = NULL, delete_in_use = FALSE,
                    attempts = 0, last_error = NULL, next_attempt_unix = NULL, updated_unix = ?5
                 WHERE group_id = ?1 AND name = ?3 AND atlas_id = ?4 AND phase IN ('created', 'adopted')",
                params![g, n, from.name, atlas_id, at_unix],
            ));
            both
        }
    }
}

/// The statement that inserts a whole row as it is (`ledger copy`).
pub(super) fn insert_record(r: &Record) -> Statement {
    Statement {
        sql: "INSERT INTO links (group_id, name, spec_json, fingerprint, atlas_id, phase, remote_state,
                remote_error, attempts, last_error, next_attempt_unix, created_unix, updated_unix,
                sent_unix, interface_endpoint_id, interface_endpoint_name, provider_account_id,
                undeclared_since_unix, delete_in_use)
              VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                ?18, ?19)",
        params: params![
            r.key.group_id.as_str(),
            r.key.name,
            r.spec_json,
            r.fingerprint.to_hex(),
            r.atlas_id,
            r.phase.as_str(),
            r.remote_state.as_ref().map(RemoteState::as_str),
            r.remote_error,
            i64::from(r.attempts),
            r.last_error,
            r.next_attempt_unix,
            r.created_unix,
            r.updated_unix,
            r.sent_unix,
            r.outputs.interface_endpoint_id,
            r.outputs.interface_endpoint_name,
            r.outputs.provider_account_id,
            r.prune.undeclared_since_unix,
            r.prune.in_use,
        ],
    }
}

/// Writes one change inside the caller's SQLite transaction.
pub(super) fn write_change(
    conn: &Connection,
    path: &Path,
    change: &Change,
) -> Result<Written, LedgerError> {
    let sql_err = |source| LedgerError::Sql {
        path: path.to_owned(),
        action: "write a change",
        source,
    };
    let mut changed = 0;
    for s in statements(change) {
        // The statement cache: the same few statements run for every change, and parsing them
        // each time costs more than executing them.
        changed = conn
            .prepare_cached(s.sql)
            .and_then(|mut prepared| prepared.execute(rusqlite::params_from_iter(&s.params)))
            .map_err(sql_err)?;
    }
    outcome(change, path, changed)
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Param::Null => ToSqlOutput::Owned(Value::Null),
            Param::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Param::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Param::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
        })
    }
}

/// What a change did, from the rows its last statement changed: an error when the row it needs
/// was not there (`UnknownLink`, `NotUpdatable`), nothing for a remote state of a connection the
/// row no longer holds.
pub(super) fn outcome(
    change: &Change,
    path: &Path,
    changed: usize,
) -> Result<Written, LedgerError> {
    let key = change.key();
    if changed == 0 && matches!(change, Change::SpecUpdated { .. }) {
        return Err(LedgerError::NotUpdatable {
            path: path.to_owned(),
            key: key.clone(),
        });
    }
    if changed == 0 && matches!(change, Change::RemoteState { .. }) {
        return Ok(Written::Nothing);
    }
    if changed == 0 {
        return Err(LedgerError::UnknownLink {
            path: path.to_owned(),
            key: key.clone(),
            change: change.kind(),
        });
    }
    Ok(Written::Row)
}

/// What a change did to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// The row was written (or deleted, for `Forget`).
    Row,
    /// Nothing: a remote state of a connection the row no longer holds.
    Nothing,
}

/// A row as SQLite holds it, before validation. The fields that are parsed are borrowed from
/// the row, so reading 100,000 rows does not allocate them.
pub(super) struct RawRecord<'r> {
    pub(super) group_id: &'r str,
    pub(super) name: String,
    pub(super) spec_json: String,
    pub(super) fingerprint: &'r str,
    pub(super) atlas_id: Option<String>,
    pub(super) phase: &'r str,
    pub(super) remote_state: Option<&'r str>,
    pub(super) remote_error: Option<String>,
    pub(super) attempts: i64,
    pub(super) last_error: Option<String>,
    pub(super) next_attempt_unix: Option<i64>,
    pub(super) created_unix: i64,
    pub(super) updated_unix: i64,
    pub(super) sent_unix: Option<i64>,
    pub(super) outputs: EndpointOutputs,
    pub(super) prune: PruneMark,
}

impl RawRecord<'_> {
    /// Decodes the row; `previous` is the project id of the row before, shared when it is the same.
    pub(super) fn decode(
        self,
        path: &Path,
        previous: Option<&GroupId>,
    ) -> Result<Record, LedgerError> {
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
            prune: self.prune,
            created_unix: self.created_unix,
            updated_unix: self.updated_unix,
        })
    }
}
