//! Integration tests of the SQLite ledger: migrations, durability across reopen, the process lock,
//! permissions, read-only opens and group commit.

use atlas_linkd::ledger::{Change, Ledger, LedgerError, LedgerHandle, SCHEMA_VERSION, lock_path};
use atlas_linkd::model::{
    AuthScheme, EndpointOutputs, GroupId, LinkKey, LinkSpec, Phase, Provider, RemoteState, Vendor,
};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn gid(n: u32) -> GroupId {
    GroupId::parse(&format!("{n:024x}")).unwrap()
}

fn spec(name: &str) -> LinkSpec {
    LinkSpec {
        arn: Some(format!(
            "arn:aws:kafka:us-east-1:123456789012:cluster/{name}/1"
        )),
        authentication_scheme: Some(AuthScheme::Iam),
        ..LinkSpec::new(Provider::Aws, Vendor::Msk)
    }
}

fn key(name: &str) -> LinkKey {
    LinkKey::new(gid(1), name)
}

fn intent(name: &str, at: i64) -> Change {
    let s = spec(name);
    Change::Intent {
        key: key(name),
        fingerprint: s.fingerprint(),
        spec: s,
        at_unix: at,
    }
}

fn failed(name: &str, at: i64) -> Change {
    let s = spec(name);
    Change::Failed {
        key: key(name),
        fingerprint: s.fingerprint(),
        spec: s,
        error: "503 SERVICE_UNAVAILABLE".into(),
        next_attempt_unix: at + 60,
        at_unix: at,
    }
}

fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn fresh_file_is_migrated_and_parent_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/ledger.db");
    let ledger = Ledger::open(&path).unwrap();
    assert!(ledger.records().unwrap().is_empty());
    drop(ledger);
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
}

#[test]
fn version_zero_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        // An existing SQLite file at version 0, with something unrelated in it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE unrelated (x INTEGER); INSERT INTO unrelated VALUES (7);")
            .unwrap();
    }
    assert_eq!(user_version(&path), 0);
    let mut ledger = Ledger::open(&path).unwrap();
    ledger.apply(&[intent("a", 1)]).unwrap();
    assert_eq!(ledger.records().unwrap().len(), 1);
    drop(ledger);
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Ledger::open(&path).unwrap_err();
    assert!(
        matches!(err, LedgerError::TooNew { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path).unwrap();
    let s = spec("b");
    ledger
        .apply(&[
            intent("a", 100),
            Change::Created {
                key: key("a"),
                atlas_id: "65a1b2c3d4e5f60718293a4b".into(),
                at_unix: 101,
            },
            Change::RemoteState {
                key: key("a"),
                atlas_id: "65a1b2c3d4e5f60718293a4b".into(),
                state: RemoteState::Failed,
                error: Some("no route".into()),
                outputs: EndpointOutputs {
                    interface_endpoint_id: Some("vpce-0a1b2c".into()),
                    ..Default::default()
                },
                at_unix: 102,
            },
            Change::Adopted {
                key: key("b"),
                fingerprint: s.fingerprint(),
                spec: s.clone(),
                atlas_id: "65a1b2c3d4e5f60718293a4c".into(),
                remote_state: Some(RemoteState::Other("PENDING_X".into())),
                remote_error: None,
                outputs: EndpointOutputs::default(),
                at_unix: 103,
            },
            failed("c", 104),
            failed("c", 105),
        ])
        .unwrap();
    let before = ledger.records().unwrap();
    ledger.close().unwrap();

    let ledger = Ledger::open(&path).unwrap();
    let after = ledger.records().unwrap();
    assert_eq!(before, after);
    let names: Vec<_> = after.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);

    let a = &after[0];
    assert_eq!(a.phase, Phase::Created);
    assert_eq!(a.atlas_id.as_deref(), Some("65a1b2c3d4e5f60718293a4b"));
    assert_eq!(a.remote_state, Some(RemoteState::Failed));
    assert_eq!(a.remote_error.as_deref(), Some("no route"));
    assert_eq!((a.created_unix, a.updated_unix), (100, 102));
    assert_eq!(a.spec().unwrap(), spec("a"));

    let b = &after[1];
    assert_eq!(b.phase, Phase::Adopted);
    assert_eq!(b.fingerprint, s.fingerprint());
    assert_eq!(b.remote_state, Some(RemoteState::Other("PENDING_X".into())));

    let c = &after[2];
    assert_eq!(c.phase, Phase::Failed);
    assert_eq!(c.attempts, 2);
    assert_eq!(c.next_attempt_unix, Some(165));
    assert_eq!(c.atlas_id, None);
    assert_eq!(c.last_error.as_deref(), Some("503 SERVICE_UNAVAILABLE"));
}

#[test]
fn created_resets_attempts_and_intent_clears_atlas_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.db")).unwrap();
    ledger
        .apply(&[failed("a", 1), failed("a", 2), intent("a", 3)])
        .unwrap();
    let r = &ledger.records().unwrap()[0];
    assert_eq!((r.phase, r.attempts), (Phase::Intent, 2));
    ledger
        .apply(&[Change::Created {
            key: key("a"),
            atlas_id: "id1".into(),
            at_unix: 4,
        }])
        .unwrap();
    let r = &ledger.records().unwrap()[0];
    assert_eq!(
        (r.phase, r.attempts, r.last_error.as_deref()),
        (Phase::Created, 0, None)
    );
    ledger.apply(&[intent("a", 5)]).unwrap();
    let r = &ledger.records().unwrap()[0];
    assert_eq!(
        (r.phase, r.atlas_id.as_deref(), r.created_unix),
        (Phase::Intent, None, 1)
    );
}

#[test]
fn a_failing_change_rolls_back_the_whole_slice() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.db")).unwrap();
    let err = ledger
        .apply(&[
            intent("a", 1),
            Change::Created {
                key: key("nobody"),
                atlas_id: "x".into(),
                at_unix: 2,
            },
        ])
        .unwrap_err();
    assert!(matches!(err, LedgerError::UnknownLink { .. }), "{err}");
    assert!(err.to_string().contains("nobody"), "{err}");
    assert!(ledger.records().unwrap().is_empty());
}

#[test]
fn second_open_is_locked_and_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let first = Ledger::open(&path).unwrap();
    let err = Ledger::open(&path).unwrap_err();
    match &err {
        LedgerError::Locked {
            path: p,
            holder_pid,
        } => {
            assert_eq!(p, &path);
            assert_eq!(*holder_pid, Some(std::process::id()));
        }
        other => panic!("expected Locked, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    // A reader needs no lock.
    let reader = Ledger::open_read_only(&path).unwrap();
    assert!(reader.records().unwrap().is_empty());
    drop(first);
    Ledger::open(&path).unwrap();
}

#[test]
fn files_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path).unwrap();
    ledger.apply(&[intent("a", 1)]).unwrap();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    for p in [path.clone(), wal.into(), shm.into(), lock_path(&path)] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
    }
}

#[test]
fn read_only_open_of_a_missing_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.db");
    let err = Ledger::open_read_only(&path).unwrap_err();
    assert!(matches!(err, LedgerError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("no ledger at"), "{err}");
    assert!(!path.exists(), "a read-only open must not create the file");
}

#[test]
fn read_only_open_after_the_writer_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path).unwrap();
    ledger.apply(&[intent("a", 1)]).unwrap();
    ledger.close().unwrap();
    let reader = Ledger::open_read_only(&path).unwrap();
    assert_eq!(reader.records().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_lands_every_change_in_few_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let handle = LedgerHandle::spawn(Ledger::open(&path).unwrap());
    let calls = 1_000;
    let mut tasks = Vec::new();
    for i in 0..calls {
        let h = handle.clone();
        tasks.push(tokio::spawn(async move {
            h.apply(intent(&format!("link-{i:04}"), i)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let commits = handle.commits();
    assert!(
        commits < calls as u64 / 10,
        "{commits} commits for {calls} changes"
    );
    // A bad change fails alone; its neighbours in the group still land.
    let (bad, good) = tokio::join!(
        handle.apply(Change::Created {
            key: key("nobody"),
            atlas_id: "x".into(),
            at_unix: 1
        }),
        handle.apply(intent("after", 2)),
    );
    assert!(matches!(bad, Err(LedgerError::UnknownLink { .. })));
    good.unwrap();
    assert_eq!(handle.records().await.unwrap().len(), calls as usize + 1);
    handle.close().await.unwrap();

    // Closing released the lock and left everything on disk.
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.records().unwrap().len(), calls as usize + 1);
}

#[tokio::test]
async fn closed_handle_reports_closed() {
    let dir = tempfile::tempdir().unwrap();
    let handle = LedgerHandle::spawn(Ledger::open(&dir.path().join("l.db")).unwrap());
    let other = handle.clone();
    handle.close().await.unwrap();
    let err = other.apply(intent("a", 1)).await.unwrap_err();
    assert!(matches!(err, LedgerError::Closed { .. }), "{err}");
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_read_only_open_leaves_no_file_beside_a_closed_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path).unwrap();
    ledger.apply(&[intent("a", 1), intent("b", 2)]).unwrap();
    ledger.close().unwrap();
    let before = names_in(dir.path());
    assert_eq!(before, ["ledger.db", "ledger.db.lock"]);

    let reader = Ledger::open_read_only(&path).unwrap();
    assert_eq!(reader.records().unwrap().len(), 2);
    drop(reader);
    assert_eq!(Ledger::read_only_records(&path).unwrap().len(), 2);
    // No -wal, no -shm, no lock of the reader's making: nothing that a later writer, perhaps
    // running as another user, would have to open.
    assert_eq!(names_in(dir.path()), before);
    // And the writer still opens it as before.
    let mut ledger = Ledger::open(&path).unwrap();
    ledger.apply(&[intent("c", 3)]).unwrap();
    assert_eq!(ledger.records().unwrap().len(), 3);
}

#[test]
fn a_read_only_open_beside_a_running_writer_sees_its_latest_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut writer = Ledger::open(&path).unwrap();
    writer.apply(&[intent("a", 1)]).unwrap();
    // Committed to the write-ahead log, not yet checkpointed into the file.
    writer.apply(&[intent("b", 2)]).unwrap();
    let records = Ledger::read_only_records(&path).unwrap();
    assert_eq!(records.len(), 2);
    writer.apply(&[intent("c", 3)]).unwrap();
    let reader = Ledger::open_read_only(&path).unwrap();
    assert_eq!(reader.records().unwrap().len(), 3);
}

#[test]
fn a_read_only_open_of_a_path_with_uri_characters() {
    // The immutable open goes through an SQLite URI: `?`, `#`, `%` and spaces must stay path.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("a ?b#c%41d");
    let path = sub.join("ledger.db");
    let mut ledger = Ledger::open(&path).unwrap();
    ledger.apply(&[intent("a", 1)]).unwrap();
    ledger.close().unwrap();
    assert_eq!(Ledger::read_only_records(&path).unwrap().len(), 1);
    assert_eq!(names_in(&sub), ["ledger.db", "ledger.db.lock"]);
}
