//! The ledger's schema: its migrations, the version this build reads and writes, and migrating to it.

use super::LedgerError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

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
    // 3: guarded prune. A link's `deleting` phase (its delete was accepted; the row goes once a
    // listing no longer shows it), since when it has been undeclared (the grace period counts from
    // then), and whether its last delete was refused as in use. SQLite cannot alter a CHECK
    // constraint, so the table is rebuilt with the new phase allowed.
    "CREATE TABLE links_new (
        group_id          TEXT    NOT NULL,
        name              TEXT    NOT NULL,
        spec_json         TEXT    NOT NULL,
        fingerprint       TEXT    NOT NULL,
        atlas_id          TEXT,
        phase             TEXT    NOT NULL
                          CHECK (phase IN ('intent', 'created', 'adopted', 'failed', 'deleting')),
        remote_state      TEXT,
        remote_error      TEXT,
        attempts          INTEGER NOT NULL DEFAULT 0,
        last_error        TEXT,
        next_attempt_unix INTEGER,
        created_unix      INTEGER NOT NULL,
        updated_unix      INTEGER NOT NULL,
        sent_unix         INTEGER,
        interface_endpoint_id   TEXT,
        interface_endpoint_name TEXT,
        provider_account_id     TEXT,
        undeclared_since_unix   INTEGER,
        delete_in_use     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (group_id, name)
    ) WITHOUT ROWID;
     INSERT INTO links_new (group_id, name, spec_json, fingerprint, atlas_id, phase, remote_state,
        remote_error, attempts, last_error, next_attempt_unix, created_unix, updated_unix,
        sent_unix, interface_endpoint_id, interface_endpoint_name, provider_account_id)
     SELECT group_id, name, spec_json, fingerprint, atlas_id, phase, remote_state,
        remote_error, attempts, last_error, next_attempt_unix, created_unix, updated_unix,
        sent_unix, interface_endpoint_id, interface_endpoint_name, provider_account_id FROM links;
     DROP TABLE links;
     ALTER TABLE links_new RENAME TO links;",
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a statement waits for another connection's write lock (a reader beside the daemon).
pub(super) const BUSY_TIMEOUT_MS: u64 = 5_000;

pub(super) fn user_version(conn: &Connection, path: &Path) -> Result<i64, LedgerError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| LedgerError::Open {
            path: path.to_owned(),
            source,
        })
}

/// Whether a writer may open a ledger at schema version `found` (either store): any version up to
/// this build's, which it migrates; a newer one is refused.
pub(super) fn check_writable(found: i64, path: &Path) -> Result<(), LedgerError> {
    if found > i64::from(SCHEMA_VERSION) {
        return Err(LedgerError::TooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Whether a reader (which migrates nothing) may read a ledger at schema version `found` (either
/// store): exactly this build's.
pub(super) fn check_readable(found: i64, path: &Path) -> Result<(), LedgerError> {
    check_writable(found, path)?;
    if found < i64::from(SCHEMA_VERSION) {
        return Err(LedgerError::NotMigrated {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), LedgerError> {
    let found = user_version(conn, path)?;
    check_writable(found, path)?;
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
