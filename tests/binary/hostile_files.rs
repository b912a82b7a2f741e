//! Hostile and unlucky files around the real binary (issue 12): a `--metrics-file` that names a
//! FIFO, a directory, a symbolic link or a missing folder, or that cannot be written after the pass;
//! an unreadable ledger under `--once`; `ledger` and `plan --offline` on a read-only mount.
//!
//! Never pointed at `/dev/null`, `/dev/full` or any file of the host: these tests may run as root,
//! and the binary they were written against replaced such targets.

use crate::support::eventually;
use crate::support::harness::{Harness, binary, harness, once};
use fake_atlas::FakeConfig;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// `--once --metrics-file PATH`, asserted to exit 2 before any call to Atlas; returns its stderr.
async fn refused_before_any_call(h: &Harness, path: &Path) -> String {
    let out = once(&h.config_path)
        .arg("--metrics-file")
        .arg(path)
        .output()
        .await
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}: {err}", path.display());
    assert_eq!(
        h.fake.counters().total_requests(),
        0,
        "{}: a call was made before the refusal",
        path.display()
    );
    assert_eq!(h.fake.counters().tokens_issued, 0);
    assert!(err.contains(&path.display().to_string()), "{err}");
    err
}

#[tokio::test]
async fn a_metrics_file_that_is_a_fifo_or_a_directory_is_refused_before_any_call_and_left_as_it_is()
{
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let fifo = h.dir.path().join("metrics.prom");
    mkfifo(&fifo);
    let err = refused_before_any_call(&h, &fifo).await;
    assert!(err.contains("a FIFO"), "{err}");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO was replaced"
    );

    let folder = h.dir.path().join("textfile");
    std::fs::create_dir(&folder).unwrap();
    let err = refused_before_any_call(&h, &folder).await;
    assert!(err.contains("a folder"), "{err}");
    assert!(std::fs::metadata(&folder).unwrap().is_dir());
}

#[tokio::test]
async fn a_metrics_file_that_is_a_symlink_is_refused_and_its_target_is_untouched() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let target = h.dir.path().join("elsewhere.txt");
    std::fs::write(&target, "not yours\n").unwrap();
    let link = h.dir.path().join("metrics.prom");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = refused_before_any_call(&h, &link).await;
    assert!(err.contains("symbolic link"), "{err}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "not yours\n");

    // A dangling link too: writing would put a regular file where the link was.
    let dangling = h.dir.path().join("dangling.prom");
    std::os::unix::fs::symlink(h.dir.path().join("nowhere"), &dangling).unwrap();
    refused_before_any_call(&h, &dangling).await;
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[tokio::test]
async fn a_metrics_file_in_a_missing_folder_is_refused_before_any_call() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let path = h.dir.path().join("no-such-folder").join("metrics.prom");
    let err = refused_before_any_call(&h, &path).await;
    assert!(err.contains("no-such-folder"), "{err}");
    assert!(!path.parent().unwrap().exists());
}

#[tokio::test]
async fn a_metrics_file_that_cannot_be_written_after_the_pass_turns_exit_0_into_1_with_the_reason()
{
    // Every answer takes a second, so the pass is still listing when the folder goes.
    let fake = FakeConfig {
        latency_ms: 1_000,
        ..FakeConfig::default()
    };
    let h = harness(fake, 1, 2, "").await;
    let folder = h.dir.path().join("textfile");
    std::fs::create_dir(&folder).unwrap();
    let path = folder.join("atlas_linkd.prom");
    let child = once(&h.config_path)
        .arg("--metrics-file")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The token is fetched after the metrics file was checked, before the first (slow) listing.
    eventually("the pass to start", Duration::from_secs(30), async || {
        (h.fake.counters().tokens_issued >= 1).then_some(())
    })
    .await;
    std::fs::remove_dir(&folder).unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    assert!(
        stdout.contains("pass converged"),
        "the pass itself converged: {stdout}\n{err}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{err}");
    assert!(
        err.contains("--metrics-file")
            && err.contains("could not write it")
            && err.contains("atlas_linkd.prom"),
        "{err}"
    );
    assert!(err.contains("No such file or directory"), "{err}");
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_failed_metrics_write_keeps_a_pass_that_did_not_converge_at_its_own_status() {
    // Atlas refuses every create: the pass ends 1 whatever happens to the metrics file, and a
    // failed write must not hide that behind another status.
    let fake = FakeConfig {
        latency_ms: 1_000,
        reject_when_contains: Some("vpce-svc".into()),
        ..FakeConfig::default()
    };
    let h = harness(fake, 1, 2, "").await;
    let folder = h.dir.path().join("textfile");
    std::fs::create_dir(&folder).unwrap();
    let path = folder.join("atlas_linkd.prom");
    let child = once(&h.config_path)
        .arg("--metrics-file")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the pass to start", Duration::from_secs(30), async || {
        (h.fake.counters().tokens_issued >= 1).then_some(())
    })
    .await;
    std::fs::remove_dir(&folder).unwrap();
    let out = child.wait_with_output().await.unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--metrics-file") && err.contains("could not write it"),
        "{err}"
    );
}

/// A valid ledger from one converged pass, then `damage` applied to it; `--once` must refuse with
/// exit 2 and no call to Atlas.
async fn once_refuses_a_damaged_ledger(what: &str, damage: impl FnOnce(&Path)) {
    let h = harness(FakeConfig::default(), 1, 3, "").await;
    assert!(h.pass().await.converged());
    let before = h.fake.counters();
    damage(&h.ledger_path());
    let out = once(&h.config_path).output().await.unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert!(err.contains("cannot read the ledger"), "{what}: {err}");
    assert!(
        err.contains(&h.ledger_path().display().to_string()),
        "{what}: {err}"
    );
    assert_eq!(
        h.fake.counters().total_requests(),
        before.total_requests(),
        "{what}: a call was made"
    );
    assert_eq!(h.fake.counters().tokens_issued, before.tokens_issued);
}

#[tokio::test]
async fn once_exits_2_when_a_ledger_row_cannot_be_decoded() {
    once_refuses_a_damaged_ledger("a bad row", |path| {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute("UPDATE links SET group_id = 'not-a-project-id'", [])
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn once_exits_2_when_the_ledger_table_is_gone() {
    once_refuses_a_damaged_ledger("no table", |path| {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("DROP TABLE links").unwrap();
    })
    .await;
}

/// The files in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn ledger_and_plan_offline_leave_no_file_beside_the_ledger() {
    let h = harness(FakeConfig::default(), 1, 3, "").await;
    assert!(h.pass().await.converged());
    let state = h.ledger_path().parent().unwrap().to_owned();
    let before = names_in(&state);
    assert_eq!(before, ["ledger.db", "ledger.db.lock"]);
    for args in [&["ledger"][..], &["plan", "--offline"][..]] {
        let out = binary(&h.config_path).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(
            names_in(&state),
            before,
            "{args:?} left files beside the ledger"
        );
    }
}

/// Whether this machine lets an unprivileged process make a user and mount namespace.
fn namespaces_work() -> bool {
    std::process::Command::new("unshare")
        .args(["-rm", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The binary with `args`, in a user and mount namespace where `folder` is bind-mounted read-only
/// onto itself (checked: creating a file there must fail first).
fn on_a_read_only_mount(h: &Harness, folder: &Path, args: &[&str]) -> Output {
    const SCRIPT: &str = r#"folder=$1; shift
mount --bind "$folder" "$folder" && mount -o remount,bind,ro "$folder" "$folder" || exit 97
if touch "$folder/.probe" 2>/dev/null; then exit 98; fi
exec "$@""#;
    let config = h.config_path.to_str().unwrap();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-rm", "sh", "-c", SCRIPT, "sh"])
        .arg(folder)
        .arg(env!("CARGO_BIN_EXE_atlas-linkd"))
        .args(["--config", config])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::null());
    let out = cmd.output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(97),
        "mount failed: {}",
        stderr(&out)
    );
    assert_ne!(
        out.status.code(),
        Some(98),
        "the mount is not read-only after all"
    );
    out
}

#[tokio::test]
async fn ledger_and_plan_offline_work_on_a_read_only_mount() {
    if !namespaces_work() {
        eprintln!(
            "skipped: `unshare -rm` is not allowed here, so no read-only mount can be made; \
             ledger_and_plan_offline_leave_no_file_beside_the_ledger still covers the files"
        );
        return;
    }
    let h = harness(FakeConfig::default(), 1, 3, "").await;
    assert!(h.pass().await.converged());
    let state = h.ledger_path().parent().unwrap().to_owned();
    let before = names_in(&state);

    let out = on_a_read_only_mount(&h, &state, &["ledger"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", stderr(&out));
    assert!(stdout.contains("3 record(s)"), "{stdout}");

    let out = on_a_read_only_mount(&h, &state, &["plan", "--offline", "--output", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // Planned from the ledger: every link is known, nothing to create.
    assert_eq!(plan["counts"]["unchanged"], 3, "{plan:#}");
    assert_eq!(plan["counts"]["create"], 0, "{plan:#}");
    assert_eq!(names_in(&state), before);

    // An empty log left beside the ledger (a crash), and no -shm, which a read-only mount cannot
    // get: the file alone is read, as it holds everything.
    std::fs::write(state.join("ledger.db-wal"), "").unwrap();
    let out = on_a_read_only_mount(&h, &state, &["ledger"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", stderr(&out));
    assert!(stdout.contains("3 record(s)"), "{stdout}");
    assert!(!stderr(&out).contains("WARN"), "{}", stderr(&out));
}

#[tokio::test]
async fn ledger_on_a_read_only_mount_beside_a_live_writer() {
    if !namespaces_work() {
        eprintln!("skipped: `unshare -rm` is not allowed here");
        return;
    }
    let h = harness(FakeConfig::default(), 1, 3, "").await;
    assert!(h.pass().await.converged());
    // A writer holds the ledger, its latest commits only in the write-ahead log: a sidecar that
    // mounts the state folder read-only sees this.
    let mut writer = atlas_linkd::ledger::Ledger::open(&h.ledger_path()).unwrap();
    let records = writer.records().unwrap();
    let spec = records[0].spec().unwrap();
    writer
        .apply(&[atlas_linkd::ledger::Change::Intent {
            key: atlas_linkd::model::LinkKey::new(records[0].key.group_id.clone(), "added-live"),
            fingerprint: spec.fingerprint(),
            spec,
            at_unix: 1,
        }])
        .unwrap();
    let state = h.ledger_path().parent().unwrap().to_owned();
    let out = on_a_read_only_mount(&h, &state, &["ledger"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", stderr(&out));
    // The log was read (through the writer's -shm), not just the file.
    assert!(stdout.contains("4 record(s)"), "{stdout}\n{}", stderr(&out));
    assert!(stdout.contains("added-live"), "{stdout}");
    writer.close().unwrap();
}

#[tokio::test]
async fn once_on_a_full_disk_advises_freeing_space_not_permissions() {
    if !namespaces_work() {
        eprintln!(
            "skipped: `unshare -rm` is not allowed here, so no small file system can be made"
        );
        return;
    }
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let state = h.ledger_path().parent().unwrap().to_owned();
    std::fs::create_dir_all(&state).unwrap();
    // A 16 KiB tmpfs over the state folder, filled up: the first write of the ledger fails ENOSPC.
    const SCRIPT: &str = r#"folder=$1; shift
mount -t tmpfs -o size=16k tmpfs "$folder" || exit 97
yes > "$folder/fill" 2>/dev/null
exec "$@""#;
    let out = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", SCRIPT, "sh"])
        .arg(&state)
        .arg(env!("CARGO_BIN_EXE_atlas-linkd"))
        .arg("--config")
        .arg(&h.config_path)
        .arg("--once")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(
            ["MONGODB_ATLAS_CLIENT_ID", "MONGODB_ATLAS_CLIENT_SECRET"]
                .map(|k| (k, crate::support::test_env(k).unwrap())),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(97), "mount failed: {err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("free space"), "{err}");
    assert!(!err.contains("permission"), "{err}");
    assert_eq!(h.fake.counters().total_requests(), 0);
}
