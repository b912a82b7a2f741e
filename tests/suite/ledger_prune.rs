//! The ledger's part in guarded prune: schema 3 migrates a version-2 file keeping its rows, and the
//! prune changes (undeclared since, a refused delete, deleting, forget) land in the store (SQLite and
//! PostgreSQL) and in the writer's copy in memory alike.

use crate::ledger_memory::TestLedger;
use crate::support::postgres::TestPostgres;
use atlas_linkd::ledger::{Change, Ledger, SCHEMA_VERSION};
use atlas_linkd::model::{GroupId, LinkKey, LinkSpec, Phase, Provider, PruneMark, Vendor};

fn key(name: &str) -> LinkKey {
    LinkKey::new(GroupId::parse("00000000000000000000000a").unwrap(), name)
}

fn spec(name: &str) -> LinkSpec {
    LinkSpec {
        arn: Some(format!(
            "arn:aws:kafka:us-east-1:123456789012:cluster/{name}/1"
        )),
        ..LinkSpec::new(Provider::Aws, Vendor::Msk)
    }
}

/// Schema versions 1 and 2 as they shipped.
const V2: &str = "CREATE TABLE links (
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
    ) WITHOUT ROWID;
    ALTER TABLE links ADD COLUMN sent_unix INTEGER;
    ALTER TABLE links ADD COLUMN interface_endpoint_id TEXT;
    ALTER TABLE links ADD COLUMN interface_endpoint_name TEXT;
    ALTER TABLE links ADD COLUMN provider_account_id TEXT;
    PRAGMA user_version = 2;";

#[test]
fn a_version_2_ledger_is_migrated_keeping_its_rows_and_accepts_the_deleting_phase() {
    assert_eq!(SCHEMA_VERSION, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let s = spec("a");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(V2).unwrap();
        conn.execute(
            "INSERT INTO links (group_id, name, spec_json, fingerprint, atlas_id, phase,
                remote_state, attempts, created_unix, updated_unix, sent_unix, provider_account_id)
             VALUES ('00000000000000000000000a', 'a', ?1, ?2, 'id-a', 'created', 'DONE', 0, 5, 6, 4, 'acct')",
            rusqlite::params![s.to_json(), s.fingerprint().to_string()],
        )
        .unwrap();
    }
    let mut ledger = Ledger::open(&path).unwrap();
    let records = ledger.records().unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.phase, r.atlas_id.as_deref(), r.sent_unix, r.updated_unix),
        (Phase::Created, Some("id-a"), Some(4), 6)
    );
    assert_eq!(r.outputs.provider_account_id.as_deref(), Some("acct"));
    assert_eq!(r.prune, PruneMark::default());
    ledger
        .apply(&[Change::Deleting {
            key: key("a"),
            at_unix: 7,
        }])
        .unwrap();
    assert_eq!(ledger.records().unwrap()[0].phase, Phase::Deleting);
}

#[tokio::test]
async fn prune_changes_reach_disk_and_memory_and_forget_drops_the_row() {
    prune_changes_reach_the_store(&TestLedger::sqlite()).await;
}

#[tokio::test]
async fn prune_changes_reach_postgres_and_memory_and_forget_drops_the_row() {
    let pg = TestPostgres::start();
    prune_changes_reach_the_store(&TestLedger::postgres(&pg)).await;
}

async fn prune_changes_reach_the_store(store: &TestLedger) {
    let handle = store.open();
    // The writer's copy in memory exists from the first snapshot on.
    let _ = handle.snapshot().await.unwrap();
    for name in ["a", "b"] {
        let s = spec(name);
        handle
            .apply(Change::Intent {
                key: key(name),
                fingerprint: s.fingerprint(),
                spec: s,
                at_unix: 1,
            })
            .await
            .unwrap();
        handle
            .apply(Change::Created {
                key: key(name),
                atlas_id: format!("id-{name}"),
                at_unix: 2,
            })
            .await
            .unwrap();
    }
    let memory_matches_disk = async || {
        let memory = handle.snapshot().await.unwrap();
        let disk = handle.records().await.unwrap();
        assert_eq!(*memory, disk);
        disk
    };

    handle
        .apply(Change::Undeclared {
            key: key("a"),
            since_unix: Some(100),
            at_unix: 100,
        })
        .await
        .unwrap();
    handle
        .apply(Change::DeleteRefused {
            key: key("a"),
            in_use: true,
            error: "400 STREAM_PRIVATE_LINK_IN_USE".into(),
            next_attempt_unix: 400,
            at_unix: 100,
        })
        .await
        .unwrap();
    let rows = memory_matches_disk().await;
    let a = &rows[0];
    assert_eq!(
        (a.phase, a.attempts, a.next_attempt_unix),
        (Phase::Created, 1, Some(400))
    );
    assert_eq!(
        a.prune,
        PruneMark {
            undeclared_since_unix: Some(100),
            in_use: true
        }
    );

    // Declared again: the mark and the refusal are cleared.
    handle
        .apply(Change::Undeclared {
            key: key("a"),
            since_unix: None,
            at_unix: 101,
        })
        .await
        .unwrap();
    let rows = memory_matches_disk().await;
    assert_eq!(rows[0].prune, PruneMark::default());
    assert_eq!(
        (
            rows[0].attempts,
            rows[0].last_error.as_deref(),
            rows[0].next_attempt_unix
        ),
        (0, None, None),
        "the refused delete is forgotten with the mark"
    );

    handle
        .apply(Change::Deleting {
            key: key("b"),
            at_unix: 102,
        })
        .await
        .unwrap();
    assert_eq!(memory_matches_disk().await[1].phase, Phase::Deleting);
    handle
        .apply(Change::Forget { key: key("b") })
        .await
        .unwrap();
    let rows = memory_matches_disk().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key, key("a"));
    // A change to a row that is gone is refused, as for any change that needs its row.
    assert!(
        handle
            .apply(Change::Forget { key: key("b") })
            .await
            .is_err()
    );
    handle.close().await.unwrap();
}
