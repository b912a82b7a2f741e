//! Row encoding: each `Change` as the SQL that writes it, and a row (`RawRecord`) decoded into a `Record`.

use super::{Change, LedgerError};
use crate::model::{
    EndpointOutputs, Fingerprint, GroupId, LinkKey, Phase, PruneMark, Record, RemoteState,
};
use rusqlite::{Connection, params};
use std::path::Path;

fn opt_state(state: &Option<RemoteState>) -> Option<&str> {
    state.as_ref().map(RemoteState::as_str)
}

/// Runs one statement through the connection's statement cache: the same few statements run
/// for every change, and parsing them each time costs more than executing them.
fn cached<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Writes one change inside the caller's transaction.
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
        Change::SpecUpdated {
            spec,
            fingerprint,
            at_unix,
            ..
        } => cached(conn,
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
        } => cached(conn,
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
        } => cached(conn,
            // In phase created or adopted, attempts and the error fields can only come from a
            // refused delete (a create's success clears them): stale once the link is declared
            // again, or undeclared anew.
            "UPDATE links SET undeclared_since_unix = ?3, delete_in_use = 0, updated_unix = ?4,
                attempts = CASE WHEN phase IN ('created', 'adopted') THEN 0 ELSE attempts END,
                last_error = CASE WHEN phase IN ('created', 'adopted') THEN NULL ELSE last_error END,
                next_attempt_unix = CASE WHEN phase IN ('created', 'adopted') THEN NULL
                                         ELSE next_attempt_unix END
             WHERE group_id = ?1 AND name = ?2",
            params![g, n, since_unix, at_unix],
        ),
        Change::Deleting { at_unix, .. } => cached(conn,
            "UPDATE links SET phase = 'deleting', attempts = 0, last_error = NULL,
                next_attempt_unix = NULL, delete_in_use = 0, updated_unix = ?3
             WHERE group_id = ?1 AND name = ?2",
            params![g, n, at_unix],
        ),
        Change::DeleteRefused {
            in_use,
            error,
            next_attempt_unix,
            at_unix,
            ..
        } => cached(conn,
            "UPDATE links SET attempts = attempts + 1, last_error = ?3, next_attempt_unix = ?4,
                delete_in_use = ?5, updated_unix = ?6
             WHERE group_id = ?1 AND name = ?2",
            params![g, n, error, next_attempt_unix, in_use, at_unix],
        ),
        Change::Forget { .. } => cached(
            conn,
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
            cached(conn,
                "DELETE FROM links WHERE group_id = ?1 AND name = ?2 AND phase IN ('failed', 'deleting')",
                params![g, n],
            )
            .and_then(|_| cached(conn,
                // Declared under its new name: no longer undeclared, no refused delete.
                "UPDATE links SET name = ?2, undeclared_since_unix = NULL, delete_in_use = 0,
                    attempts = 0, last_error = NULL, next_attempt_unix = NULL, updated_unix = ?5
                 WHERE group_id = ?1 AND name = ?3 AND atlas_id = ?4 AND phase IN ('created', 'adopted')",
                params![g, n, from.name, atlas_id, at_unix],
            ))
        }
    }
    .map_err(sql_err)?;
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
