//! The manifest watcher on a real temp directory: one event per save, bursts debounced, noise ignored.

use std::path::Path;
use std::time::{Duration, Instant};

use atlas_linkd::daemon::watch_manifests;
use tokio::sync::mpsc::Receiver;

const DEBOUNCE: Duration = Duration::from_millis(200);
const DEADLINE: Duration = Duration::from_secs(10);

async fn expect_event(rx: &mut Receiver<()>) {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("an event within the deadline")
        .expect("channel open");
}

/// No event arrives within several debounce windows (the debounce is what could still emit one).
async fn expect_quiet(rx: &mut Receiver<()>) {
    let r = tokio::time::timeout(DEBOUNCE * 5, rx.recv()).await;
    assert!(r.is_err(), "unexpected extra event");
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap();
}

#[tokio::test]
async fn a_new_yaml_file_gives_exactly_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let (_guard, mut rx) = watch_manifests(&[dir.path().to_path_buf()], DEBOUNCE).unwrap();
    write(&dir.path().join("a.yaml"), "projects: []\n");
    expect_event(&mut rx).await;
    expect_quiet(&mut rx).await;
}

#[tokio::test]
async fn a_burst_of_writes_is_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("b.yml");
    write(&f, "projects: []\n");
    let (_guard, mut rx) = watch_manifests(&[dir.path().to_path_buf()], DEBOUNCE).unwrap();
    let start = Instant::now();
    for i in 0..20 {
        write(&f, &format!("# {i}\nprojects: []\n"));
    }
    assert!(start.elapsed() < DEBOUNCE, "burst took too long to be one");
    expect_event(&mut rx).await;
    expect_quiet(&mut rx).await;
}

#[tokio::test]
async fn hidden_and_non_yaml_files_are_ignored_but_reads_too() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yaml");
    write(&f, "projects: []\n");
    let (_guard, mut rx) = watch_manifests(&[dir.path().to_path_buf()], DEBOUNCE).unwrap();
    write(&dir.path().join(".c.yaml.swp"), "x");
    write(&dir.path().join("notes.txt"), "x");
    write(&dir.path().join("c.yaml~"), "x");
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    write(&dir.path().join(".git").join("x.yaml"), "x");
    // Reading a manifest (as the loader does) must not trigger a pass.
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "projects: []\n");
    expect_quiet(&mut rx).await;
    // The watcher is still alive: a real change is seen.
    write(&f, "projects: [] # edited\n");
    expect_event(&mut rx).await;
}

#[tokio::test]
async fn a_watched_file_replaced_by_rename_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.yaml");
    write(&f, "projects: []\n");
    let (_guard, mut rx) = watch_manifests(std::slice::from_ref(&f), DEBOUNCE).unwrap();
    // An unrelated file in the same directory is not ours.
    write(&dir.path().join("other.yaml"), "projects: []\n");
    expect_quiet(&mut rx).await;
    // How editors save: write a temp file, rename it over the original.
    let tmp = dir.path().join(".m.yaml.tmp");
    write(&tmp, "projects: [] # saved\n");
    std::fs::rename(&tmp, &f).unwrap();
    expect_event(&mut rx).await;
    expect_quiet(&mut rx).await;
}

#[tokio::test]
async fn a_missing_path_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = watch_manifests(std::slice::from_ref(&missing), DEBOUNCE).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}
