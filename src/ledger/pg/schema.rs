//! The PostgreSQL ledger's schema (`atlas_linkd`): the same numbered steps as SQLite's, in
//! PostgreSQL's dialect, and the lease row beside the links.

use super::super::schema::SCHEMA_VERSION;

/// Step N here is step N of `ledger::schema::MIGRATIONS`, in PostgreSQL's dialect: the same
/// columns and phases, so one version number means one model on both stores
/// (`same_steps_as_sqlite` holds the count). Append only. Keys use the "C" collation, so that rows
/// come back in `LinkKey`'s byte order, as SQLite's binary collation gives them.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: one row per declared link; the lease (one row) that says which process is active.
    "CREATE TABLE links (
        group_id          TEXT COLLATE \"C\" NOT NULL,
        name              TEXT COLLATE \"C\" NOT NULL,
        spec_json         TEXT    NOT NULL,
        fingerprint       TEXT    NOT NULL,
        atlas_id          TEXT,
        phase             TEXT    NOT NULL CONSTRAINT links_phase
                          CHECK (phase IN ('intent', 'created', 'adopted', 'failed')),
        remote_state      TEXT,
        remote_error      TEXT,
        attempts          BIGINT  NOT NULL DEFAULT 0,
        last_error        TEXT,
        next_attempt_unix BIGINT,
        created_unix      BIGINT  NOT NULL,
        updated_unix      BIGINT  NOT NULL,
        PRIMARY KEY (group_id, name)
     );
     CREATE TABLE lease (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        holder      TEXT NOT NULL,
        epoch       BIGINT NOT NULL,
        expires_at  TIMESTAMPTZ NOT NULL,
        taken_at    TIMESTAMPTZ
     );
     INSERT INTO lease (id, holder, epoch, expires_at) VALUES (1, '', 0, '-infinity');",
    // 2: when the last create was sent, and the outputs Atlas fills in.
    "ALTER TABLE links ADD COLUMN sent_unix BIGINT,
        ADD COLUMN interface_endpoint_id TEXT,
        ADD COLUMN interface_endpoint_name TEXT,
        ADD COLUMN provider_account_id TEXT;",
    // 3: guarded prune: the `deleting` phase, since when a link is undeclared, a refused delete.
    "ALTER TABLE links DROP CONSTRAINT links_phase,
        ADD CONSTRAINT links_phase
            CHECK (phase IN ('intent', 'created', 'adopted', 'failed', 'deleting')),
        ADD COLUMN undeclared_since_unix BIGINT,
        ADD COLUMN delete_in_use BOOLEAN NOT NULL DEFAULT FALSE;",
];

/// Creates the schema and its version table if missing, under an advisory lock so that processes
/// starting together migrate once, then applies the steps not applied yet, each in the same
/// transaction as its version. Returns the version found (newer than this build: refused by the
/// caller).
pub(super) fn migrate(client: &mut postgres::Client) -> Result<i64, postgres::Error> {
    let mut tx = client.transaction()?;
    // One key for "the atlas_linkd schema": any constant both processes agree on.
    tx.execute("SELECT pg_advisory_xact_lock(7460392117)", &[])?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS atlas_linkd;
         CREATE TABLE IF NOT EXISTS atlas_linkd.schema_version (version BIGINT NOT NULL);
         INSERT INTO atlas_linkd.schema_version (version)
            SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM atlas_linkd.schema_version);",
    )?;
    let found: i64 = tx
        .query_one("SELECT version FROM atlas_linkd.schema_version", &[])?
        .get(0);
    if found > i64::from(SCHEMA_VERSION) {
        tx.commit()?;
        return Ok(found);
    }
    let start = usize::try_from(found).unwrap_or(0);
    tx.batch_execute("SET LOCAL search_path TO atlas_linkd")?;
    for (index, step) in MIGRATIONS.iter().enumerate().skip(start) {
        tx.batch_execute(step)?;
        let version = i64::try_from(index + 1).expect("a handful of migrations");
        tx.execute(
            "UPDATE atlas_linkd.schema_version SET version = $1",
            &[&version],
        )?;
    }
    tx.commit()?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_steps_as_sqlite() {
        assert_eq!(
            super::MIGRATIONS.len(),
            super::SCHEMA_VERSION as usize,
            "a migration added to one store must be added to the other"
        );
    }
}
